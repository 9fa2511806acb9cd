"""Hypothesis strategies for property tests of dsprims and of code built on it."""

from __future__ import annotations

from hypothesis import strategies as st

__all__ = ["hostile_keys", "keys", "plain_keys"]


def plain_keys() -> st.SearchStrategy[str]:
    """Short, readable keys such as ``user-17``."""
    return st.from_regex(r"[a-z][a-z0-9_\-]{0,15}", fullmatch=True)


def hostile_keys() -> st.SearchStrategy[str]:
    """Keys that try to break namespacing: braces, separators, newlines, unicode, 1 kB."""
    specials = st.sampled_from(
        ["{", "}", "{}", "}{", ":", "*", "?", "[", "]", "\n", "\r\n", " ", "\t", "/", "..", "%",
         "%7B", "\x00", "é", "键", "🔑", "dsprims:", "{dsprims}", "\\"]
    )  # fmt: skip
    fragment = st.one_of(specials, st.text(min_size=1, max_size=8))
    mixed = st.lists(fragment, min_size=1, max_size=12).map("".join)
    long = st.integers(min_value=1000, max_value=1100).map(lambda n: ("{k}" * n)[:n])
    return st.one_of(mixed, long, st.text(min_size=1, max_size=64))


def keys() -> st.SearchStrategy[str]:
    """Any valid key: mostly plain ones, with hostile ones mixed in."""
    return st.one_of(plain_keys(), hostile_keys())
