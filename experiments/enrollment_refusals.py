"""Why an enrollment row is refused, in French and English.

Académie staff read French; the platform's logs and most researchers read English. Each
refusal carries a stable ``code`` (for programs), the ``line`` of the file, the ``field``
and offending ``value``, and both messages.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["MESSAGES", "Refusal", "refusal"]

#: code -> (French, English); placeholders are filled by :func:`refusal`.
MESSAGES: dict[str, tuple[str, str]] = {
    "malformed_row": (
        "ligne mal formée : {detail}",
        "malformed row: {detail}",
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
        "UAI « {value} » invalide : 7 caractères puis une lettre, par exemple 0781234A",
        "UAI '{value}' is invalid: 7 characters then a letter, e.g. 0781234A",
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
    "criterion_not_met": (
        "critère « {field} » non rempli : « {value} » n'est pas parmi {allowed}",
        "criterion '{field}' not met: '{value}' is not one of {allowed}",
    ),
    "outside_window": (
        "inscriptions fermées le {value} : elles sont ouvertes du {opens} au {closes}",
        "enrollment is closed on {value}: it is open from {opens} to {closes}",
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
    "enrolled_elsewhere": (
        "la classe « {value} » est déjà inscrite dans l'expérimentation « {other} »",
        "class '{value}' is already enrolled in experiment '{other}'",
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
    french, english = MESSAGES[code]
    values = {"field": field, "value": value, **details}
    return Refusal(
        line=line, class_id=class_id, field=field, value=value, code=code,
        message_fr=french.format(**values), message_en=english.format(**values),
    )  # fmt: skip
