"""``preuve enroll``: an académie enrolls classes (or pupils) into an experiment.

The file's kind follows the protocol's unit of randomisation (``population.unit``):

- ``class`` or ``school``: a file of classes,
  ``class_id,school_uai,level,pupils,academie`` + the attributes the protocol names;
- ``learner``: a file of pupils,
  ``learner_id,class_id,school_uai,level,academie`` + the attributes the protocol names.
  ``learner_id`` is the pseudonymous id the académie knows the pupil by (never a name or
  an e-mail); the command prints each pupil's arm by that id, and the registry stores
  only the pupil's per-experiment pseudonym. A file of the wrong kind is refused (exit 2).

Exit codes (also in ``preuve enroll --help``):

- 0: every row of the file is enrolled (now, or already by an earlier run);
- 1: some rows were refused (the valid rows are enrolled; each refusal is printed);
- 2: nothing enrolled: usage or file error (unknown experiment, unreadable file,
  missing column, a protocol that changed its randomisation...), or the enrollment
  window is not open (said once: "not open yet", or closed);
- with ``--verify``: 0 if the allocation log replays exactly from the protocol, 1 if not;
- 3: the enrollments are committed but publishing to ``preuve.enrollments`` failed; they
  stay pending until ``preuve enroll EXPERIMENT --republish``.
- with ``--correct CLASS``: 0 corrected (a new version, the arm kept); 2 refused (the
  intervention has started, no reason, a value outside the vocabulary...).
- 4: the database refused the credentials or could not be reached
  (:mod:`experiments.cli.console`, as for every command).

The protocol comes from the registry (the version in force; the experiment must be
registered, enrolling or running). ``--protocol PATH`` enrolls against a protocol file
instead, for an experiment that is not in the registry (demos, dry runs); when the
experiment is registered, the file must be the registered version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from experiments.errors import EnrollmentError, ProtocolError, RegistryError

if TYPE_CHECKING:
    from datetime import date

    from sqlalchemy import Engine

    from experiments.enrollment.balance import BalanceReport
    from experiments.enrollment.files import EnrollmentDesign
    from experiments.enrollment.transaction import (
        EnrolledLearner,
        EnrollmentOutcome,
        LearnerOutcome,
    )

__all__ = ["EXIT_OK", "EXIT_PENDING", "EXIT_REFUSED", "EXIT_USAGE", "enroll"]

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_PENDING = 3


def _fail(message: str) -> typer.Exit:
    typer.echo(f"preuve enroll: {message}", err=True)
    return typer.Exit(EXIT_USAGE)


def _print_records(outcome: EnrollmentOutcome | LearnerOutcome, path: str,
                   rows: list[tuple[str, str]], *, pupils: bool, tail: str = "") -> None:
    """Each record of a file enrolled (``rows``: the record's line and its arm, enrolled
    then already enrolled) or refused, then the counts; classes and pupils alike, the
    French words agreeing with « classe » or « élève »."""
    e = "" if pupils else "e"
    for i, (line, arm) in enumerate(rows):
        already = f"\t(already enrolled / déjà inscrit{e})" if i >= len(outcome.enrolled) else ""
        typer.echo(f"{line}\t-> {arm}{already}")
    for r in outcome.refusals:
        where = f"{path}:{r.line}:" + (f" {r.field}:" if r.field else "")
        typer.echo(f"REFUSED {where} {r.message_en} / REFUSÉ{e.upper()} : {r.message_fr}")
    noun, nom = ("pupils ", "élèves ") if pupils else ("", "")
    typer.echo(
        f"{outcome.experiment_id}: {len(outcome.enrolled)} {noun}enrolled ({nom}inscrit{e}s), "
        f"{len(outcome.already)} already enrolled (déjà inscrit{e}s), "
        f"{len(outcome.refusals)} refused (refusé{e}s){tail}"
    )


def _print_outcome(outcome: EnrollmentOutcome, path: str) -> None:
    _print_records(outcome, path, [
        (f"{c.class_id}\t{c.school_uai}\t{c.level}\t{c.pupils}", c.arm)
        for c in (*outcome.enrolled, *outcome.already)], pupils=False)


def _print_learners(outcome: LearnerOutcome, path: str) -> None:
    # The file's ids are echoed back to the académie that sent them; never stored or logged.
    _print_records(outcome, path, [
        (f"{p.learner_id}\t{p.class_id}\t{p.school_uai}\t{p.level}", p.arm)
        for p in (*outcome.enrolled, *outcome.already)], pupils=True,
        tail=f"; {outcome.classes} new classes")


def _publishing_exit(pending: int, error: str | None, experiment: str) -> int:
    if pending == 0:
        return EXIT_OK
    cause = f" ({error})" if error else ""
    typer.echo(
        f"publishing pending: {pending} enrollment records not yet on preuve.enrollments"
        f"{cause}; they are committed. Run: preuve enroll {experiment} --republish", err=True,
    )
    return EXIT_PENDING


def enroll(
    experiment: Annotated[str, typer.Argument(help="Experiment id.", show_default=False)],
    classes_csv: Annotated[
        Path | None,
        typer.Argument(help="CSV of classes: class_id,school_uai,level,pupils,academie + the "
                       "attributes the protocol names. When the protocol randomises learners "
                       "(population.unit: learner), a CSV of pupils instead: learner_id,"
                       "class_id,school_uai,level,academie + the attributes (learner_id: the "
                       "pseudonymous ENT/GAR id, never a name or an e-mail).",
                       show_default=False),
    ] = None,
    academie: Annotated[
        str | None, typer.Option(help="Your académie: rows of other académies are refused.")
    ] = None,
    protocol: Annotated[
        Path | None, typer.Option(help="Protocol file, for an experiment not in the registry.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    publish: Annotated[
        bool, typer.Option(help="Publish to preuve.enrollments (--no-publish: leave pending).")
    ] = True,
    republish: Annotated[
        bool, typer.Option(help="Publish the enrollments still pending, then exit.")
    ] = False,
    withdraw_class: Annotated[
        str | None, typer.Option("--withdraw", help="Withdraw this class (it keeps its arm).")
    ] = None,
    pupil: Annotated[
        str | None,
        typer.Option(help="With --withdraw: withdraw only this pupil (for a learner-randomised "
                     "protocol, the learner_id of the pupils file; it keeps its arm)."),
    ] = None,
    reason: Annotated[str, typer.Option(help="With --withdraw or --correct: why (recorded; "
                                            "never a name, e-mail or phone number).")] = "",
    correct_class: Annotated[
        str | None,
        typer.Option("--correct", help="Correct this class's pupil count (--pupils) or "
                     "attributes (--set NAME=VALUE) before the intervention starts; its arm "
                     "is kept. Afterwards, only --withdraw."),
    ] = None,
    pupil_count: Annotated[
        int | None,
        typer.Option("--pupils", help="With --correct: the corrected number of pupils."),
    ] = None,
    set_values: Annotated[
        list[str] | None,
        typer.Option("--set", help="With --correct: a corrected attribute, NAME=VALUE "
                     "(repeatable), e.g. --set education_priority=REP+."),
    ] = None,
    verify: Annotated[
        bool, typer.Option(help="Replay the allocation log from the protocol; exit 1 on any "
                           "discrepancy.")
    ] = False,
    follow: Annotated[
        bool, typer.Option("--follow", help="CLASSES_CSV is a cohort's follow-up file: the "
                           "followed pupils in their next school year's classes, learner_id,"
                           "class_id,school_uai,level,academie,previous_class_id. Nothing is "
                           "drawn: each pupil keeps the arm of the class randomised (ITT); "
                           "their new classes' events are routed to the experiment.")
    ] = False,
) -> None:
    """Enroll the classes of CLASSES_CSV into EXPERIMENT and print each class's arm.

    For a learner-randomised protocol, CLASSES_CSV is a file of pupils: each pupil is
    randomised and printed with its arm by the id of the file (stored only pseudonymised).

    Exit codes: 0 all rows enrolled; 1 some rows refused, the others enrolled;
    2 nothing enrolled: usage or file error, or the enrollment window not open (yet);
    3 enrolled, publishing pending (--republish);
    4 the database refused or could not be reached.
    """
    from experiments.access import cli_actor
    from experiments.database import registry_engine
    from experiments.enrollment.assignments import verify_allocations, verify_learner_allocations
    from experiments.enrollment.balance import enrollment_balance
    from experiments.enrollment.design import enrollment_design
    from experiments.enrollment.files import closed_window, read_classes, read_pupils
    from experiments.enrollment.followup import follow_pupils, read_followed
    from experiments.enrollment.publishing import kafka_publisher, pending_messages, publish_pending
    from experiments.enrollment.transaction import enroll_classes, enroll_learners
    from experiments.enrollment.withdrawal import withdraw
    from experiments.privacy.retention import remove_withdrawn_pupil_data
    from experiments.settings import Settings
    from ingest.pseudonym import load_pseudonym_key

    actions = sum((classes_csv is not None, republish, withdraw_class is not None, verify,
                   correct_class is not None))
    if actions != 1:
        raise _fail("give exactly one of CLASSES_CSV, --republish, --withdraw CLASS, "
                    "--correct CLASS or --verify")
    settings = Settings()
    engine = registry_engine(settings)
    # Who ran it (the OS account holding the registry's credentials), and for whom.
    actor = cli_actor(f"academie:{academie}" if academie else None)
    publisher = kafka_publisher(settings)
    try:
        if republish:
            report = publish_pending(engine, experiment, publisher)
            typer.echo(f"{experiment}: published {report.published} enrollment records")
            raise typer.Exit(_publishing_exit(len(pending_messages(engine, experiment)),
                                              report.error, experiment))
        design, warning = enrollment_design(engine, experiment, protocol)
        if warning:
            typer.echo(f"warning: {warning}", err=True)
        learners = design.unit == "learner"
        if verify:
            problems = (verify_learner_allocations if learners else verify_allocations)(
                engine, design)
            for mismatch in problems:
                typer.echo(f"MISMATCH {mismatch}")
            typer.echo(f"{experiment}: allocation log "
                       + ("reproduces from the protocol" if not problems else
                          f"has {len(problems)} discrepancies"))
            raise typer.Exit(EXIT_REFUSED if problems else EXIT_OK)
        if correct_class is not None:
            _correct(engine, design, experiment, correct_class, pupil_count, set_values or [],
                     reason=reason, actor=actor, academie=academie, protocol=protocol,
                     today=settings.today())
            return
        if withdraw_class is not None:
            # One path for classes and pupils of both designs: a pupil is recorded by
            # their per-experiment pseudonym, never by the id given here.
            done = withdraw(engine, design, withdraw_class, reason=reason, actor=actor,
                            learner_id=pupil, academie=academie,
                            key=load_pseudonym_key(settings) if pupil else None)
            removed = remove_withdrawn_pupil_data(settings, done, actor=actor)
            who = f"pupil {pupil} of class {withdraw_class}" if pupil else f"class {withdraw_class}"
            typer.echo(f"{experiment}: {who} withdrawn; arm {done.arm} kept (ITT); data "
                       f"already collected: {done.data_policy}"
                       + (f" ({removed['events']} events, {removed['daily_usage']} usage "
                          "rows deleted)" if removed is not None else ""))
            if pupil is None:
                error = publish_pending(engine, experiment, publisher).error if publish else None
                pending = len(pending_messages(engine, experiment))
                raise typer.Exit(_publishing_exit(pending, error, experiment))
            return
        assert classes_csv is not None
        if follow:  # no new unit: outside the enrollment window too
            followed = read_followed(classes_csv, design, academie=academie)
            _finish_learners(
                follow_pupils(engine, design, followed, key=load_pseudonym_key(settings),
                              actor=actor, publish=publisher if publish else None),
                followed.path, (), enrollment_balance(engine, design), as_json=as_json,
                publish=publish)
        closed = closed_window(design, settings.today())
        if closed is not None:
            typer.echo(f"preuve enroll: {closed.message_en} / {closed.message_fr}", err=True)
            raise typer.Exit(EXIT_USAGE)
        if learners:
            pupils = read_pupils(classes_csv, design, academie=academie,
                                 today=settings.today())
            learner_outcome = enroll_learners(
                engine, design, pupils, key=load_pseudonym_key(settings), actor=actor,
                publish=publisher if publish else None,
            )
            _finish_learners(learner_outcome, pupils.path, pupils.ignored_columns,
                             enrollment_balance(engine, design), as_json=as_json,
                             publish=publish)
        classes = read_classes(classes_csv, design, academie=academie, today=settings.today(),
                               academie_criteria=settings.academie_criteria)
        if design.double_validation:
            # Issue 17: the académie's validation only; randomised at the collectivité's.
            from experiments.enrollment.validations import validate_as_academie

            validated = validate_as_academie(engine, design, classes, actor=actor)
            typer.echo(f"{classes.path}: {len(validated.validated)} classes validated for "
                       f"the académie, waiting for their collectivité's validation; "
                       f"{len(validated.already)} already validated; "
                       f"{len(validated.refusals)} refused")
            for r in validated.refusals:
                typer.echo(f"  {r}", err=True)
            raise typer.Exit(EXIT_REFUSED if validated.refusals else EXIT_OK)
        outcome = enroll_classes(engine, design, classes, actor=actor,
                                 publish=publisher if publish else None)
    except (EnrollmentError, RegistryError) as exc:
        raise _fail(exc.reason) from None
    except ProtocolError as exc:
        for located in exc.problems:
            typer.echo(str(located), err=True)
        raise _fail(f"{exc.path or protocol}: invalid protocol") from None
    balance = enrollment_balance(engine, design)
    if as_json:
        typer.echo(json.dumps({
            "experiment": experiment,
            "enrolled": [{"class_id": c.class_id, "arm": c.arm} for c in outcome.enrolled],
            "already": [{"class_id": c.class_id, "arm": c.arm} for c in outcome.already],
            "refused": [r.as_dict() for r in outcome.refusals],
            "ignored_columns": list(classes.ignored_columns),
            "published": outcome.published, "pending": outcome.pending,
            "publish_error": outcome.publish_error, "balance": balance.as_dict(),
        }, ensure_ascii=False))
    else:
        _print_outcome(outcome, classes.path)
        if classes.ignored_columns:
            typer.echo(f"ignored columns (not stored): {', '.join(classes.ignored_columns)}")
        for line in balance.lines():
            typer.echo(line)
    if publish:
        pending_exit = _publishing_exit(outcome.pending, outcome.publish_error, experiment)
    else:
        pending_exit = EXIT_OK
        typer.echo(f"not published (--no-publish): {outcome.pending} records pending; "
                   f"publish with: preuve enroll {experiment} --republish", err=True)
    if outcome.refusals:
        raise typer.Exit(EXIT_REFUSED)
    raise typer.Exit(pending_exit)


def _correct(engine: Engine, design: EnrollmentDesign, experiment: str, class_id: str,
             pupils: int | None, assignments: list[str], *, reason: str, actor: str,
             academie: str | None, protocol: Path | None, today: date) -> None:
    """``--correct CLASS``: a versioned, audited correction before the intervention."""
    from experiments.enrollment.corrections import correct_enrollment
    from experiments.protocol.language import load_protocol
    from experiments.registry import registered_protocol

    attributes: dict[str, str] = {}
    for assignment in assignments:
        name, equals, value = assignment.partition("=")
        if not equals or not name.strip():
            raise EnrollmentError(f"--set expects NAME=VALUE, got {assignment!r}", field="set")
        attributes[name.strip()] = value
    periods = (load_protocol(protocol) if protocol is not None
               else registered_protocol(engine, experiment).protocol).periods
    done = correct_enrollment(engine, design, class_id, pupils=pupils, attributes=attributes,
                              reason=reason, actor=actor, academie=academie, today=today,
                              intervention_start=periods.intervention.start)
    changed = ", ".join(f"{k}: {old} -> {new}" for k, (old, new) in done.changes.items())
    typer.echo(f"{experiment}: class {class_id} corrected (version {done.version}; {changed}); "
               f"arm {done.arm} kept / classe corrigée, bras conservé")


def _finish_learners(
    outcome: LearnerOutcome,
    path: str,
    ignored: tuple[str, ...],
    balance: BalanceReport,
    *,
    as_json: bool,
    publish: bool,
) -> None:
    """Print a pupils file's outcome and balance, then exit with the command's code."""
    if as_json:
        def pupil(p: EnrolledLearner) -> dict[str, str]:
            return {"learner_id": p.learner_id, "class_id": p.class_id, "arm": p.arm}

        typer.echo(json.dumps({
            "experiment": outcome.experiment_id, "unit": "learner",
            "enrolled": [pupil(p) for p in outcome.enrolled],
            "already": [pupil(p) for p in outcome.already],
            "refused": [r.as_dict() for r in outcome.refusals],
            "new_classes": outcome.classes, "ignored_columns": list(ignored),
            "published": outcome.published, "pending": outcome.pending,
            "publish_error": outcome.publish_error, "balance": balance.as_dict(),
        }, ensure_ascii=False))
    else:
        _print_learners(outcome, path)
        if ignored:
            typer.echo(f"ignored columns (not stored): {', '.join(ignored)}")
        for line in balance.lines():
            typer.echo(line)
    if publish:
        pending_exit = _publishing_exit(outcome.pending, outcome.publish_error,
                                        outcome.experiment_id)
    else:
        pending_exit = EXIT_OK
        typer.echo(f"not published (--no-publish): {outcome.pending} class records pending; "
                   f"publish with: preuve enroll {outcome.experiment_id} --republish", err=True)
    raise typer.Exit(EXIT_REFUSED if outcome.refusals else pending_exit)
