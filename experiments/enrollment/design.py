"""What one experiment asks of its enrollment files, read once from the registry."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from experiments.enrollment.files import (
    EnrollmentDesign,
)
from experiments.errors import EnrollmentError, RegistryError

__all__ = [
    "ENROLLING_STATES",
    "enrollment_design",
    "registered_design",
]



# --- which protocol --------------------------------------------------------------------

#: Lifecycle states in which classes may be enrolled (late enrollments while running).
ENROLLING_STATES = ("registered", "enrolling", "running")


def enrollment_design(
    engine: Engine, experiment: str, protocol_path: Path | None = None
) -> tuple[EnrollmentDesign, str | None]:
    """The enrollment design of ``experiment`` and a warning to show, if any.

    The design comes from the registry (the protocol version in force), and the
    experiment must be in one of :data:`ENROLLING_STATES`. ``protocol_path`` enrolls an
    experiment that is not in the registry against a protocol file (demos, dry runs; the
    warning says so); for a registered experiment it must be the registered version.

    Raises
    ------
    EnrollmentError
        The experiment is unknown (and no protocol file is given), not in an enrolling
        state, or the file is not the registered protocol.
    ProtocolError
        The protocol file is invalid.

    Examples
    --------
    >>> from pathlib import Path
    >>> engine = fresh_registry()
    >>> design, warning = enrollment_design(
    ...     engine, "fluence-cp-2027", Path("protocols/fluence-cp-2027.yaml"))
    >>> design.seed, warning.startswith("experiment fluence-cp-2027 is not registered")
    (20270901, True)
    """
    from experiments.protocol.language import load_protocol
    from experiments.registry import get_experiment, registered_protocol

    try:
        record = get_experiment(engine, experiment)
    except RegistryError:
        record = None
    if record is None:
        if protocol_path is None:
            raise EnrollmentError(
                f"experiment {experiment} is not in the registry: register its protocol "
                "(preuve protocol register) or pass --protocol PATH", field="experiment",
            )
        protocol = load_protocol(protocol_path)
        if protocol.id != experiment:
            raise EnrollmentError(
                f"{protocol_path}: protocol id is {protocol.id!r}, not {experiment!r}",
                path=str(protocol_path), field="id",
            )
        warning = (f"experiment {experiment} is not registered: enrolling against "
                   f"{protocol_path} (sha256 {protocol.sha256[:12]}), not a locked protocol")
        return EnrollmentDesign.from_protocol(protocol), warning
    if record.state not in ENROLLING_STATES:
        raise EnrollmentError(
            f"experiment {experiment} is {record.state}: classes can be enrolled when it is "
            f"{', '.join(ENROLLING_STATES)}", field="state",
        )
    registered = registered_protocol(engine, experiment).protocol
    if protocol_path is not None and load_protocol(protocol_path).sha256 != registered.sha256:
        raise EnrollmentError(
            f"{protocol_path} is not the registered protocol of {experiment} (version "
            f"{record.current_version}); drop --protocol to use the registered one",
            path=str(protocol_path),
        )
    return EnrollmentDesign.from_protocol(registered), None


def registered_design(engine: Engine, experiment: str) -> EnrollmentDesign:
    """The enrollment design of a registered ``experiment`` in any lifecycle state: for
    reading its classes and arms, which stays allowed once enrollment has closed (an
    académie reads its classes' arms until the end, and after).

    Raises
    ------
    RegistryError
        The experiment is not registered.
    """
    from experiments.registry import registered_protocol

    return EnrollmentDesign.from_protocol(registered_protocol(engine, experiment).protocol)
