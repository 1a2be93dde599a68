"""School time: school years, périodes between holidays, and the holiday zones.

Where the dates come from
-------------------------
- **Holidays of zones A, B and C** come from the PyPI package ``vacances-scolaires-france``
  (MIT; its data is the ministry's open dataset « Vacances scolaires par zones »,
  https://www.data.gouv.fr/fr/datasets/vacances-scolaires-par-zones/). Version 0.12 covers
  the school years up to 2027-2028 (summer 2028). We do not copy its dates.
- **What the package lacks, shipped here** (``data/academies.json``, with its source):
  the académie of each département and the zone of each académie (the package only
  names them in its README), and the zones of Corse and the five overseas académies,
  whose calendars their recteurs set (Code de l'éducation, art. D521-3) and which the
  package does not carry. Their dates, and any school year newer than the package's,
  are loaded from a file with :meth:`SchoolCalendar.with_file` (see its format there).
  Public holidays (``jours-feries-france``) are not needed: a période is the span
  between two holidays, and a public holiday inside it does not split it.

Périodes
--------
A school year has five périodes, separated by the holidays of Toussaint, Noël, hiver
and printemps, and closed by the summer holidays. Période 1 starts on the first weekday
after the summer holidays (the rentrée des élèves); each période ends on the day before
the next holidays begin: the data counts holidays from the Saturday after the last
class, so a période ends on that Friday. The Pont de l'Ascension does not split a période.

Protocols across zones
----------------------
A protocol whose académies span several zones resolves a période to **the latest date
across its zones** (:func:`periode_end_across`): an analysis « at the end of période 2 »
waits until every zone has finished période 2, so that no class is cut short.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Final

from experiments.errors import CalendarError

__all__ = [
    "HOLIDAY_NAMES",
    "METROPOLITAN_ZONES",
    "Holiday",
    "Periode",
    "SchoolCalendar",
    "academie_of_departement",
    "departement_of_uai",
    "official_calendar",
    "periode_day",
    "periode_closed_on",
    "deployment_calendar",
    "periode_days",
    "periode_ends",
    "periode_end_across",
    "school_year_of",
    "uai_check_letter",
    "zone_of",
    "zones_of",
]

#: The zones of metropolitan France (the others are académies with their own calendar).
METROPOLITAN_ZONES: Final = ("A", "B", "C")

#: Holidays that close a période, in school-year order (the package's names).
HOLIDAY_NAMES: Final = (
    "Vacances de la Toussaint",
    "Vacances de Noël",
    "Vacances d'hiver",
    "Vacances de printemps",
    "Vacances d'été",
)

_SCHOOL_YEAR = re.compile(r"^([0-9]{4})-([0-9]{4})$")
# 23 letters: A-Z without I, O and Q (they read as 1, 0 and O).
_UAI_LETTERS: Final = "ABCDEFGHJKLMNPRSTUVWXYZ"


@dataclass(frozen=True)
class Holiday:
    """Holidays of one zone: from ``start`` (first day without class) to ``end`` (last
    day without class; classes resume the next school day)."""

    zone: str
    name: str
    start: date
    end: date


@dataclass(frozen=True)
class Periode:
    """A période of a school year in one zone, both ends included."""

    school_year: str
    number: int
    zone: str
    start: date
    end: date

    def label(self) -> str:
        """French label, e.g. ``période 2 (2027-2028, zone A)``."""
        return f"période {self.number} ({self.school_year}, zone {self.zone})"


# --- académies, départements, UAI ------------------------------------------------------


@cache
def _academies() -> Mapping[str, Mapping[str, object]]:
    text = resources.files("experiments.protocol").joinpath("data/academies.json").read_text(
        encoding="utf-8"
    )
    table: Mapping[str, Mapping[str, object]] = json.loads(text)["academies"]
    return table


def zone_of(academie: str) -> str:
    """The holiday zone of an académie (``A``, ``B``, ``C``, or its own name).

    Examples
    --------
    >>> zone_of("lyon"), zone_of("paris"), zone_of("la-reunion")
    ('A', 'C', 'la-reunion')
    """
    try:
        return str(_academies()[academie]["zone"])
    except KeyError:
        raise CalendarError(f"unknown académie {academie!r}", field="academie") from None


def zones_of(academies: Iterable[str]) -> tuple[str, ...]:
    """The zones of ``academies``, sorted; every metropolitan zone when none is named."""
    zones = sorted({zone_of(a) for a in academies})
    return tuple(zones) if zones else METROPOLITAN_ZONES


def academie_of_departement(departement: str) -> str | None:
    """The académie of a département code (``75``, ``2A``, ``974``), ``None`` if unknown.

    Examples
    --------
    >>> academie_of_departement("75"), academie_of_departement("2B")
    ('paris', 'corse')
    """
    for academie, row in _academies().items():
        departements = row["departements"]
        assert isinstance(departements, list)
        if departement in departements:
            return academie
    return None


def departement_of_uai(uai: str) -> str:
    """The département of a UAI from its first three characters.

    ``0DD`` is département ``DD``; ``620`` and ``720`` are Corse-du-Sud (2A) and
    Haute-Corse (2B); ``97N`` is an overseas département.

    Examples
    --------
    >>> [departement_of_uai(u) for u in ("0751234J", "6200001G", "9741234K")]
    ['75', '2A', '974']
    """
    prefix = uai[:3]
    if prefix == "620":
        return "2A"
    if prefix == "720":
        return "2B"
    return prefix[1:] if prefix.startswith("0") else prefix


def uai_check_letter(seven: str) -> str:
    """The check letter of a UAI's first 7 digits.

    The letter is ``"ABCDEFGHJKLMNPRSTUVWXYZ"[n % 23]`` where ``n`` is the 7-digit number
    (the Répertoire national des établissements' key, as implemented by the ministry's
    own services, e.g. mission-apprentissage/catalogue-apprentissage
    ``server/src/common/utils/uaiUtils.js``; checked on real UAIs in
    ``tests/unit/test_school_calendar.py``).

    Examples
    --------
    >>> uai_check_letter("0751234")
    'J'
    """
    if len(seven) != 7 or not seven.isdigit():
        raise CalendarError(f"a UAI starts with 7 digits, got {seven!r}", field="school_uai")
    return _UAI_LETTERS[int(seven) % 23]


# --- school years and périodes ---------------------------------------------------------


def school_year_of(day: date) -> str:
    """The school year a day belongs to (August starts the next one).

    Examples
    --------
    >>> school_year_of(date(2027, 11, 3)), school_year_of(date(2028, 6, 30))
    ('2027-2028', '2027-2028')
    """
    first = day.year if day.month >= 8 else day.year - 1
    return f"{first}-{first + 1}"


def _first_year(school_year: str) -> int:
    match = _SCHOOL_YEAR.match(school_year)
    if match is None or int(match[2]) != int(match[1]) + 1:
        raise CalendarError(
            f"a school year is written YYYY-YYYY (e.g. 2027-2028), got {school_year!r}"
        )
    return int(match[1])


class SchoolCalendar:
    """Holidays per zone, and the school years and périodes they delimit."""

    def __init__(self, holidays: Iterable[Holiday], source: str) -> None:
        by_zone: dict[str, list[Holiday]] = defaultdict(list)
        for holiday in holidays:
            by_zone[holiday.zone].append(holiday)
        self._holidays = {z: sorted(h, key=lambda x: x.start) for z, h in by_zone.items()}
        self.source = source

    @property
    def zones(self) -> tuple[str, ...]:
        """Zones with dates."""
        return tuple(sorted(self._holidays))

    def holidays(self, zone: str) -> Sequence[Holiday]:
        """The holidays of ``zone``, in date order."""
        return tuple(self._holidays.get(zone, ()))

    def with_file(self, path: Path) -> SchoolCalendar:
        """This calendar with the holidays of a CSV file added (a newer school year, an
        overseas académie); the file's dates replace ours for the same zone and start.

        The file has a header ``zone,name,start,end``: ``zone`` is ``A``, ``B``, ``C`` or an
        académie's zone (``la-reunion``), ``name`` one of :data:`HOLIDAY_NAMES`, ``start``
        the first day without class and ``end`` the last one (YYYY-MM-DD).
        """
        added: list[Holiday] = []
        with path.open(encoding="utf-8", newline="") as handle:
            for line, row in enumerate(csv.DictReader(handle), start=2):
                try:
                    holiday = Holiday(row["zone"], row["name"], date.fromisoformat(row["start"]),
                                      date.fromisoformat(row["end"]))
                except (KeyError, TypeError, ValueError) as exc:
                    raise CalendarError(f"not a holiday row ({exc})", path=str(path),
                                        line=line) from None
                if holiday.name not in HOLIDAY_NAMES:
                    raise CalendarError(f"unknown holiday {holiday.name!r}; expected one of "
                                        f"{', '.join(HOLIDAY_NAMES)}", path=str(path),
                                        line=line, field="name")
                added.append(holiday)
        replaced = {(h.zone, h.start) for h in added}
        kept = [h for z in self._holidays.values() for h in z if (h.zone, h.start) not in replaced]
        return SchoolCalendar(kept + added, f"{self.source}; {path}")

    def periodes(self, school_year: str, zone: str) -> list[Periode]:
        """The five périodes of ``school_year`` in ``zone``.

        Examples
        --------
        >>> [(p.start, p.end) for p in official_calendar().periodes("2025-2026", "A")][:2]
        [(datetime.date(2025, 9, 1), datetime.date(2025, 10, 17)), \
(datetime.date(2025, 11, 3), datetime.date(2025, 12, 19))]
        """
        first = _first_year(school_year)
        holidays = self._holidays.get(zone)
        if not holidays:
            raise CalendarError(
                f"no school calendar for zone {zone!r}: load its holidays from a file "
                "(SchoolCalendar.with_file: zone,name,start,end)", field="zone")
        summer = [h for h in holidays if h.name == "Vacances d'été" and h.end.year == first]
        if not summer:
            raise CalendarError(f"no school calendar for {school_year} in zone {zone}: "
                                f"{self.source} ends earlier; load a newer year from a file")
        rentree = summer[-1].end + timedelta(days=1)
        while rentree.weekday() >= 5:
            rentree += timedelta(days=1)
        closing: list[Holiday] = []
        for name in HOLIDAY_NAMES:
            found = [h for h in holidays if h.name == name and h.start > rentree][:1]
            if not found or school_year_of(found[0].start) != school_year:
                raise CalendarError(f"the {name} of {school_year} in zone {zone} are missing "
                                    f"from {self.source}")
            closing.append(found[0])
        periodes, start = [], rentree
        for number, holiday in enumerate(closing, start=1):
            periodes.append(Periode(school_year, number, zone, start,
                                    holiday.start - timedelta(days=1)))
            start = holiday.end + timedelta(days=1)
        return periodes

    def periode(self, school_year: str, number: int, zone: str) -> Periode:
        """Période ``number`` (1 to 5) of ``school_year`` in ``zone``."""
        if not 1 <= number <= 5:
            raise CalendarError(f"a school year has périodes 1 to 5, got {number}")
        return self.periodes(school_year, zone)[number - 1]


def _package_holidays() -> list[Holiday]:
    from vacances_scolaires_france import SchoolHolidayDates

    days = SchoolHolidayDates().data
    holidays: list[Holiday] = []
    for zone in METROPOLITAN_ZONES:
        key = f"vacances_zone_{zone.lower()}"
        span: list[date] = []
        name = ""
        for day in sorted(days):
            row = days[day]
            on = bool(row[key]) and row["nom_vacances"] in HOLIDAY_NAMES
            if on and span and row["nom_vacances"] == name and day - span[-1] == timedelta(1):
                span.append(day)
                continue
            if span:
                holidays.append(Holiday(zone, name, span[0], span[-1]))
            span, name = ([day], row["nom_vacances"]) if on else ([], "")
        if span:
            holidays.append(Holiday(zone, name, span[0], span[-1]))
    return holidays


@cache
def official_calendar(extra: Path | None = None) -> SchoolCalendar:
    """The calendar of zones A, B and C from ``vacances-scolaires-france``, with the
    holidays of ``extra`` (see :meth:`SchoolCalendar.with_file`) added."""
    from importlib.metadata import version

    calendar = SchoolCalendar(
        _package_holidays(),
        f"vacances-scolaires-france {version('vacances-scolaires-france')} "
        "(data.gouv.fr « Vacances scolaires par zones »)",
    )
    return calendar.with_file(extra) if extra is not None else calendar


def deployment_calendar() -> SchoolCalendar:
    """The official calendar with the deployment's own file of holidays, when
    ``settings.school_calendar_file`` names one (Corse, overseas académies, a newer year):
    the calendar every protocol and schedule of this deployment is resolved with."""
    from experiments.settings import Settings

    return official_calendar(Settings().school_calendar_file)


def periode_end_across(calendar: SchoolCalendar, school_year: str, number: int,
                       zones: Iterable[str]) -> date:
    """The last day of période ``number`` across ``zones``: the latest of their ends.

    Examples
    --------
    >>> periode_end_across(official_calendar(), "2025-2026", 4, ("A", "C"))
    datetime.date(2026, 4, 17)
    """
    return max(calendar.periode(school_year, number, z).end for z in zones)


def periode_day(at: date | str, *, intervention_start: date, academies: Iterable[str],
                calendar: SchoolCalendar | None = None) -> date:
    """The day a schedule's ``at`` names: a date as is; ``fin-periode-N[-YYYY-YYYY]`` the
    day after période N ends in the last of the protocol's zones (its school year:
    the one named, else the one in which the intervention starts).

    Examples
    --------
    >>> periode_day("fin-periode-3", intervention_start=date(2025, 9, 29),
    ...             academies=["lyon", "paris"])
    datetime.date(2026, 2, 21)
    """
    if isinstance(at, date):
        return at
    match = re.fullmatch(r"fin-periode-([1-5])(?:-([0-9]{4}-[0-9]{4}))?", at)
    if match is None:
        raise CalendarError(f"not a période end (fin-periode-N), got {at!r}", field="at")
    school_year = match[2] or school_year_of(intervention_start)
    end = periode_end_across(calendar or deployment_calendar(), school_year, int(match[1]),
                             zones_of(academies))
    return end + timedelta(days=1)


def periode_ends(start: date, last: date, academies: Iterable[str],
                 calendar: SchoolCalendar | None = None) -> list[tuple[str, int, date]]:
    """(school year, période, day after it ends in the last of the zones) for each période
    that ends between ``start`` and ``last`` (included)."""
    calendar = calendar or deployment_calendar()
    zones = zones_of(academies)
    found: list[tuple[str, int, date]] = []
    year = school_year_of(start)
    while date(_first_year(year), 8, 1) <= last:
        for number in range(1, 6):
            end = periode_end_across(calendar, year, number, zones)
            if start <= end <= last:
                found.append((year, number, end + timedelta(days=1)))
        first = _first_year(year) + 1
        year = f"{first}-{first + 1}"
    return found


def periode_days(start: date, last: date, academies: Iterable[str],
                 calendar: SchoolCalendar | None = None) -> list[date]:
    """The day after each période that ends between ``start`` and ``last`` (included),
    in the last of the protocol's zones: the days of ``every: periode``.

    Examples
    --------
    >>> [d.isoformat() for d in periode_days(date(2025, 9, 29), date(2026, 6, 19), ["paris"])]
    ['2025-10-18', '2025-12-20', '2026-02-21', '2026-04-18']
    """
    return [day for _, _, day in periode_ends(start, last, academies, calendar)]


def periode_closed_on(day: date, start: date, last: date, academies: Iterable[str],
                      calendar: SchoolCalendar | None = None) -> tuple[int, str] | None:
    """(période, school year) whose end a run due on ``day`` follows, if any: what a
    report of a schedule in périodes says it covers.

    Examples
    --------
    >>> periode_closed_on(date(2026, 2, 21), date(2025, 9, 29), date(2026, 6, 19), ["paris"])
    (3, '2025-2026')
    """
    for year, number, due in periode_ends(start, last, academies, calendar):
        if due == day:
            return number, year
    return None
