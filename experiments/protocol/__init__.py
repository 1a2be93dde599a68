"""The protocol language: what a researcher declares, checks, powers and pre-registers.

Modules:

- ``checks``: The meaning checks of the protocol language, beyond types.
- ``language``: The protocol language: pydantic models, the loader, and the canonical hash.
- ``power``: From a protocol's ``power:`` section to PowerUp! designs, one per contrast.
- ``preregistration``: A registered protocol as a pre-registration document (Markdown, for OSF).
- ``source``: Reading and writing protocol YAML, and finding where a field sits in the file.
- ``vocabulary``: Official French school vocabularies used by the protocol language.

The public API of ``language`` is re-exported here
(``from experiments.protocol import load_protocol``).
"""

from __future__ import annotations

from experiments.protocol.language import (
    SCHEMA_PATH,
    Analysis,
    Arm,
    Budget,
    BudgetItem,
    Compliance,
    Decision,
    Deployment,
    Design,
    EnrollmentWindow,
    Hypothesis,
    Investigator,
    Outcome,
    Period,
    Periods,
    Population,
    PowerInputs,
    Protocol,
    Randomisation,
    Resource,
    Retention,
    RolloutStep,
    ScheduleEntry,
    Training,
    Usage,
    UsageMetric,
    dump_protocol,
    load_protocol,
    parse_protocol,
    protocol_schema_text,
    write_schema,
)

__all__ = [
    "Analysis",
    "Arm",
    "Budget",
    "BudgetItem",
    "Compliance",
    "Decision",
    "Deployment",
    "Design",
    "EnrollmentWindow",
    "Hypothesis",
    "Investigator",
    "Outcome",
    "Period",
    "Periods",
    "Population",
    "PowerInputs",
    "Protocol",
    "Randomisation",
    "Resource",
    "Retention",
    "RolloutStep",
    "SCHEMA_PATH",
    "ScheduleEntry",
    "Training",
    "Usage",
    "UsageMetric",
    "dump_protocol",
    "load_protocol",
    "parse_protocol",
    "protocol_schema_text",
    "write_schema",
]
