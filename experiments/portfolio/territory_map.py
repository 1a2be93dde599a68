"""The portfolio's map of France by académie, as inline accessible SVG, with its table.

The map is a tile map (one square per académie, placed on a grid that keeps the
neighbours of the real map: Lille at the top, Corse at the bottom right, the overseas
académies in a row below), not a drawing of borders: it needs no geographic data file
and every académie gets the same area, so a small académie with many experiments is
still seen. The colour shows the number of experiments (four classes, dark text on the
two light ones and white on the two dark ones: contrast at least 4.5:1, WCAG 2.1 AA);
each tile also writes its number, so colour is never the only carrier (RGAA 3.1). The
same figures are given as a table beside it (:func:`territory_rows`).

The map by département (:func:`departement_map_svg`) keeps the same grid: each académie's
square becomes a block of up to 3 × 3 small tiles, one per département of its ressort
(``experiments/protocol/data/academies.json``), so that both maps read the same way and
no département outline file is needed. Its table is :func:`departement_rows`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Final

from analysis.options import MIN_CELL_PUPILS, Language
from experiments.portfolio.text import words
from experiments.protocol.calendar import academie_of_departement
from experiments.protocol.vocabulary import ACADEMIES

__all__ = ["ACADEMIE_NAMES", "DEPARTEMENT_NAMES", "DepartementRow", "TerritoryRow",
           "departement_map_svg", "departement_rows", "territory_map_svg", "territory_rows"]

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

#: Names of the départements (code officiel géographique of INSEE).
DEPARTEMENT_NAMES: Final[Mapping[str, str]] = {
    "01": "Ain", "02": "Aisne", "03": "Allier", "04": "Alpes-de-Haute-Provence",
    "05": "Hautes-Alpes", "06": "Alpes-Maritimes", "07": "Ardèche", "08": "Ardennes",
    "09": "Ariège", "10": "Aube", "11": "Aude", "12": "Aveyron", "13": "Bouches-du-Rhône",
    "14": "Calvados", "15": "Cantal", "16": "Charente", "17": "Charente-Maritime",
    "18": "Cher", "19": "Corrèze", "2A": "Corse-du-Sud", "2B": "Haute-Corse",
    "21": "Côte-d'Or", "22": "Côtes-d'Armor", "23": "Creuse", "24": "Dordogne",
    "25": "Doubs", "26": "Drôme", "27": "Eure", "28": "Eure-et-Loir", "29": "Finistère",
    "30": "Gard", "31": "Haute-Garonne", "32": "Gers", "33": "Gironde", "34": "Hérault",
    "35": "Ille-et-Vilaine", "36": "Indre", "37": "Indre-et-Loire", "38": "Isère",
    "39": "Jura", "40": "Landes", "41": "Loir-et-Cher", "42": "Loire", "43": "Haute-Loire",
    "44": "Loire-Atlantique", "45": "Loiret", "46": "Lot", "47": "Lot-et-Garonne",
    "48": "Lozère", "49": "Maine-et-Loire", "50": "Manche", "51": "Marne",
    "52": "Haute-Marne", "53": "Mayenne", "54": "Meurthe-et-Moselle", "55": "Meuse",
    "56": "Morbihan", "57": "Moselle", "58": "Nièvre", "59": "Nord", "60": "Oise",
    "61": "Orne", "62": "Pas-de-Calais", "63": "Puy-de-Dôme", "64": "Pyrénées-Atlantiques",
    "65": "Hautes-Pyrénées", "66": "Pyrénées-Orientales", "67": "Bas-Rhin",
    "68": "Haut-Rhin", "69": "Rhône", "70": "Haute-Saône", "71": "Saône-et-Loire",
    "72": "Sarthe", "73": "Savoie", "74": "Haute-Savoie", "75": "Paris",
    "76": "Seine-Maritime", "77": "Seine-et-Marne", "78": "Yvelines", "79": "Deux-Sèvres",
    "80": "Somme", "81": "Tarn", "82": "Tarn-et-Garonne", "83": "Var", "84": "Vaucluse",
    "85": "Vendée", "86": "Vienne", "87": "Haute-Vienne", "88": "Vosges", "89": "Yonne",
    "90": "Territoire de Belfort", "91": "Essonne", "92": "Hauts-de-Seine",
    "93": "Seine-Saint-Denis", "94": "Val-de-Marne", "95": "Val-d'Oise",
    "971": "Guadeloupe", "972": "Martinique", "973": "Guyane", "974": "La Réunion",
    "976": "Mayotte",
}


def departements_of(academie: str) -> list[str]:
    """The départements of an académie's ressort, in code order (``calendar``'s table).

    Examples
    --------
    >>> departements_of("creteil"), departements_of("corse")
    (['77', '93', '94'], ['2A', '2B'])
    """
    return [d for d in DEPARTEMENT_NAMES if academie_of_departement(d) == academie]


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


def _label(name: str, count: int, pupils: int | None, present: bool, lang: Language) -> str:
    """A tile's title: its name, experiments and pupils (small counts suppressed)."""
    if not present:
        extra = ""
    elif pupils is None:
        extra = words(lang, "tile_masked")
    elif pupils < MIN_CELL_PUPILS:  # small cells are suppressed everywhere
        extra = words(lang, "tile_small", n=MIN_CELL_PUPILS)
    else:
        extra = words(lang, "tile_pupils", n=pupils)
    plural = count > 1 if lang == "fr" else count != 1  # « 0 expérimentation », "0 experiments"
    return words(lang, "tile_experiments", name=name, count=count,
                 s=words(lang, "plural") if plural else "") + extra


