"""A registry for the académie and collectivité pages (issue 17): ``fluence-cp-2027``
(enrolled at the académie's validation) and ``tablettes-ce2-2027`` (académie then
collectivité), both open to enrollment, nothing enrolled yet; tokens of two académies,
two collectivités, an officer and an EdTech; the French Excel file an académie has."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from experiments.access import issue_token
from experiments.database import registry_engine
from experiments.protocol.language import parse_protocol
from experiments.registry import register_protocol, transition_experiment
from experiments.settings import Settings
from tests.support.decision import with_decision
from tests.support.uai import uai

ROOT = Path(__file__).resolve().parents[2]
SINGLE = "fluence-cp-2027"
DOUBLE = "tablettes-ce2-2027"
#: The portal's clock: inside the enrollment window of tablettes-ce2-2027.
SIMULATED_NOW = datetime.fromisoformat("2027-09-01T10:00:00+02:00")
#: Schools of Seine-Saint-Denis (académie de Créteil) and Yvelines (Versailles).
CRETEIL_SCHOOLS = (uai("0930001"), uai("0930002"), uai("0930003"))
VERSAILLES_SCHOOLS = (uai("0780001"), uai("0780002"))
#: The collectivités and the schools they equip (settings.collectivites).
COLLECTIVITES = {
    "departement-93": list(CRETEIL_SCHOOLS[:2]),
    "commune-93066": [CRETEIL_SCHOOLS[2]],
    "departement-78": list(VERSAILLES_SCHOOLS),
}


def academie_settings(state_dir: Path, **extra: object) -> Settings:
    return Settings(state_dir=state_dir, pseudonym_key="academie-pages-key" * 2,
                    simulated_now=SIMULATED_NOW, collectivites=COLLECTIVITES, **extra)


@dataclass(frozen=True)
class AcademieWorld:
    registry: Engine
    tokens: dict[str, str]
    """creteil, versailles (académies), dep93, dep78, commune (collectivités), officer,
    edtech, admin → token."""


def build_academie_world(settings: Settings) -> AcademieWorld:
    """Register both protocols and open them to enrollment; issue the tokens."""
    registry = registry_engine(settings)
    for experiment in (SINGLE, DOUBLE):
        text = (ROOT / "protocols" / f"{experiment}.yaml").read_text(encoding="utf-8")
        if experiment == SINGLE:  # the core example has no decision rule: it may then run
            text = with_decision(text)
        register_protocol(registry, parse_protocol(text), text)
        transition_experiment(registry, experiment, "enrolling")
    tokens = {
        "creteil": issue_token(registry, "academie", "creteil", "dane-creteil"),
        "versailles": issue_token(registry, "academie", "versailles", "dane-versailles"),
        "dep93": issue_token(registry, "collectivite", "departement-93", "cd93"),
        "dep78": issue_token(registry, "collectivite", "departement-78", "cd78"),
        "commune": issue_token(registry, "collectivite", "commune-93066", "saint-denis"),
        "officer": issue_token(registry, "officer", "*", "bdt"),
        "edtech": issue_token(registry, "edtech", "lectio", "lectio"),
        "admin": issue_token(registry, "admin", "*", "ops"),
    }
    return AcademieWorld(registry, tokens)


def excel_file(level: str = "CP", *, prefix: str = "cr", bad_row: bool = True,
               schools: tuple[str, ...] = CRETEIL_SCHOOLS, academie: str = "Créteil") -> bytes:
    """The classes file as Excel writes it in France: ``;``, Windows-1252, CRLF, French
    headers and académie names, a column the protocol does not need (ignored), and (with
    ``bad_row``) a UAI whose check letter is wrong on line 4."""
    rows = ["Classe;UAI;Niveau;Effectif;Académie;Éducation prioritaire;Enseignant référent"]
    rows.append(f"{prefix}-a;{schools[0]};{level};24;{academie};REP;oui")
    rows.append(f"{prefix}-b;{schools[1]};{level};22;{academie};REP+;non")
    if bad_row:
        wrong = schools[0][:7] + ("A" if schools[0][7] != "A" else "B")
        rows.append(f"{prefix}-c;{wrong};{level};25;{academie};REP;oui")
    rows.append(f"{prefix}-d;{schools[-1]};{level};21;{academie};REP;non")
    return ("\r\n".join(rows) + "\r\n").encode("cp1252")
