"""The report's « Trois niveaux d'usage » block: availability, utilisation and usage per
arm, nested (the GAR funnel of :func:`analysis.usage.usage_levels`), the control arm
included, and the active-time rule with its pause (:func:`analysis.sessions.rule_text`).

Counts come already suppressed (cells of 1 to 9 pupils are ``None``, shown « < 10 »).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from analysis.report.text import Text
from analysis.sessions import rule_text
from analysis.suppression import is_suppressed
from analysis.usage import LEVELS, UsageLevels

__all__ = ["levels_section"]


def _count(value: int | None, t: Text) -> str:
    if value is None or is_suppressed(value):
        return t("lt10")
    return t.number(value)


def levels_section(levels: UsageLevels | None, t: Text, arm_names: Mapping[str, str]
                   ) -> dict[str, Any]:
    """The block's table (``header``, ``rows``) and notes, in ``t``'s language.

    Examples
    --------
    >>> from analysis.usage import usage_levels
    >>> lv = usage_levels({f"p{i}": "u" for i in range(12)}, {"u": "a"},
    ...                   {"opened": [f"p{i}" for i in range(12)]}, {"p0": 5.0},
    ...                   arms=["a"], control="a", threshold_minutes=None, idle_timeout_s=240)
    >>> s = levels_section(lv, Text("fr"), {})
    >>> s["rows"][0]
    ['a (témoin)', '—', 'non transmis', 'non transmis', '12', '< 10']
    """
    if levels is None:
        return {"present": False, "header": [], "rows": [], "notes": [t("lv_none")]}
    active = (t("lv_active", minutes=t.number(levels.threshold_minutes, 0))
              if levels.threshold_minutes is not None else t("lv_active_any"))
    header = [t("lv_arm"), t("lv_enrolled"), t("lv_assigned"), t("lv_activated"),
              t("lv_opened"), active]
    rows = []
    for arm in levels.arms:
        name = arm_names.get(arm.arm, arm.arm)
        said = name == t("arm_control")  # the report already calls it « témoin »
        cells = [t("lv_control", arm=name) if arm.control and not said else name,
                 "—" if arm.pupils_enrolled is None else _count(arm.pupils_enrolled, t)]
        for k, n in enumerate(arm.reached):
            cells.append(_count(n, t) if levels.observed[k] else t("lv_not_observed"))
        rows.append(cells)
    notes = [t("lv_nested"), t("lv_levels")]
    unobserved = [header[2 + k] for k in range(len(LEVELS)) if not levels.observed[k]]
    if unobserved:
        notes.append(t("lv_unobserved", levels=", ".join(unobserved)))
    if any(arm.control for arm in levels.arms):
        notes.append(t("lv_control_note"))
    if levels.idle_timeout_s is not None:
        notes.append(t("lv_rule", rule=rule_text(levels.idle_timeout_s, t.lang)))
    return {"present": True, "header": header, "rows": rows, "notes": notes}