def territory_map_svg(rows: Sequence[TerritoryRow], *, title: str, description: str,
                      lang: Language = "fr") -> str:
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
        label = _label(name, count, found.pupils if found else None, found is not None, lang)
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


@dataclass(frozen=True)
class DepartementRow:
    """One département of the map's table."""

    departement: str
    name: str
    academie: str
    experiments: int
    pupils: int | None
    """Pupils of its experiments (``None`` when a count is suppressed)."""


def departement_rows(per_experiment: Sequence[tuple[Sequence[str], int | None]]
                     ) -> list[DepartementRow]:
    """Experiments and pupils per département, from each experiment's départements and
    pupils (as :func:`territory_rows`: an experiment counts once in each of its
    départements, its pupils are not split), in the order of the académies' table.

    Examples
    --------
    >>> [(r.departement, r.name, r.experiments, r.pupils) for r in departement_rows(
    ...     [(["93", "94"], 400), (["93"], 300)])]
    [('93', 'Seine-Saint-Denis', 2, 700), ('94', 'Val-de-Marne', 1, 400)]
    """
    counts: dict[str, int] = {}
    pupils: dict[str, int | None] = {}
    for departements, n in per_experiment:
        for d in departements:
            counts[d] = counts.get(d, 0) + 1
            before = pupils.get(d, 0)
            pupils[d] = None if before is None or n is None else before + n
    order = [d for a in ACADEMIES for d in departements_of(a)]
    return [DepartementRow(d, DEPARTEMENT_NAMES.get(d, d), academie_of_departement(d) or "",
                           counts[d], pupils[d])
            for d in sorted(counts, key=lambda d: (order.index(d) if d in order
                                                   else len(order), d))]


_SMALL: Final = 28
_BLOCK: Final = 3 * (_SMALL + 2) + 6


def departement_map_svg(rows: Sequence[DepartementRow], *, title: str, description: str,
                        lang: Language = "fr") -> str:
    """The map by département as an inline ``<svg role="img">``: the académies' grid,
    each académie a block of small tiles (its départements, in code order, three per
    line), each tile with its ``<title>`` and its number written in it.

    Examples
    --------
    >>> svg = departement_map_svg([DepartementRow("93", "Seine-Saint-Denis", "creteil",
    ...     2, 600)], title="T", description="D")
    >>> "Seine-Saint-Denis (93) : 2 expérimentations, 600 élèves" in svg
    True
    >>> svg.count('<g data-departement='), 'aria-labelledby="dcarte-titre dcarte-desc"' in svg
    (101, True)
    """
    by_code = {r.departement: r for r in rows}
    top = max((r.experiments for r in rows), default=0)
    step = _BLOCK + _GAP
    width, height = 8 * step + _GAP, 9 * step + _GAP
    parts = [f'<svg role="img" aria-labelledby="dcarte-titre dcarte-desc" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'class="carte carte-departements">',
             f'<title id="dcarte-titre">{escape(title)}</title>',
             f'<desc id="dcarte-desc">{escape(description)}</desc>']
    for academie, (col, row) in _TILES.items():
        x0, y0 = _GAP + col * step, _GAP + row * step
        parts.append(f'<g data-academie="{academie}"><title>{escape(ACADEMIE_NAMES[academie])}'
                     f'</title><rect x="{x0}" y="{y0}" width="{_BLOCK}" height="{_BLOCK}" '
                     f'rx="3" fill="none" stroke="#8a8a8a" stroke-width="1"/>')
        for i, code in enumerate(departements_of(academie)):
            found = by_code.get(code)
            count = found.experiments if found else 0
            fill, ink = _FILLS[_class(count, top)]
            x = x0 + 3 + (i % 3) * (_SMALL + 2)
            y = y0 + 3 + (i // 3) * (_SMALL + 2)
            name = f"{DEPARTEMENT_NAMES.get(code, code)} ({code})"
            label = _label(name, count, found.pupils if found else None, found is not None,
                           lang)
            parts.append(
                f'<g data-departement="{code}"><title>{escape(label)}</title>'
                f'<rect x="{x}" y="{y}" width="{_SMALL}" height="{_SMALL}" rx="2" '
                f'fill="{fill}" stroke="#595959" stroke-width="0.5"/>'
                f'<text x="{x + _SMALL / 2}" y="{y + 10}" text-anchor="middle" font-size="8" '
                f'fill="{ink}">{code}</text>'
                f'<text x="{x + _SMALL / 2}" y="{y + 24}" text-anchor="middle" font-size="12" '
                f'font-weight="bold" fill="{ink}">{count}</text></g>')
        parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts)
