"""`manager.one_or_many`: whatever is added and discarded, each key's items are those of
a plain dict of insertion-ordered lists."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from oauth2_token_operator.util.one_or_many import OneOrMany

KEYS = ["a", "b"]
ITEMS = [("ns", "x"), ("ns", "y"), ("ns", "z")]


@given(st.lists(st.tuples(st.booleans(), st.sampled_from(KEYS), st.sampled_from(ITEMS))))
def test_it_agrees_with_a_dict_of_lists(steps: list[tuple[bool, str, tuple[str, str]]]) -> None:
    entries: OneOrMany[str, tuple[str, str]] = OneOrMany()
    model: dict[str, list[tuple[str, str]]] = {key: [] for key in KEYS}
    for add, key, item in steps:
        if add:
            entries.add(key, item)
            if item not in model[key]:
                model[key].append(item)
        else:
            entries.discard(key, item)
            if item in model[key]:
                model[key].remove(item)
        for k in KEYS:
            assert entries.items_of(k) == model[k]
            assert entries.count(k) == len(model[k])
            assert (k in entries) == bool(model[k])
