"""The Kafka principals (SASL users) of Preuve's services.

Each service acts as its own user, with only the ACLs it needs
(:mod:`ingest.kafka.access`); ``admin`` is the super user that creates topics, users and
ACLs. ``preuve kafka up`` creates them all, with their passwords, on the local broker.
"""

from __future__ import annotations

__all__ = ["ADMIN", "ANALYSIS", "ENROLLMENT", "GATEWAY", "SCHEDULER", "SERVICES", "USERS",
           "WORKER", "edtech_principal"]

ADMIN = "admin"
GATEWAY = "gateway"
WORKER = "worker"
ENROLLMENT = "enrollment"
SCHEDULER = "scheduler"
ANALYSIS = "analysis"
#: The services' principals.
SERVICES = (GATEWAY, WORKER, ENROLLMENT, SCHEDULER, ANALYSIS)
#: Every user ``preuve kafka up`` creates on the local broker.
USERS = (ADMIN, *SERVICES)


def edtech_principal(resource_id: str) -> str:
    """The SCRAM user of an EdTech that produces its events directly.

    >>> edtech_principal("lectio")
    'edtech-lectio'
    """
    return f"edtech-{resource_id}"
