from __future__ import annotations

import pickle

import pytest

import dsprims
from dsprims import errors


@pytest.mark.parametrize(
    ("child", "parent"),
    [
        (errors.ConfigurationError, errors.DsprimsError),
        (errors.ConfigurationError, ValueError),
        (errors.BackendUnavailable, errors.BackendError),
        (errors.BackendError, errors.DsprimsError),
        (errors.RateLimitExceeded, errors.DsprimsError),
        (errors.CircuitOpenError, errors.DsprimsError),
        (errors.ClockSkewError, errors.DsprimsError),
        (errors.LockNotAcquired, errors.LockError),
        (errors.LockNotOwned, errors.LockError),
        (errors.LockLost, errors.LockError),
        (errors.StaleTokenError, errors.LockError),
        (errors.LockError, errors.DsprimsError),
    ],
)
def test_error_tree(child: type[Exception], parent: type[Exception]) -> None:
    assert issubclass(child, parent)


def test_circuit_open_error_carries_name_and_retry_after_and_pickles() -> None:
    exc = errors.CircuitOpenError("payments", 1.5)
    assert exc.name == "payments"
    assert exc.retry_after == 1.5
    assert "payments" in str(exc)
    copy = pickle.loads(pickle.dumps(exc))
    assert (copy.name, copy.retry_after) == ("payments", 1.5)


def test_every_public_name_is_exported_and_importable() -> None:
    for name in dsprims.__all__:
        assert getattr(dsprims, name) is not None, name
    with pytest.raises(AttributeError):
        _ = dsprims.NoSuchThing
