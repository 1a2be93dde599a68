"""The portfolio's territories (issue 22): the départements table agrees with the
académies' ressort, and an experiment whose protocol names no département is placed by
its enrolled schools (the UAI's first three characters), with its pupils."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from experiments.database import dispose_engines
from experiments.portfolio.committee import programme_view
from experiments.portfolio.entries import NO_PROGRAMME, portfolio_entries
from experiments.portfolio.territory_map import (
    DEPARTEMENT_NAMES,
    departement_map_svg,
    departement_rows,
    departements_of,
)
from experiments.protocol.vocabulary import ACADEMIES
from experiments.settings import Settings
from tests.support.portal import EXPERIMENT, PortalWorld, build_world

ROOT = Path(__file__).resolve().parents[2]


def test_every_departement_of_the_ressort_table_has_a_name_and_a_tile() -> None:
    table = json.loads((ROOT / "experiments/protocol/data/academies.json").read_text(
        encoding="utf-8"))["academies"]
    ressort = {d for row in table.values() for d in row["departements"]}
    assert ressort == set(DEPARTEMENT_NAMES)
    for academie in ACADEMIES:
        assert sorted(departements_of(academie)) == sorted(table[academie]["departements"])
        assert len(departements_of(academie)) <= 9  # one 3 × 3 block per académie
    svg = departement_map_svg([], title="t", description="d")
    assert svg.count("<g data-departement=") == len(ressort)


def test_small_counts_are_suppressed_on_the_map() -> None:
    rows = departement_rows([(["75"], 6), (["93"], None)])
    svg = departement_map_svg(rows, title="t", description="d", lang="en")
    assert "Paris (75): 1 experiment, fewer than 10 pupils" in svg
    assert "Nord (59): 0 experiments" in svg
    assert "Seine-Saint-Denis (93): 1 experiment, counts suppressed" in svg
    assert ">6<" not in svg


@pytest.fixture
def world(tmp_path: Path) -> Iterator[PortalWorld]:
    settings = Settings(state_dir=tmp_path, pseudonym_key="territories-key" * 3)
    try:
        yield build_world(settings)
    finally:
        dispose_engines()


def test_an_experiment_without_departements_is_placed_by_its_schools(
        world: PortalWorld) -> None:
    (entry,) = portfolio_entries(world.registry, academie="creteil")
    assert entry.id == EXPERIMENT and entry.programme == NO_PROGRAMME
    # Schools 0780001C, 0780002D (Yvelines) and 0930001W, 0930002X (Seine-Saint-Denis).
    assert entry.departements == ("78", "93")
    view = programme_view([entry], NO_PROGRAMME)
    assert [(d["code"], d["experiments"]) for d in view.departement_table] == [
        ("93", "1"), ("78", "1")]
    assert view.no_departement == ()
