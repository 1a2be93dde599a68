"""Pseudonyms: stable within an experiment, unlinkable across experiments."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ingest.pseudonym import pseudonymise

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,40}", fullmatch=True)
slugs = st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True)
keys = st.binary(min_size=16, max_size=64)


@given(key=keys, experiment=slugs, learner=ids)
def test_stable_within_an_experiment(key: bytes, experiment: str, learner: str) -> None:
    first = pseudonymise(key, experiment, learner)
    assert first == pseudonymise(key, experiment, learner)
    assert len(first) == 64 and first != learner


@given(key=keys, a=slugs, b=slugs, learner=ids)
def test_differs_across_experiments(key: bytes, a: str, b: str, learner: str) -> None:
    if a != b:
        assert pseudonymise(key, a, learner) != pseudonymise(key, b, learner)


@given(key=keys, experiment=slugs, one=ids, other=ids)
def test_distinct_learners_stay_distinct(key: bytes, experiment: str, one: str, other: str) -> None:
    if one != other:
        assert pseudonymise(key, experiment, one) != pseudonymise(key, experiment, other)


@given(experiment=slugs, learner=ids)
def test_depends_on_the_secret_key(experiment: str, learner: str) -> None:
    one = pseudonymise(b"k" * 32, experiment, learner)
    assert one != pseudonymise(b"j" * 32, experiment, learner)


def test_experiment_and_learner_cannot_be_shifted_into_each_other() -> None:
    # ("ab", "c") and ("a", "bc") must not collide: the parts are separated, not concatenated.
    assert pseudonymise(b"k", "ab", "c") != pseudonymise(b"k", "a", "bc")
