"""Any protocol the models accept round-trips YAML → model → YAML → model, hash unchanged.

Protocols are drawn mostly valid by construction (dates in order, one control arm, one
primary outcome...), with free text, floats, seeds and optional sections drawn widely;
the few draws the models refuse are discarded with ``assume``.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from experiments.protocol.language import Protocol, dump_protocol, load_protocol, parse_protocol
from experiments.protocol.vocabulary import ACADEMIES, LEVELS, STANDARD_UNIT_ATTRIBUTES

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True)
SLUGS = st.from_regex(r"[a-z0-9]{1,8}(-[a-z0-9]{1,8}){0,3}", fullmatch=True)
# Any text: accents, quotes, colons, '#', leading spaces, emoji, line breaks (NEL, U+2028),
# control characters.
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)
SHARE = st.floats(0, 0.99, allow_nan=False)
WEIGHT = st.floats(0.01, 100, allow_nan=False)


def _iso(d: date) -> str:
    return d.isoformat()


@st.composite
def protocols(draw: st.DrawFn) -> dict[str, Any]:
    unit = draw(st.sampled_from(["learner", "class", "school"]))
    attributes = STANDARD_UNIT_ATTRIBUTES[unit]
    arm_names = draw(st.lists(NAMES, min_size=2, max_size=4, unique=True))
    control = draw(st.integers(0, len(arm_names) - 1))
    arms = []
    for i, name in enumerate(arm_names):
        arm: dict[str, Any] = {"name": name, "allocation": draw(WEIGHT)}
        if i == control:
            arm["control"] = True
        if draw(st.booleans()):
            arm["description"] = draw(TEXT)
        arms.append(arm)

    start = date(2027, 9, 1) + timedelta(days=draw(st.integers(0, 3000)))
    gaps = [draw(st.integers(0, 60)) for _ in range(6)]
    baseline_end = start + timedelta(days=gaps[0])
    intervention_start = baseline_end + timedelta(days=1 + gaps[1])
    intervention_end = intervention_start + timedelta(days=30 + gaps[2])
    followup_end = intervention_end + timedelta(days=1 + gaps[3])
    final = followup_end + timedelta(days=gaps[4])
    keep = final + timedelta(days=gaps[5])
    periods: dict[str, Any] = {
        "intervention": {"start": _iso(intervention_start), "end": _iso(intervention_end)}
    }
    model = draw(st.sampled_from(["ancova", "mixed"]))
    # An ancova without a pre-test adjusts for the covariates and strata only (issue 15).
    with_baseline = draw(st.booleans())
    if with_baseline:
        periods["baseline"] = {"start": _iso(start), "end": _iso(baseline_end)}
    if draw(st.booleans()):
        periods["followup"] = {
            "start": _iso(intervention_end + timedelta(days=1)),
            "end": _iso(followup_end),
        }

    outcome_ids = draw(st.lists(NAMES, min_size=1, max_size=3, unique=True))
    outcomes = []
    for i, oid in enumerate(outcome_ids):
        outcome: dict[str, Any] = {"id": oid, "primary": i == 0}
        if with_baseline and draw(st.booleans()):
            outcome["baseline"] = draw(NAMES)
        if draw(st.booleans()):
            outcome["label"] = draw(TEXT)
        outcomes.append(outcome)

    compliance = draw(st.none() | st.integers(1, 10_000))
    protocol: dict[str, Any] = {
        "preuve": 1,
        "id": draw(SLUGS),
        "title": draw(TEXT),
        "resource": {"id": draw(SLUGS), "name": draw(TEXT)},
        "population": {
            "unit": unit,
            "levels": draw(st.lists(st.sampled_from(LEVELS), min_size=1, max_size=4, unique=True)),
            "academies": draw(
                st.lists(st.sampled_from(ACADEMIES), min_size=1, max_size=4, unique=True)
            ),
            "criteria": draw(
                st.dictionaries(
                    st.sampled_from([a for a in attributes if a != "education_priority"]),
                    st.lists(
                        st.text(min_size=1, max_size=8) | st.integers() | st.booleans(), max_size=3
                    ),
                    max_size=2,
                )
            ),
        },
        "arms": arms,
        "randomisation": {
            "strata": draw(st.lists(st.sampled_from(attributes), max_size=2, unique=True)),
            "seed": draw(st.integers(0, 2**63 - 1)),
        },
        "periods": periods,
        "outcomes": outcomes,
        "analysis": {
            "estimand": "CACE" if compliance and draw(st.booleans()) else "ITT",
            "model": model,
            "covariates": draw(st.lists(NAMES, max_size=2)),
            "alpha": draw(st.floats(0.001, 0.2)),
            "multiple_comparisons": draw(
                st.sampled_from(["holm", "bonferroni", "benjamini-hochberg", "none"])
            ),
            "subgroups": draw(st.lists(st.sampled_from(attributes), max_size=2, unique=True)),
        },
        "usage": {"compliance": None if compliance is None else {"min_active_minutes": compliance}},
        "schedule": [
            {"analysis": "monitoring", "every": draw(st.sampled_from(["week", "month", "period"]))},
            {"analysis": "final", "at": _iso(final + timedelta(days=1))},
        ],
        "retention": {"keep_until": _iso(keep + timedelta(days=1))},
    }
    if draw(st.booleans()):
        protocol["power"] = {
            "icc": draw(SHARE),
            "pupils_per_unit": 1 if unit == "learner" else draw(st.integers(1, 40)),
            "units": draw(st.integers(4, 500)),
            "r2_learner": draw(SHARE),
            "r2_unit": draw(SHARE),
            "power": draw(st.floats(0.5, 0.99)),
        }
    if draw(st.booleans()):
        protocol["budget"] = {
            "items": [
                {"label": draw(TEXT), "amount": draw(st.floats(0, 1e7)), "funder": draw(TEXT)}
            ],
            "pupils": draw(st.integers(1, 10**6)),
        }
    if draw(st.booleans()):
        protocol["decision"] = {
            "at": _iso(final + timedelta(days=2)),
            "deciders": [draw(TEXT)],
            "rule": draw(TEXT),
        }
    if draw(st.booleans()):
        protocol["summary"] = draw(TEXT)
    return protocol


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(protocols())
def test_yaml_model_yaml_model_is_stable(data: dict[str, Any]) -> None:
    try:
        first = Protocol.model_validate(data)
    except ValidationError:
        assume(False)
        raise
    text = dump_protocol(first)
    second = parse_protocol(text, "first.yaml")
    assert second == first
    assert second.sha256 == first.sha256
    assert dump_protocol(second) == text
    third = parse_protocol(dump_protocol(second), "second.yaml")
    assert third == first and third.sha256 == first.sha256


def test_example_round_trips() -> None:
    for path in sorted((Path(__file__).resolve().parents[2] / "protocols").glob("*.yaml")):
        protocol = load_protocol(path)
        again = parse_protocol(dump_protocol(protocol), str(path))
        assert again == protocol and again.sha256 == protocol.sha256, path
