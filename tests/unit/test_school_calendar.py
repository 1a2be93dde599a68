"""The school calendar against the published dates, and the UAI check letter on real UAIs.

Published dates: calendrier scolaire 2025-2026, https://www.education.gouv.fr/calendrier-scolaire-100148
(arrêté fixing the calendar of the school years 2024-2025 to 2026-2027). Holidays run from
the day classes end (Saturday) to the day they resume (morning); a période is the school
days in between: « vacances de la Toussaint du samedi 18 octobre au lundi 3 novembre 2025 »
makes période 1 end on Friday 17 October and période 2 start on Monday 3 November.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from experiments.errors import CalendarError
from experiments.protocol.calendar import (
    academie_of_departement,
    departement_of_uai,
    official_calendar,
    periode_end_across,
    uai_check_letter,
    zone_of,
)

D = date
#: 2025-2026, published (education.gouv.fr): (classes end, classes resume) per holiday.
PUBLISHED_2025_2026 = {
    "A": [(D(2025, 10, 18), D(2025, 11, 3)), (D(2025, 12, 20), D(2026, 1, 5)),
          (D(2026, 2, 7), D(2026, 2, 23)), (D(2026, 4, 4), D(2026, 4, 20))],
    "B": [(D(2025, 10, 18), D(2025, 11, 3)), (D(2025, 12, 20), D(2026, 1, 5)),
          (D(2026, 2, 14), D(2026, 3, 2)), (D(2026, 4, 11), D(2026, 4, 27))],
    "C": [(D(2025, 10, 18), D(2025, 11, 3)), (D(2025, 12, 20), D(2026, 1, 5)),
          (D(2026, 2, 21), D(2026, 3, 9)), (D(2026, 4, 18), D(2026, 5, 4))],
}
RENTREE_2025 = D(2025, 9, 1)   # « rentrée scolaire des élèves : lundi 1er septembre 2025 »
SUMMER_2026 = D(2026, 7, 4)    # « vacances d'été : samedi 4 juillet 2026 »


@pytest.mark.parametrize("zone", ["A", "B", "C"])
def test_periodes_reproduce_the_published_2025_2026_calendar(zone: str) -> None:
    periodes = official_calendar().periodes("2025-2026", zone)
    assert periodes[0].start == RENTREE_2025
    published = PUBLISHED_2025_2026[zone]
    for number, (classes_end, classes_resume) in enumerate(published, start=1):
        # The période ends the day before the holidays' first day; the next starts on resumption.
        assert periodes[number - 1].end == D.fromordinal(classes_end.toordinal() - 1), number
        assert periodes[number].start == classes_resume, number
    assert periodes[4].end == D.fromordinal(SUMMER_2026.toordinal() - 1)


def test_every_year_of_the_package_has_five_periodes_in_each_zone() -> None:
    calendar = official_calendar()
    for year in ("2016-2017", "2020-2021", "2026-2027", "2027-2028"):
        for zone in ("A", "B", "C"):
            periodes = calendar.periodes(year, zone)
            assert [p.number for p in periodes] == [1, 2, 3, 4, 5]
            assert all(p.start <= p.end for p in periodes)
            assert all(a.end < b.start for a, b in zip(periodes, periodes[1:], strict=False))


def test_a_year_beyond_the_data_is_an_error_naming_the_way_out() -> None:
    with pytest.raises(CalendarError, match="load a newer year"):
        official_calendar().periodes("2031-2032", "A")
    with pytest.raises(CalendarError, match="no school calendar for zone 'la-reunion'"):
        official_calendar().periodes("2027-2028", "la-reunion")


def test_a_newer_year_or_an_overseas_zone_is_loaded_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "reunion.csv"
    path.write_text(
        "zone,name,start,end\n"
        "la-reunion,Vacances d'été,2027-07-10,2027-08-15\n"
        "la-reunion,Vacances de la Toussaint,2027-10-16,2027-10-31\n"
        "la-reunion,Vacances de Noël,2027-12-18,2028-01-23\n"
        "la-reunion,Vacances d'hiver,2028-03-04,2028-03-19\n"
        "la-reunion,Vacances de printemps,2028-04-29,2028-05-14\n"
        "la-reunion,Vacances d'été,2028-07-08,2028-08-20\n",
        encoding="utf-8")
    calendar = official_calendar().with_file(path)
    periodes = calendar.periodes("2027-2028", "la-reunion")
    assert periodes[0].start == D(2027, 8, 16)
    assert periodes[2].start == D(2028, 1, 24)
    assert calendar.periodes("2027-2028", "A")[0].start == D(2027, 9, 1)


def test_a_protocol_across_zones_waits_for_the_latest_zone() -> None:
    calendar = official_calendar()
    assert periode_end_across(calendar, "2025-2026", 3, ("A",)) == D(2026, 2, 6)
    assert periode_end_across(calendar, "2025-2026", 3, ("A", "B", "C")) == D(2026, 2, 20)


def test_zones_follow_from_the_academies() -> None:
    # education.gouv.fr: zone A Besançon, Bordeaux, Clermont-Ferrand, Dijon, Grenoble,
    # Limoges, Lyon, Poitiers; zone C Créteil, Montpellier, Paris, Toulouse, Versailles.
    assert {zone_of(a) for a in ("besancon", "bordeaux", "lyon", "poitiers")} == {"A"}
    assert {zone_of(a) for a in ("creteil", "montpellier", "paris", "toulouse")} == {"C"}
    assert {zone_of(a) for a in ("normandie", "lille", "rennes", "aix-marseille")} == {"B"}


@pytest.mark.parametrize(("uai", "school"), [
    ("0750654D", "lycée Henri-IV, Paris"),
    ("0750655E", "lycée Louis-le-Grand, Paris"),
    ("0690026D", "lycée du Parc, Lyon"),
    ("0751234J", "the issue's example: the check letter of 0751234 is J"),
])
def test_check_letter_of_real_uais(uai: str, school: str) -> None:
    assert uai_check_letter(uai[:7]) == uai[7], school


def test_departement_and_academie_of_a_uai() -> None:
    assert academie_of_departement(departement_of_uai("0750654D")) == "paris"
    assert academie_of_departement(departement_of_uai("0690026D")) == "lyon"
    assert academie_of_departement(departement_of_uai("9720001A")) == "martinique"
    assert academie_of_departement("99") is None
