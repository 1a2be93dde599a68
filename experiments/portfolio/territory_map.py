"""The portfolio's map of France by académie, as inline accessible SVG, with its table.

The map is a tile map (one square per académie, placed on a grid that keeps the
neighbours of the real map: Lille at the top, Corse at the bottom right, the overseas
académies in a row below), not a drawing of borders: it needs no geographic data file
and every académie gets the same area, so a small académie with many experiments is
still seen. The colour shows the number of experiments (four classes, dark text on the
two light ones and white on the two dark ones: contrast at least 4.5:1, WCAG 2.1 AA);
each tile also writes its number, so colour is never the only carrier (RGAA 3.1). The
same figures are given as a table beside it (:func:`territory_rows`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Final

from analysis.options import MIN_CELL_PUPILS
from experiments.protocol.vocabulary import ACADEMIES

__all__ = ["ACADEMIE_NAMES", "TerritoryRow", "territory_map_svg", "territory_rows"]

#: Grid position (column, row) of each académie's tile.
_TILES: Final[Mapping[str, tuple[int, int]]] = {
    "lille": (4, 0),
    "normandie": (2, 1), "amiens": (3, 1), "reims": (5, 1), "nancy-metz": (6, 1),
    "strasbourg": (7, 1),
    "rennes": (1, 2), "versailles": (3, 2), "paris": (4, 2), "creteil": (5, 2),
    "nantes": (1, 3), "orleans-tours": (3, 3), "dijon": (5, 3), "besancon": (6, 3),
    "poitiers": (2, 4), "limoges": (3, 4), "clermont-ferrand": (4, 4), "lyon": (5, 4),
    "grenoble": (6, 4),
    "bordeaux": (2, 5), "toulouse": (3, 5), "montpellier": (4, 5), "aix-marseille": (5, 5),
    "nice": (6, 5), "corse": (7, 6),
    "guadeloupe": (1, 8), "martinique": (2, 8), "guyane": (3, 8), "la-reunion": (4, 8),
    "mayotte": (5, 8),
}

#: Names of the académies as written in French.
ACADEMIE_NAMES: Final[Mapping[str, str]] = {
    "aix-marseille": "Aix-Marseille", "amiens": "Amiens", "besancon": "Besançon",
    "bordeaux": "Bordeaux", "clermont-ferrand": "Clermont-Ferrand", "corse": "Corse",
    "creteil": "Créteil", "dijon": "Dijon", "grenoble": "Grenoble", "lille": "Lille",
    "limoges": "Limoges", "lyon": "Lyon", "montpellier": "Montpellier",
    "nancy-metz": "Nancy-Metz", "nantes": "Nantes", "nice": "Nice", "normandie": "Normandie",
    "orleans-tours": "Orléans-Tours", "paris": "Paris", "poitiers": "Poitiers",
    "reims": "Reims", "rennes": "Rennes", "strasbourg": "Strasbourg",
    "toulouse": "Toulouse", "versailles": "Versailles", "guadeloupe": "Guadeloupe",
    "guyane": "Guyane", "la-reunion": "La Réunion", "martinique": "Martinique",
    "mayotte": "Mayotte",
}

# Light to dark blues; text colour chosen per class for contrast >= 4.5:1.
_FILLS: Final = (("#f2f2f2", "#1b1b1b"), ("#c6dbef", "#1b1b1b"), ("#2f6fa8", "#ffffff"),
                 ("#123a63", "#ffffff"))
_SIZE: Final = 58
_GAP: Final = 4


@dataclass(frozen=True)
class TerritoryRow:
    """One académie of the map's table."""

    academie: str
    name: str
    experiments: int
    pupils: int | None
    """Pupils of its experiments (``None`` when a count is suppressed)."""


def territory_rows(per_experiment: Sequence[tuple[Sequence[str], int | None]]
                   ) -> list[TerritoryRow]:
    """Experiments and pupils per académie, from each experiment's académies and pupils.

    An experiment in several académies counts once in each; its pupils are not split
    (the registry does not say how many are in each), so the table says "pupils of the
    experiments present" and the sum over académies is not the programme's total.

    Examples
    --------
    >>> [(r.academie, r.experiments, r.pupils) for r in territory_rows(
    ...     [(["lille"], 400), (["lille", "paris"], 300)])]
    [('lille', 2, 700), ('paris', 1, 300)]
    """
    counts: dict[str, int] = {}
    pupils: dict[str, int | None] = {}
    for academies, n in per_experiment:
        for a in academies:
            counts[a] = counts.get(a, 0) + 1
            before = pupils.get(a, 0)
            pupils[a] = None if before is None or n is None else before + n
    return [TerritoryRow(a, ACADEMIE_NAMES.get(a, a), counts[a], pupils[a])
            for a in ACADEMIES if a in counts]


def _class(count: int, top: int) -> int:
    if count == 0:
        return 0
    if top <= 1:
        return 3
    return 1 + min(2, (count - 1) * 3 // top)


def territory_map_svg(rows: Sequence[TerritoryRow], *, title: str, description: str) -> str:
    """The tile map as an inline ``<svg role="img">`` with a ``<title>`` and ``<desc>``.

    Each tile is a group with its own ``<title>`` (académie, experiments, pupils), read
    by screen readers and shown on hover.

    Examples
    --------
    >>> svg = territory_map_svg([TerritoryRow("lille", "Lille", 2, 6)], title="T",
    ...                         description="D")
    >>> "Lille : 2 expérimentations, moins de 10 élèves" in svg, svg.count("<rect")
    (True, 30)
    """
    by_academie = {r.academie: r for r in rows}
    top = max((r.experiments for r in rows), default=0)
    step = _SIZE + _GAP
    width, height = 8 * step + _GAP, 9 * step + _GAP
    parts = [f'<svg role="img" aria-labelledby="carte-titre carte-desc" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'class="carte">',
             f'<title id="carte-titre">{escape(title)}</title>',
             f'<desc id="carte-desc">{escape(description)}</desc>']
    for academie, (col, row) in _TILES.items():
        found = by_academie.get(academie)
        count = found.experiments if found else 0
        fill, ink = _FILLS[_class(count, top)]
        x, y = _GAP + col * step, _GAP + row * step
        name = ACADEMIE_NAMES[academie]
        if found is None:
            pupils = ""
        elif found.pupils is None:
            pupils = ", effectifs masqués"
        elif found.pupils < MIN_CELL_PUPILS:  # small cells are suppressed everywhere
            pupils = f", moins de {MIN_CELL_PUPILS} élèves"
        else:
            pupils = f", {found.pupils} élèves"
        label = f"{name} : {count} expérimentation{'s' if count > 1 else ''}{pupils}"
        parts.append(
            f'<g data-academie="{academie}"><title>{escape(label)}</title>'
            f'<rect x="{x}" y="{y}" width="{_SIZE}" height="{_SIZE}" rx="4" fill="{fill}" '
            f'stroke="#595959" stroke-width="1"/>'
            f'<text x="{x + _SIZE / 2}" y="{y + 22}" text-anchor="middle" font-size="10" '
            f'fill="{ink}">{escape(name[:10])}</text>'
            f'<text x="{x + _SIZE / 2}" y="{y + 44}" text-anchor="middle" font-size="18" '
            f'font-weight="bold" fill="{ink}">{count}</text></g>')
    parts.append("</svg>")
    return "\n".join(parts)
