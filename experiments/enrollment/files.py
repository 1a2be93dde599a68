"""The enrollment file: what a protocol asks of it, and the checks of each row.

An enrollment file is a CSV with a header row and one class per line::

    class_id,school_uai,level,pupils,academie,education_priority
    c-0001,0781234T,CP,24,versailles,REP

The file Excel writes in France is read as well (:func:`decode_csv`, :data:`COLUMN_ALIASES`):
``;``-separated (the separator is the one the header row uses: ``;``, ``,`` or a tab),
Windows-1252 or UTF-8 with or without a byte order mark, French column names
(``Classe;UAI;Niveau;Effectif;Académie;Éducation prioritaire``) and académie names as
people write them (``Créteil`` for ``creteil``).

``level`` may also be written ``niveau``. Besides the five base columns, the file must
carry the unit attributes the protocol names (strata, criteria, subgroups, unit
covariates, ``population.attributes``); other columns are ignored and never stored (data
minimisation: a stray "teacher" column never reaches the registry).

Each row is checked against the protocol's population; a refused row gets a
:class:`Refusal` with a stable ``code`` and a reason in French (académie staff) and
English (logs, researchers), and does not stop the valid rows.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from experiments.enrollment.randomisation import Scheme, integer_ratios, stratum_key
from experiments.errors import EnrollmentError
from experiments.protocol.calendar import (
    academie_of_departement,
    departement_of_uai,
    uai_check_letter,
)
from experiments.protocol.vocabulary import (
    ACADEMIES,
    ATTRIBUTE_ALIASES,
    ATTRIBUTE_VOCABULARIES,
    LEVELS,
    SCHOOL_TIMEZONE,
    canonical_value,
    unit_attributes,
)
from ingest.contract import identifying_text

if TYPE_CHECKING:
    from experiments.protocol.language import Protocol

__all__ = [
    "BASE_COLUMNS",
    "COLUMN_ALIASES",
    "ClassRow",
    "ClassesFile",
    "EnrollmentDesign",
    "LEARNER_MESSAGES",
    "MAX_PUPILS",
    "MESSAGES",
    "PUPIL_COLUMNS",
    "PupilRow",
    "PupilsFile",
    "Refusal",
    "decode_csv",
    "read_classes",
    "read_pupils",
    "refusal",
]

#: Columns every enrollment file has (``niveau`` is accepted for ``level``).
BASE_COLUMNS: tuple[str, ...] = ("class_id", "school_uai", "level", "pupils", "academie")
_ALIASES = {"niveau": "level"}

#: Column names accepted for each column, compared by their key (lower case, accents,
#: spaces, dashes, dots, underscores and apostrophes removed: ``Nombre d'élèves`` is
#: ``nombredeleves``). The names of Excel files written by académie staff; documented in
#: ``docs/academies.md``.
COLUMN_ALIASES: Mapping[str, tuple[str, ...]] = {
    "class_id": ("classe", "idclasse", "identifiantclasse", "identifiantdelaclasse",
                 "codeclasse", "classid"),
    "school_uai": ("uai", "codeuai", "uaiecole", "uaietablissement", "rne", "schooluai"),
    "level": ("niveau", "level"),
    "pupils": ("effectif", "effectifs", "nombredeleves", "nbeleves", "nbdeleves", "pupils"),
    "academie": ("academie", "academy"),
    "education_priority": ("educationprioritaire", "educationpriority"),
    "learner_id": ("identifianteleve", "ideleve", "identifiantpseudonyme",
                   "learnerid"),
}
_COLUMN_KEYS = {key: column for column, keys in COLUMN_ALIASES.items() for key in keys}
# The separators a header row may use, most specific first (Excel's French CSV: ';').
_SEPARATORS = (";", "\t", ",")
# Same patterns as the event contract (ingest/contract.py), so every enrolled class can
# send events: pseudonymous ids, and UAI = 7 characters then a check letter.
_CLASS_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
_UAI = re.compile(r"^[0-9]{3}[0-9AB][0-9]{3}[A-Z]$")
# Largest class we accept: French classes stay under ~35 pupils; 60 leaves room for
# grouped classes while catching a typo (240 for 24).
MAX_PUPILS = 60
#: Longest unit attribute kept (a category, a count, a short code: never free text).
MAX_ATTRIBUTE_CHARS = 64

# --- refusals ------------------------------------------------------------------------

#: code -> (French, English); placeholders are filled by :func:`refusal`.
MESSAGES: dict[str, tuple[str, str]] = {
    "malformed_row": (
        "ligne mal formée : {fields} champs, l'en-tête en a {header}",
        "malformed row: {fields} fields, the header has {header}",
    ),
    "unreadable_row": (
        "ligne illisible en CSV ({detail})",
        "row is not readable as CSV ({detail})",
    ),
    "empty_field": (
        "le champ « {field} » est vide",
        "field '{field}' is empty",
    ),
    "bad_class_id": (
        "identifiant de classe « {value} » invalide : lettres, chiffres et . _ : - seulement "
        "(identifiant pseudonyme, jamais un nom)",
        "class id '{value}' is invalid: letters, digits and . _ : - only (a pseudonymous id, "
        "never a name)",
    ),
    "bad_uai": (
        "UAI « {value} » invalide : 7 chiffres puis une lettre, par exemple 0781234T",
        "UAI '{value}' is invalid: 7 digits then a letter, e.g. 0781234T",
    ),
    "uai_check_letter": (
        "UAI « {value} » invalide : sa lettre de contrôle devrait être {expected} (les 7 "
        "premiers caractères donnent la lettre ; vérifiez le numéro dans l'annuaire de "
        "l'éducation)",
        "UAI '{value}' is invalid: its check letter should be {expected} (the first 7 "
        "characters give the letter; check the number in the annuaire de l'éducation)",
    ),
    "uai_other_academie": (
        "l'UAI « {value} » est celle d'une école du département {departement}, de "
        "l'académie « {expected} », pas de l'académie déclarée « {academie} »",
        "UAI '{value}' is a school of département {departement}, in académie '{expected}', "
        "not in the declared académie '{academie}'",
    ),
    "unknown_value": (
        "« {value} » n'est pas une valeur de « {field} » : valeurs admises {allowed} "
        "(alias : {aliases})",
        "'{value}' is not a value of '{field}': expecting one of {allowed} (aliases: {aliases})",
    ),
    "bad_pupils": (
        "nombre d'élèves « {value} » invalide : un entier de 1 à {max} est attendu",
        "number of pupils '{value}' is invalid: expecting an integer from 1 to {max}",
    ),
    "other_academie": (
        "classe de l'académie « {value} » : votre compte (académie « {own} ») ne peut "
        "inscrire que les classes de ses propres écoles",
        "class of académie '{value}': your account (académie '{own}') may only enroll "
        "classes of its own schools",
    ),
    "academie_outside_population": (
        "l'académie « {value} » ne fait pas partie de l'expérimentation (académies : {allowed})",
        "académie '{value}' is not in the experiment's population (académies: {allowed})",
    ),
    "unknown_level": (
        "niveau « {value} » inconnu (PS, MS, GS, CP, CE1, CE2, CM1, CM2, 6e, 5e, 4e, 3e, "
        "2nde, 1re, Tle)",
        "unknown niveau '{value}' (PS, MS, GS, CP, CE1, CE2, CM1, CM2, 6e, 5e, 4e, 3e, "
        "2nde, 1re, Tle)",
    ),
    "level_outside_population": (
        "le niveau « {value} » ne fait pas partie de l'expérimentation (niveaux : {allowed})",
        "niveau '{value}' is not in the experiment's population (niveaux: {allowed})",
    ),
    "academie_criterion_not_met": (
        "critère de l'académie « {academie} » non rempli : « {field} » vaut « {value} », "
        "pas l'une des valeurs {allowed}",
        "criterion of académie '{academie}' not met: '{field}' is '{value}', not one of "
        "{allowed}",
    ),
    "academie_criterion_missing": (
        "l'académie « {academie} » a un critère sur « {field} » : ajoutez cette colonne "
        "au fichier",
        "académie '{academie}' has a criterion on '{field}': add this column to the file",
    ),
    "criterion_not_met": (
        "critère « {field} » non rempli : « {value} » n'est pas parmi {allowed}",
        "criterion '{field}' not met: '{value}' is not one of {allowed}",
    ),
    "outside_window": (
        "inscriptions fermées le {value} : elles sont ouvertes du {opens} au {closes}",
        "enrollment is closed on {value}: it is open from {opens} to {closes}",
    ),
    "window_not_open": (
        "les inscriptions ne sont pas encore ouvertes : elles ouvrent le {opens} (et ferment "
        "le {closes}) ; rien n'a été inscrit",
        "enrollment is not open yet: it opens on {opens} (and closes on {closes}); nothing "
        "was enrolled",
    ),
    "window_closed": (
        "les inscriptions sont closes depuis le {closes} ; rien n'a été inscrit",
        "enrollment closed on {closes}; nothing was enrolled",
    ),
    "duplicate_class": (
        "la classe « {value} » figure déjà à la ligne {first} du fichier",
        "class '{value}' already appears on line {first} of the file",
    ),
    "enrolled_differently": (
        "la classe est déjà inscrite avec « {field} » = « {stored} », pas « {value} » ; "
        "une inscription ne se modifie pas",
        "the class is already enrolled with '{field}' = '{stored}', not '{value}'; an "
        "enrollment cannot be edited",
    ),
    "validated_elsewhere": (
        "la classe « {value} » est déjà validée par une autre académie : vérifiez son "
        "identifiant",
        "class '{value}' is already validated by another académie: check its id",
    ),
    "enrolled_elsewhere": (
        "la classe « {value} » est déjà inscrite dans l'expérimentation « {other} »",
        "class '{value}' is already enrolled in experiment '{other}'",
    ),
    "identifying_attribute": (
        "l'attribut « {field} » {why_fr} : une inscription ne porte jamais d'identifiant "
        "direct (adresse électronique, numéro de téléphone)",
        "attribute '{field}' {why_en}: an enrollment never carries a direct identifier "
        "(e-mail address, phone number)",
    ),
    "attribute_too_long": (
        "l'attribut « {field} » a {length} caractères, au plus {max} sont admis",
        "attribute '{field}' has {length} characters, at most {max} allowed",
    ),
    "control_character": (
        "le champ « {field} » contient un caractère de contrôle (NUL, tabulation...)",
        "field '{field}' holds a control character (NUL, tab...)",
    ),
    "school_stratum_conflict": (
        "l'école {school} est tirée au sort comme une unité dans la strate {stratum} ; "
        "cette classe indique la strate {value}",
        "school {school} is randomised as one unit in stratum {stratum}; this class says "
        "stratum {value}",
    ),
}


@dataclass(frozen=True)
class Refusal:
    """A refused row: where, which field and value, and why (French and English)."""

    line: int
    class_id: str
    field: str
    value: str
    code: str
    message_fr: str
    message_en: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f": {self.field}" if self.field else "")
        return f"{where}: {self.message_en} / {self.message_fr}"

    def as_dict(self) -> dict[str, object]:
        """Plain fields, for JSON output."""
        return asdict(self)


def refusal(
    code: str, line: int, class_id: str, field: str, value: str, **details: object
) -> Refusal:
    """Build the refusal ``code`` for a row, both messages filled in.

    Examples
    --------
    >>> r = refusal("bad_pupils", 3, "c1", "pupils", "abc", max=60)
    >>> r.message_en
    "number of pupils 'abc' is invalid: expecting an integer from 1 to 60"
    """
    return _filled_refusal(MESSAGES, code, line, class_id, field, value, details)


def _filled_refusal(
    messages: Mapping[str, tuple[str, str]],
    code: str,
    line: int,
    class_id: str,
    field: str,
    value: str,
    details: Mapping[str, object],
) -> Refusal:
    """The refusal ``code`` of ``messages`` (:data:`MESSAGES`, or the pupils file's
    :data:`experiments.enrollment.files.LEARNER_MESSAGES`), both messages filled in
    from ``field``, ``value``, ``class_id`` and ``details``."""
    french, english = messages[code]
    values = {"field": field, "value": value, "class_id": class_id, **details}
    return Refusal(
        line=line, class_id=class_id, field=field, value=value, code=code,
        message_fr=french.format(**values), message_en=english.format(**values),
    )


# --- the protocol, as enrollment sees it -------------------------------------------


@dataclass(frozen=True)
class EnrollmentDesign:
    """What enrollment needs from a protocol (built by :meth:`from_protocol`).

    ``attributes`` are the unit attributes the file must carry beyond the base columns;
    ``class_data`` and ``pupil_data`` say what happens to data already collected when a
    class or a pupil withdraws (``keep`` or ``remove``).
    """

    experiment_id: str
    resource_id: str
    unit: Literal["learner", "class", "school"]
    levels: tuple[str, ...]
    academies: tuple[str, ...]
    criteria: Mapping[str, tuple[str, ...]]
    strata: tuple[str, ...]
    attributes: tuple[str, ...]
    arms: tuple[str, ...]
    ratios: tuple[int, ...]
    control: str
    seed: int
    opens: date | None = None
    closes: date | None = None
    class_data: Literal["keep", "remove"] = "keep"
    pupil_data: Literal["keep", "remove"] = "remove"
    validations: tuple[str, ...] = ("academie",)
    """Who validates a class before it is enrolled (``protocol.enrollment.validations``);
    not part of :meth:`fingerprint`: it decides when a class is drawn, not how."""

    @property
    def double_validation(self) -> bool:
        """Whether a class is enrolled only once its collectivité validated it too."""
        return "collectivite" in self.validations

    @classmethod
    def from_protocol(cls, protocol: Protocol) -> EnrollmentDesign:
        """The enrollment view of a validated protocol.

        The protocol language has no withdrawal section yet: class withdrawals keep the
        data collected (needed for the intention-to-treat analysis), pupil withdrawals
        remove it (the pupil's objection, RGPD art. 21).

        Examples
        --------
        >>> design = core_design()
        >>> design.arms, design.ratios, design.attributes
        (('lectio', 'usual'), (1, 1), ('education_priority',))
        """
        population = protocol.population
        named = [
            *protocol.randomisation.strata,
            *population.criteria,
            *population.attributes,
            *protocol.analysis.subgroups,
            *protocol.analysis.covariates,
        ]
        carried = unit_attributes(population.unit, population.attributes)
        attributes: list[str] = []
        for name in named:
            # Criteria are always read (they decide who enters); other names only when
            # they are unit attributes (a learner covariate is not a column of this file).
            wanted = name in carried or name in population.criteria
            if wanted and name not in BASE_COLUMNS and name not in attributes:
                attributes.append(name)
        window = protocol.enrollment
        return cls(
            experiment_id=protocol.id,
            resource_id=protocol.resource.id,
            unit=population.unit,
            levels=tuple(population.levels),
            academies=tuple(population.academies),
            criteria={
                name: tuple(_cell_text(value) for value in values)
                for name, values in population.criteria.items()
            },
            strata=tuple(protocol.randomisation.strata),
            attributes=tuple(attributes),
            arms=tuple(arm.name for arm in protocol.arms),
            ratios=integer_ratios([arm.allocation for arm in protocol.arms]),
            control=protocol.control_arm.name,
            seed=protocol.randomisation.seed,
            opens=window.opens if window else None,
            closes=window.closes if window else None,
            validations=tuple(window.validations) if window else ("academie",),
        )

    @property
    def scheme(self) -> Scheme:
        """The randomisation scheme (arms, integer ratios, seed)."""
        return Scheme(self.experiment_id, self.seed, self.arms, self.ratios)

    @property
    def treatment_arms(self) -> tuple[str, ...]:
        """Arms that receive the resource (every arm but the control)."""
        return tuple(arm for arm in self.arms if arm != self.control)

    def fingerprint(self) -> str:
        """SHA-256 of what the assignment depends on; it must not change once enrolling."""
        basis = {
            "experiment_id": self.experiment_id, "unit": self.unit, "strata": self.strata,
            "arms": self.arms, "ratios": self.ratios, "seed": self.seed,
            "block_size": self.scheme.block_size,
        }
        return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()


def _cell_text(value: object) -> str:
    # Criteria values may be YAML booleans or integers; CSV cells are text.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_TRUE = {"true", "1", "oui", "yes", "vrai"}
_FALSE = {"false", "0", "non", "no", "faux"}


def _normalise(value: str, allowed: tuple[str, ...]) -> str:
    if set(allowed) <= {"true", "false"}:
        lowered = value.lower()
        return "true" if lowered in _TRUE else "false" if lowered in _FALSE else value
    return value


# --- reading and checking a file ----------------------------------------------------


@dataclass(frozen=True)
class ClassRow:
    """A class row that passed every check that needs no database."""

    line: int
    class_id: str
    school_uai: str
    academie: str
    level: str
    pupils: int
    attributes: Mapping[str, str]
    stratum: str
    cluster: str

    def values(self) -> dict[str, object]:
        """The stored values that must match when the same class is enrolled again."""
        return {
            "school_uai": self.school_uai, "academie": self.academie, "level": self.level,
            "pupils": self.pupils, "attributes": dict(self.attributes),
        }


@dataclass(frozen=True)
class ClassesFile:
    """A read enrollment file: the rows to enroll and the rows refused."""

    path: str
    rows: list[ClassRow]
    refusals: list[Refusal]
    ignored_columns: tuple[str, ...] = ()


def read_classes(
    source: Path | str,
    design: EnrollmentDesign,
    *,
    name: str | None = None,
    academie: str | None = None,
    today: date | None = None,
    academie_criteria: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
) -> ClassesFile:
    """Read an enrollment CSV and check each row against the protocol's population.

    Parameters
    ----------
    source
        A path, or the CSV text itself (then ``name`` names it in messages).
    design
        The experiment's enrollment design.
    academie
        The académie of the caller: rows of another académie are refused. None for a
        caller not bound to one académie (an administrator).
    today
        Date checked against the enrollment window (default: today in Paris, where the
        window's dates are meant; overseas académies are a few hours apart).
    academie_criteria
        Eligibility criteria each académie adds to the protocol's (``{académie:
        {column: [allowed values]}}``, ``settings.academie_criteria``): a row of that
        académie whose column holds another value is refused.

    Returns
    -------
    ClassesFile
        Rows that passed, in file order, and refusals with reasons in French and English.

    Raises
    ------
    EnrollmentError
        The file as a whole is unusable (unreadable, not UTF-8, no header, a required
        column missing, or a learner-randomised protocol).

    Examples
    --------
    >>> design = core_design()
    >>> text = (
    ...     "class_id,school_uai,level,pupils,academie,education_priority\\n"
    ...     "c1,0781234T,CP,24,versailles,REP\\n"
    ...     "c2,0781234T,CE1,25,versailles,REP\\n"
    ... )
    >>> classes = read_classes(text, design, name="classes.csv")
    >>> [row.class_id for row in classes.rows], classes.refusals[0].code
    (['c1'], 'level_outside_population')
    """
    if design.unit == "learner":
        raise EnrollmentError(
            "this protocol randomises learners: enroll a file of pupils (learner_id,class_id,"
            "school_uai,level,academie + the protocol's attributes; see preuve enroll --help)",
            field="population.unit",
        )
    table = _CsvTable(source, name, unnamed="<classes>")
    if "learner_id" in table.columns:
        raise EnrollmentError(
            f"{table.name}:1: the header has learner_id: this is a file of pupils, but "
            f"{design.experiment_id} randomises by {design.unit}; enroll a file of classes",
            path=table.name, line=1, field="learner_id",
        )
    ignored = table.check_columns((*BASE_COLUMNS, *design.attributes), header="the header")
    checker = _RowChecker(design, academie, today or datetime.now(SCHOOL_TIMEZONE).date(),
                          academie_criteria or {})
    rows: list[ClassRow] = []
    refusals: list[Refusal] = []
    first_line: dict[str, int] = {}
    for line, record in table.records(refusals):
        problem = checker.check(record, line)
        if problem is not None:
            refusals.append(problem)
            continue
        class_id = record["class_id"]
        if class_id in first_line:
            refusals.append(
                refusal("duplicate_class", line, class_id, "class_id", class_id,
                        first=first_line[class_id])
            )
            continue
        first_line[class_id] = line
        rows.append(checker.row(record, line))
    refusals.sort(key=lambda r: r.line)
    return ClassesFile(table.name, rows, refusals, ignored)


class _CsvTable:
    """A classes or pupils file, read as far as its header row.

    The one reader of both files: the text (UTF-8, with or without a byte order mark),
    the header (``niveau`` read as ``level``), the required columns, then each data row
    (:meth:`records`).
    """

    def __init__(self, source: Path | str, name: str | None, *, unnamed: str) -> None:
        """Read ``source`` (a path, or the CSV text itself) up to its header row; messages
        name it ``name``, else the path, else ``unnamed``.

        Raises
        ------
        EnrollmentError
            The file cannot be read, is not UTF-8, is empty, or its header is not CSV.
        """
        if isinstance(source, Path):
            name = name or str(source)
            try:
                data = source.read_bytes()
            except OSError as exc:
                raise EnrollmentError(
                    f"{name}: cannot read the file: {exc.strerror}", path=name
                ) from None
            text = decode_csv(data, name)
        else:
            name = name or unnamed
            text = source.removeprefix("\ufeff")
        self.name = name
        first = text.split("\n", 1)[0]
        # The separator is the one the header row uses most (column names are words; ';'
        # on a tie); the csv module's Sniffer guesses from the data rows too, and guesses
        # wrong on a one-column or decimal-comma file.
        separator = max(_SEPARATORS, key=first.count)
        separator = separator if first.count(separator) else ","
        self._reader = csv.reader(io.StringIO(text, newline=""), strict=True,
                                  delimiter=separator)
        try:
            header = next(self._reader)
        except StopIteration:
            raise EnrollmentError(
                f"{name}: empty file, expecting a header row", path=name
            ) from None
        except csv.Error as exc:
            raise EnrollmentError(
                f"{name}:1: unreadable header: {exc}", path=name, line=1
            ) from None
        self.columns = [_column_name(c) for c in header]

    def check_columns(self, needed: tuple[str, ...], *, header: str) -> tuple[str, ...]:
        """Check that the header has each of ``needed`` and no column twice; return the
        other columns (ignored: never stored). ``header`` names the header in the message
        of a missing column.

        Raises
        ------
        EnrollmentError
            A column of ``needed`` is missing, or a column appears twice.
        """
        name, columns = self.name, self.columns
        missing = [c for c in needed if c not in columns]
        if missing:
            raise EnrollmentError(
                f"{name}:1: missing column(s) {', '.join(missing)}; {header} must have "
                f"{', '.join(needed)}",
                path=name, line=1, field=missing[0],
            )
        doubled = sorted({c for c in columns if columns.count(c) > 1})
        if doubled:
            raise EnrollmentError(
                f"{name}:1: column {doubled[0]} appears twice", path=name, line=1, field=doubled[0]
            )
        return tuple(c for c in columns if c not in needed)

    def records(self, refusals: list[Refusal]) -> Iterator[tuple[int, dict[str, str]]]:
        """Each data row as its line and ``{column: cell}`` (cells stripped), after
        :meth:`check_columns`.

        Blank lines are skipped; a row that is not readable as CSV, or has another number
        of fields than the header, is not yielded but added to ``refusals``.
        """
        columns = self.columns
        index = {column: i for i, column in enumerate(columns)}
        while True:
            try:
                cells = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                line = self._reader.line_num
                refusals.append(refusal("unreadable_row", line, "", "", "", detail=str(exc)))
                continue
            line = self._reader.line_num
            if not any(cell.strip() for cell in cells):
                continue  # blank lines are not classes or pupils
            if len(cells) != len(columns):
                at = index["class_id"]
                class_id = cells[at].strip() if len(cells) > at else ""
                refusals.append(
                    refusal("malformed_row", line, class_id, "", "",
                            fields=len(cells), header=len(columns))
                )
                continue
            record = {column: cells[i].strip() for column, i in index.items()}
            if "academie" in record:
                record["academie"] = academie_slug(record["academie"])
            yield line, record


def decode_csv(data: bytes, name: str) -> str:
    """The text of a CSV file: UTF-8 (with or without a byte order mark), else
    Windows-1252 (what Excel's « CSV (séparateur : point-virgule) » writes in France).

    A file that is UTF-8 is always read as UTF-8: Windows-1252 decodes any byte, so it is
    only the fallback (a UTF-8 file with an accent is never valid Windows-1252 text of
    the same meaning, and the reverse fails UTF-8 at its first accented byte).

    Raises
    ------
    EnrollmentError
        Neither (one of the five bytes Windows-1252 leaves undefined).

    Examples
    --------
    >>> decode_csv("Académie;Classe".encode("cp1252"), "f.csv")
    'Académie;Classe'
    >>> decode_csv("Académie".encode("utf-8-sig"), "f.csv")
    'Académie'
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError as exc:
        raise EnrollmentError(
            f"{name}: neither UTF-8 nor Windows-1252 text (byte {exc.start}); save the file "
            "as CSV (UTF-8 or « CSV séparateur point-virgule ») / ni UTF-8 ni Windows-1252 : "
            "enregistrez le fichier au format CSV", path=name,
        ) from None


def _column_name(cell: str) -> str:
    """The column a header cell names (:data:`COLUMN_ALIASES`), else the cell itself."""
    cell = cell.strip()
    plain = _ALIASES.get(cell, cell)
    return _COLUMN_KEYS.get(_column_key(plain), plain)


def academie_slug(value: str) -> str:
    """An académie as the registry writes it, from its name as people write it.

    Examples
    --------
    >>> academie_slug("Créteil"), academie_slug("Aix-Marseille"), academie_slug("La Réunion")
    ('creteil', 'aix-marseille', 'la-reunion')
    >>> academie_slug("versailles"), academie_slug("Paris 5")
    ('versailles', 'Paris 5')
    """
    plain = value.strip().lower().translate(str.maketrans("éèêëàâîïôöûüç", "eeeeaaiioouuc"))
    slug = re.sub(r"[\s'_]+", "-", plain)
    return slug if slug in ACADEMIES else value


def _attribute_problem(value: str, name: str, line: int, class_id: str) -> Refusal | None:
    """Why an attribute cell cannot be stored, or None: attributes are kept with the unit
    for years and exported, so an e-mail address or a phone number (the identifier check
    of events, :func:`ingest.contract.identifying_text`) and long free text are refused."""
    if len(value) > MAX_ATTRIBUTE_CHARS:
        return refusal("attribute_too_long", line, class_id, name, value[:MAX_ATTRIBUTE_CHARS],
                       length=len(value), max=MAX_ATTRIBUTE_CHARS)
    why = identifying_text(value)
    if why is None:
        return None
    # The refusal does not echo the identifier: it would land in logs and answers.
    english = why.split(" (")[0]
    french = ("ressemble à une adresse électronique" if "e-mail" in english
              else "ressemble à un numéro de téléphone")
    return refusal("identifying_attribute", line, class_id, name, "…",
                   why_fr=french, why_en=english)


class _RowChecker:
    """Checks one CSV record against the population; first problem wins."""

    def __init__(self, design: EnrollmentDesign, academie: str | None, today: date,
                 academie_criteria: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
                 ) -> None:
        self.design = design
        self.academie = academie
        self.today = today
        self.academie_criteria = academie_criteria or {}

    def academie_problem(self, record: Mapping[str, str], line: int) -> Refusal | None:
        """The académie's own criteria (on top of the protocol's), first unmet one."""
        academie, class_id = record["academie"], record["class_id"]
        for column, allowed in self.academie_criteria.get(academie, {}).items():
            if column not in record:
                return refusal("academie_criterion_missing", line, class_id, column, "",
                               academie=academie)
            value = canonical_value(column, record[column]) or record[column]
            if value not in allowed and record[column] not in allowed:
                return refusal("academie_criterion_not_met", line, class_id, column,
                               record[column], academie=academie, allowed=", ".join(allowed))
        return None

    def check(self, record: Mapping[str, str], line: int) -> Refusal | None:
        d = self.design
        class_id = record["class_id"]
        for column in (*BASE_COLUMNS, *d.attributes):
            if not record[column]:
                return refusal("empty_field", line, class_id, column, "")
            if any(ord(c) < 0x20 or ord(c) == 0x7F for c in record[column]):
                # NUL cannot be stored in PostgreSQL text; no column needs a control character.
                return refusal("control_character", line, class_id, column,
                               record[column].encode("unicode_escape").decode())
        for name in d.attributes:
            problem = _attribute_problem(record[name], name, line, class_id)
            if problem is not None:
                return problem
        if not _CLASS_ID.match(class_id):
            return refusal("bad_class_id", line, class_id, "class_id", class_id)
        uai = record["school_uai"]
        if not _UAI.match(uai):
            return refusal("bad_uai", line, class_id, "school_uai", uai)
        pupils = record["pupils"]
        if not pupils.isdigit() or not 1 <= int(pupils) <= MAX_PUPILS:
            return refusal("bad_pupils", line, class_id, "pupils", pupils, max=MAX_PUPILS)
        academie = record["academie"]
        if self.academie is not None and academie != self.academie:
            return refusal("other_academie", line, class_id, "academie", academie,
                           own=self.academie)
        if academie not in d.academies:
            return refusal("academie_outside_population", line, class_id, "academie", academie,
                           allowed=", ".join(d.academies))
        problem = _check_school(uai, academie, line, class_id)
        if problem is not None:
            return problem
        problem = _check_vocabulary(record, d.attributes, line, class_id)
        if problem is not None:
            return problem
        level = record["level"]
        if level not in LEVELS:
            return refusal("unknown_level", line, class_id, "level", level)
        if level not in d.levels:
            return refusal("level_outside_population", line, class_id, "level", level,
                           allowed=", ".join(d.levels))
        for criterion, allowed in d.criteria.items():
            value = _normalise(canonical_value(criterion, record[criterion]) or "", allowed)
            if value not in allowed:
                return refusal("criterion_not_met", line, class_id, criterion, record[criterion],
                               allowed=", ".join(allowed))
        problem = self.academie_problem(record, line)
        if problem is not None:
            return problem
        if (d.opens and self.today < d.opens) or (d.closes and self.today > d.closes):
            return refusal("outside_window", line, class_id, "", self.today.isoformat(),
                           opens=d.opens or "…", closes=d.closes or "…")
        return None

    def row(self, record: Mapping[str, str], line: int) -> ClassRow:
        d = self.design
        attributes = self.attributes(record)
        stratum = stratum_key(d.strata, {**record, **attributes})
        cluster = record["school_uai"] if d.unit == "school" else record["class_id"]
        return ClassRow(
            line=line, class_id=record["class_id"], school_uai=record["school_uai"],
            academie=record["academie"], level=record["level"], pupils=int(record["pupils"]),
            attributes=attributes, stratum=stratum, cluster=cluster,
        )

    def attributes(self, record: Mapping[str, str]) -> dict[str, str]:
        """The unit attributes of a checked record, as stored (a yes/no criterion's value
        written ``true`` or ``false``)."""
        d = self.design
        return {name: _normalise(canonical_value(name, record[name]) or record[name],
                                 d.criteria.get(name, ()))
                for name in d.attributes}


#: Columns every pupils file has (``niveau`` is accepted for ``level``).
PUPIL_COLUMNS: tuple[str, ...] = ("learner_id", "class_id", "school_uai", "level", "academie")
# Same pattern as the event contract's learner_id (ingest/contract.py), so every enrolled
# pupil's events match: an opaque token; '@' and spaces never pass.
_LEARNER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
# Column names that announce a direct identifier (compared lower-case, accents and
# separators removed): names, e-mails, birth dates, the national pupil id (INE).
_IDENTIFYING_COLUMNS = frozenset({
    "name", "firstname", "lastname", "givenname", "familyname", "fullname", "surname",
    "nom", "prenom", "nomdefamille", "nomusage", "eleve", "email", "mail", "courriel",
    "adressemail", "adressee-mail", "birthdate", "dateofbirth", "dob", "datenaissance",
    "datedenaissance", "naissance", "ddn", "ine", "username", "login", "phone",
    "telephone", "adresse", "address",
})

#: code -> (French, English) of the refusals specific to pupils.
LEARNER_MESSAGES: dict[str, tuple[str, str]] = {
    "learner_id_email": (
        "l'identifiant d'élève ressemble à une adresse e-mail (non recopiée ici) : seul "
        "l'identifiant pseudonyme de l'ENT/GAR est accepté, jamais un nom ni une adresse",
        "the learner id looks like an e-mail address (not repeated here): only the "
        "pseudonymous ENT/GAR id is accepted, never a name or an address",
    ),
    "bad_learner_id": (
        "identifiant d'élève « {value} » invalide : lettres, chiffres et . _ : - seulement, "
        "sans espace (identifiant pseudonyme, jamais un nom)",
        "learner id '{value}' is invalid: letters, digits and . _ : - only, no space (a "
        "pseudonymous id, never a name)",
    ),
    "duplicate_learner": (
        "l'élève « {value} » figure déjà à la ligne {first} du fichier",
        "pupil '{value}' already appears on line {first} of the file",
    ),
    "learner_enrolled_differently": (
        "l'élève est déjà inscrit avec « {field} » = « {stored} », pas « {new} » ; une "
        "inscription ne se modifie pas",
        "the pupil is already enrolled with '{field}' = '{stored}', not '{new}'; an "
        "enrollment cannot be edited",
    ),
    "class_enrolled_differently": (
        "la classe « {class_id} » est déjà inscrite avec « {field} » = « {stored} », pas "
        "« {new} »",
        "class '{class_id}' is already enrolled with '{field}' = '{stored}', not '{new}'",
    ),
    "class_withdrawn": (
        "la classe « {class_id} » s'est retirée de l'expérimentation : ses élèves ne "
        "peuvent plus être inscrits",
        "class '{class_id}' has withdrawn from the experiment: its pupils cannot be enrolled",
    ),
    "class_enrolled_elsewhere": (
        "la classe « {class_id} » est déjà inscrite dans l'expérimentation « {other} »",
        "class '{class_id}' is already enrolled in experiment '{other}'",
    ),
}


def pupil_refusal(
    code: str, line: int, class_id: str, field: str, value: str, **details: object
) -> Refusal:
    return _filled_refusal(LEARNER_MESSAGES, code, line, class_id, field, value, details)


# --- the pupils file --------------------------------------------------------------------


@dataclass(frozen=True)
class PupilRow:
    """A pupil row that passed every check that needs no database.

    ``learner_id`` is the id of the file: kept in memory to answer the académie, never
    stored.
    """

    line: int
    learner_id: str
    class_id: str
    school_uai: str
    academie: str
    level: str
    attributes: Mapping[str, str]
    stratum: str

    def values(self) -> dict[str, object]:
        """The stored values that must match when the same pupil is enrolled again."""
        return {"class_id": self.class_id, "school_uai": self.school_uai,
                "academie": self.academie, "level": self.level,
                "attributes": dict(self.attributes)}


@dataclass(frozen=True)
class PupilsFile:
    """A read pupils file: the rows to enroll and the rows refused."""

    path: str
    rows: list[PupilRow]
    refusals: list[Refusal]
    ignored_columns: tuple[str, ...] = ()


def _column_key(name: str) -> str:
    plain = name.lower().translate(str.maketrans("éèêëàâîïôöûüç", "eeeeaaiioouuc"))
    return re.sub(r"[\s_.\-']", "", plain)


def read_pupils(
    source: Path | str,
    design: EnrollmentDesign,
    *,
    name: str | None = None,
    academie: str | None = None,
    today: date | None = None,
) -> PupilsFile:
    """Read a pupils CSV and check each row against the protocol's population.

    Parameters
    ----------
    source
        A path, or the CSV text itself (then ``name`` names it in messages).
    design
        The enrollment design of a learner-randomised experiment.
    academie
        The caller's académie: pupils of another académie's schools are refused.
    today
        Date checked against the enrollment window (default: today in Paris).

    Returns
    -------
    PupilsFile
        Rows that passed, in file order, and refusals with reasons in French and English.

    Raises
    ------
    EnrollmentError
        The protocol does not randomise learners, or the file as a whole is unusable
        (unreadable, not UTF-8, no header, a required column missing or doubled, a
        column that looks like a name, an e-mail or a birth date).

    Examples
    --------
    >>> from experiments.protocol.language import load_protocol
    >>> design = EnrollmentDesign.from_protocol(
    ...     load_protocol("tests/data/enrollment/learner-protocol.yaml"))
    >>> text = ("learner_id,class_id,school_uai,level,academie,education_priority,repeater\\n"
    ...         "L1,c1,0781234T,CP,versailles,REP,non\\n"
    ...         "jean.dupont@ecole.fr,c1,0781234T,CP,versailles,REP,non\\n")
    >>> pupils = read_pupils(text, design, name="pupils.csv")
    >>> [r.class_id for r in pupils.rows], pupils.refusals[0].code
    (['c1'], 'learner_id_email')
    """
    if design.unit != "learner":
        raise EnrollmentError(
            f"experiment {design.experiment_id} randomises by {design.unit}, not by learner: "
            "enroll a file of classes (class_id,school_uai,level,pupils,academie)",
            field="population.unit",
        )
    table = _CsvTable(source, name, unnamed="<pupils>")
    name = table.name
    for column in table.columns:
        if _column_key(column) in _IDENTIFYING_COLUMNS:
            raise EnrollmentError(
                f"{name}:1: column '{column}' looks like a direct identifier (name, e-mail, "
                "birth date): a pupils file carries pseudonymous ids only; remove the "
                f"column / la colonne « {column} » ressemble à une donnée identifiante (nom, "
                "e-mail, date de naissance) : retirez-la, seul l'identifiant pseudonyme est "
                "accepté", path=name, line=1, field=column,
            )
    ignored = table.check_columns(
        (*PUPIL_COLUMNS, *(a for a in design.attributes if a not in PUPIL_COLUMNS)),
        header="a pupils file's header",
    )
    checker = _RowChecker(design, academie, today or datetime.now(SCHOOL_TIMEZONE).date())
    rows: list[PupilRow] = []
    refusals: list[Refusal] = []
    first_line: dict[str, int] = {}
    for line, record in table.records(refusals):
        problem = _check_learner_id(record, line)
        # A pupil row is checked against the population like a class row (académie, niveau,
        # criteria, window); "pupils" is the class file's head count, one pupil here.
        problem = problem or checker.check({**record, "pupils": "1"}, line)
        if problem is not None:
            refusals.append(problem)
            continue
        learner_id = record["learner_id"]
        if learner_id in first_line:
            refusals.append(pupil_refusal("duplicate_learner", line, record["class_id"],
                                     "learner_id", learner_id, first=first_line[learner_id]))
            continue
        first_line[learner_id] = line
        attributes = checker.attributes(record)
        rows.append(PupilRow(
            line=line, learner_id=learner_id, class_id=record["class_id"],
            school_uai=record["school_uai"], academie=record["academie"],
            level=record["level"], attributes=attributes,
            stratum=stratum_key(design.strata, {**record, **attributes}),
        ))
    refusals.sort(key=lambda r: r.line)
    return PupilsFile(name, rows, refusals, ignored)


def closed_window(design: EnrollmentDesign, today: date) -> Refusal | None:
    """The refusal of a whole file when the enrollment window is not open on ``today``
    (one message, rather than one per row), or ``None``.

    Examples
    --------
    >>> from experiments.protocol.language import load_protocol
    >>> design = EnrollmentDesign.from_protocol(load_protocol("protocols/fluence-cp-2027.yaml"))
    >>> import dataclasses
    >>> windowed = dataclasses.replace(design, opens=date(2028, 5, 2), closes=date(2028, 6, 1))
    >>> closed_window(windowed, date(2028, 4, 1)).message_en[:50]
    'enrollment is not open yet: it opens on 2028-05-02'
    """
    if design.opens is not None and today < design.opens:
        return refusal("window_not_open", 0, "", "", today.isoformat(), opens=design.opens,
                       closes=design.closes or "…")
    if design.closes is not None and today > design.closes:
        return refusal("window_closed", 0, "", "", today.isoformat(), closes=design.closes)
    return None


def _check_school(uai: str, academie: str, line: int, class_id: str) -> Refusal | None:
    """A UAI's check letter, and its département in the declared académie (see
    :mod:`experiments.protocol.calendar` for the algorithm and the table's source)."""
    if not uai[:7].isdigit():
        return refusal("bad_uai", line, class_id, "school_uai", uai)
    expected = uai_check_letter(uai[:7])
    if uai[7] != expected:
        return refusal("uai_check_letter", line, class_id, "school_uai", uai, expected=expected)
    departement = departement_of_uai(uai)
    own = academie_of_departement(departement)
    if own is not None and own != academie and academie in ACADEMIES:
        return refusal("uai_other_academie", line, class_id, "school_uai", uai,
                       departement=departement, expected=own, academie=academie)
    return None


def _check_vocabulary(record: Mapping[str, str], attributes: tuple[str, ...], line: int,
                      class_id: str) -> Refusal | None:
    """Attributes with a closed vocabulary take one of its values or a documented alias."""
    for name in attributes:
        if name in ATTRIBUTE_VOCABULARIES and canonical_value(name, record[name]) is None:
            aliases = ATTRIBUTE_ALIASES.get(name, {})
            return refusal("unknown_value", line, class_id, name, record[name],
                           allowed=", ".join(ATTRIBUTE_VOCABULARIES[name]),
                           aliases=", ".join(f"{a} → {v}" for a, v in aliases.items()))
    return None


def _check_learner_id(record: Mapping[str, str], line: int) -> Refusal | None:
    learner_id, class_id = record["learner_id"], record["class_id"]
    if not learner_id:
        return refusal("empty_field", line, class_id, "learner_id", "")
    if "@" in learner_id:
        # The value is not repeated (in the message, the output or a log): it is personal.
        return pupil_refusal("learner_id_email", line, class_id, "learner_id", "")
    if not _LEARNER_ID.match(learner_id):
        return pupil_refusal("bad_learner_id", line, class_id, "learner_id", learner_id)
    return None
