"""Official French school vocabularies used by the protocol language.

The lists are closed on purpose: a protocol that says ``levels: [CE3]`` or
``academies: [rouen]`` is refused with a did-you-mean hint, rather than silently
matching no class at enrollment.

Sources (checked 2026-11):

- Niveaux and cycles: Code de l'éducation, art. D311-10 (cycles 1 to 4, as set by
  décret n° 2013-682 du 24 juillet 2013, in force since the rentrée 2016); the lycée
  has no numbered cycle (seconde, then the « cycle terminal » 1re-Tle).
- Académies: Code de l'éducation, art. R222-2 and the annexed table, as amended by
  décret n° 2019-1554 du 30 décembre 2019 (Caen and Rouen merged into the académie
  de Normandie on 1 January 2020) and décret n° 2019-1556 (académie de Mayotte
  created on 1 January 2020): 30 académies, 25 in metropolitan France and 5 overseas.
  The vice-rectorats (Nouvelle-Calédonie, Polynésie française, Wallis-et-Futuna) and
  the service of Saint-Pierre-et-Miquelon are not académies and are not listed.
  Slugs are the names in lower case, without accents, spaces turned into dashes.
- Départements: INSEE, Code officiel géographique 2024 (codes 01 to 95 with 2A and 2B
  for Corse instead of 20, and 971 to 974 and 976 overseas): 101 départements.
- Programmes: the funding programmes that Banque des Territoires and the State run for
  digital education (issue 22): Territoires Numériques Éducatifs (TNE), eFRAN, the
  AI partnerships (P2IA), France 2030 actions, and "autre". More names can be added by
  configuration (``PREUVE_PROGRAMMES``, ``experiments/settings.py``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Final
from zoneinfo import ZoneInfo

__all__ = [
    "SCHOOL_TIMEZONE",
    "ACADEMIES",
    "ATTRIBUTE_ALIASES",
    "ATTRIBUTE_VOCABULARIES",
    "CYCLES",
    "DEPARTEMENTS",
    "EDUCATION_PRIORITY",
    "FORMER_ACADEMIES",
    "LEVELS",
    "PROGRAMMES",
    "STANDARD_UNIT_ATTRIBUTES",
    "canonical_value",
    "did_you_mean",
    "unit_attributes",
]

SCHOOL_TIMEZONE: Final = ZoneInfo("Europe/Paris")
"""The time zone of school days: dates of events, windows, schedules and retention."""

#: Niveaux, in school order.
LEVELS: tuple[str, ...] = (
    "PS", "MS", "GS", "CP", "CE1", "CE2", "CM1", "CM2",
    "6e", "5e", "4e", "3e", "2nde", "1re", "Tle",
)

#: Cycles (Code de l'éducation, D311-10) and their niveaux.
CYCLES: Mapping[int, tuple[str, ...]] = {
    1: ("PS", "MS", "GS"),
    2: ("CP", "CE1", "CE2"),
    3: ("CM1", "CM2", "6e"),
    4: ("5e", "4e", "3e"),
}

#: Académies since 1 January 2020 (see the module docstring for the source).
ACADEMIES: tuple[str, ...] = (
    "aix-marseille", "amiens", "besancon", "bordeaux", "clermont-ferrand", "corse",
    "creteil", "dijon", "grenoble", "lille", "limoges", "lyon", "montpellier",
    "nancy-metz", "nantes", "nice", "normandie", "orleans-tours", "paris", "poitiers",
    "reims", "rennes", "strasbourg", "toulouse", "versailles",
    # overseas
    "guadeloupe", "guyane", "la-reunion", "martinique", "mayotte",
)

#: Départements (INSEE codes, see the module docstring for the source).
DEPARTEMENTS: tuple[str, ...] = (
    *(f"{n:02d}" for n in range(1, 20)), "2A", "2B", *(f"{n:02d}" for n in range(21, 96)),
    "971", "972", "973", "974", "976",
)

#: Programmes built into the language (more by configuration, ``Settings.programmes``).
PROGRAMMES: tuple[str, ...] = ("TNE", "eFRAN", "P2IA", "France 2030", "autre")

#: Former académies, merged on 1 January 2020 (décret n° 2019-1554): name → successor.
FORMER_ACADEMIES: Mapping[str, str] = {"caen": "normandie", "rouen": "normandie"}

#: Values of the ``education_priority`` unit attribute: réseau d'éducation prioritaire,
#: renforcé, or outside éducation prioritaire (``hors_ep``).
EDUCATION_PRIORITY: tuple[str, ...] = ("REP", "REP+", "hors_ep")

#: Closed vocabularies of unit attributes: the values stored, and the aliases accepted in
#: enrollment files (matched ignoring case and repeated spaces). ``none`` was the value
#: of « hors éducation prioritaire » until 2026-12: it stays an alias, so that files
#: written then mean the same thing, and it no longer makes a stratum of its own.
ATTRIBUTE_VOCABULARIES: Mapping[str, tuple[str, ...]] = {"education_priority": EDUCATION_PRIORITY}
ATTRIBUTE_ALIASES: Mapping[str, Mapping[str, str]] = {
    "education_priority": {
        "rep": "REP", "rep+": "REP+", "rep plus": "REP+", "hors ep": "hors_ep",
        "hors_ep": "hors_ep", "hors-ep": "hors_ep", "hors éducation prioritaire": "hors_ep",
        "none": "hors_ep", "aucune": "hors_ep",
    },
}


def canonical_value(attribute: str, value: str) -> str | None:
    """The stored form of ``value`` for ``attribute``: the value of its closed vocabulary
    that ``value`` names (itself or an alias), ``None`` if it names none; ``value``
    unchanged when the attribute has no closed vocabulary.

    Examples
    --------
    >>> [canonical_value("education_priority", v) for v in ("hors EP", "none", "rep+")]
    ['hors_ep', 'hors_ep', 'REP+']
    >>> canonical_value("education_priority", "REP++") is None, canonical_value("sector", "x")
    (True, 'x')
    """
    values = ATTRIBUTE_VOCABULARIES.get(attribute)
    if values is None:
        return value
    if value in values:
        return value
    key = " ".join(value.split()).lower()
    return ATTRIBUTE_ALIASES.get(attribute, {}).get(key)

#: Unit attributes every enrollment carries, by unit of randomisation. Strata,
#: subgroups and criteria may use these, or attributes declared in
#: ``population.attributes``. A school has no single ``level``, and stratifying schools
#: by ``school_uai`` would put one unit in each stratum, so neither is a school attribute.
STANDARD_UNIT_ATTRIBUTES: Mapping[str, tuple[str, ...]] = {
    "learner": (
        "class_id", "school_uai", "academie", "departement", "level",
        "education_priority", "sector", "rural",
    ),
    "class": (
        "school_uai", "academie", "departement", "level", "education_priority",
        "sector", "rural",
    ),
    "school": ("academie", "departement", "education_priority", "sector", "rural"),
}


def unit_attributes(unit: str, declared: Iterable[str] = ()) -> tuple[str, ...]:
    """The attributes a unit of randomisation carries: the standard ones and ``declared``.

    Parameters
    ----------
    unit:
        ``learner``, ``class`` or ``school``.
    declared:
        Extra attributes declared by the protocol (``population.attributes``).

    Returns
    -------
    tuple[str, ...]
        Attribute names, standard ones first.

    Examples
    --------
    >>> "school_uai" in unit_attributes("school")
    False
    """
    standard = STANDARD_UNIT_ATTRIBUTES.get(unit, ())
    return standard + tuple(a for a in declared if a not in standard)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ``"; did you mean 'x'?"`` suffix naming the closest choice, or ``""``.

    Matching ignores case, so ``cp`` suggests ``CP``.

    Examples
    --------
    >>> did_you_mean("creteill", ACADEMIES)
    "; did you mean 'creteil'?"
    """
    by_lower = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f"; did you mean {by_lower[close[0]]!r}?" if close else ""
