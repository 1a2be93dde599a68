"""UAIs with their check letter, for test data (enrollment refuses a wrong letter)."""

from __future__ import annotations

from experiments.protocol.calendar import uai_check_letter


def uai(number: str) -> str:
    """``number`` (7 digits) followed by its check letter: ``uai("0781234") == "0781234T"``."""
    return number + uai_check_letter(number)
