from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from dsprims import ConfigurationError
from dsprims.backends import check_name, check_prefix, escape_name, namespaced_key, znode_name
from dsprims.testing.strategies import hostile_keys, keys


@given(keys(), keys())
def test_distinct_names_never_share_a_key(a: str, b: str) -> None:
    if a != b:
        assert namespaced_key("p", a, "x") != namespaced_key("p", b, "x")
        assert znode_name(a) != znode_name(b)


@given(hostile_keys())
def test_hostile_names_stay_inside_the_prefix_and_one_slot(name: str) -> None:
    first = namespaced_key("dsprims", name, "state")
    second = namespaced_key("dsprims", name, "queue")
    assert first.startswith("dsprims:{")
    # The hash tag is exactly the escaped name: no brace in it can end the tag early.
    tag = first[len("dsprims:{") : first.index("}")]
    assert tag == escape_name(name)
    assert "{" not in tag
    assert "}" not in tag
    assert key_slot(first.encode()) == key_slot(second.encode())


@given(hostile_keys())
def test_znode_names_are_one_path_component(name: str) -> None:
    encoded = znode_name(name)
    assert "/" not in encoded
    assert encoded not in (".", "..")
    assert "\x00" not in encoded


@pytest.mark.parametrize("bad", ["", "a b", "x{y}", "a/b", "é", "x" * 129])
def test_bad_prefixes_are_rejected(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="prefix"):
        check_prefix(bad)


def test_prefix_and_name_types() -> None:
    with pytest.raises(TypeError, match="prefix"):
        check_prefix(b"dsprims")
    with pytest.raises(TypeError, match="key"):
        check_name(42)
    with pytest.raises(ConfigurationError, match="name"):
        check_name("", "name")
    assert check_name("k") == "k"


@given(st.text())
def test_escape_is_reversible(name: str) -> None:
    escaped = escape_name(name)
    assert escaped.replace("%7D", "}").replace("%7B", "{").replace("%25", "%") == name
