"""Enrollment: académies enroll classes (or pupils), Preuve checks and randomises them.

Classes and pupils are one service over two registry tables: a class-randomised protocol
enrolls classes; a pupil-randomised one enrolls pupils (and their classes, for routing).

Modules, in the order an enrollment goes through them:

- ``design``: what one experiment asks of its enrollment files, read from the registry.
- ``files``: the classes and pupils files (CSV), and the checks of each row.
- ``randomisation``: stratified permuted blocks, from the protocol and the enrollment order.
- ``tables``: the registry tables (designs, classes, pupils, allocations, withdrawals).
- ``transaction``: check, randomise and log one file's valid rows in one transaction.
- ``balance``: balance of the arms right after enrollment (counts, standardized differences).
- ``publishing``: hand committed enrollments to Kafka; publish pending ones later.
- ``assignments``: who has which arm; the replay of the allocation log (``--verify``).
- ``withdrawal``: withdrawals of classes and pupils (they keep their arm).
- ``corrections``: corrections of a class's pupil count or attributes before the
  intervention (versioned, audited, the arm kept).
- ``api``: the HTTP API (académies enroll and withdraw; EdTech companies read arms).

The public API is re-exported here (``from experiments.enrollment import enroll_classes``);
``api`` is not, so that importing enrollment does not import the web framework.
"""

from __future__ import annotations

from experiments.enrollment.assignments import (
    enrolled_classes,
    enrolled_learners,
    learner_arms,
    learner_statuses,
    verify_allocations,
    verify_learner_allocations,
)
from experiments.enrollment.balance import enrollment_balance, learner_balance
from experiments.enrollment.design import ENROLLING_STATES, enrollment_design
from experiments.enrollment.files import (
    EnrollmentDesign,
    Refusal,
    read_classes,
    read_pupils,
)
from experiments.enrollment.publishing import (
    FORGOTTEN,
    Publish,
    PublishReport,
    kafka_publisher,
    pending_messages,
    publish_pending,
)
from experiments.enrollment.tables import MIXED_ARM
from experiments.enrollment.transaction import (
    EnrolledClass,
    EnrolledLearner,
    EnrollmentOutcome,
    LearnerOutcome,
    enroll_classes,
    enroll_learners,
    in_one_transaction,
)
from experiments.enrollment.withdrawal import (
    Withdrawal,
    record_withdrawal,
    registry_pseudonym_key,
    withdraw,
    withdraw_learner,
    withdrawn_pupil_keys,
)

__all__ = [
    "ENROLLING_STATES",
    "FORGOTTEN",
    "MIXED_ARM",
    "EnrolledClass",
    "EnrolledLearner",
    "EnrollmentDesign",
    "EnrollmentOutcome",
    "LearnerOutcome",
    "Publish",
    "PublishReport",
    "Refusal",
    "Withdrawal",
    "enroll_classes",
    "enroll_learners",
    "enrolled_classes",
    "enrolled_learners",
    "enrollment_balance",
    "enrollment_design",
    "in_one_transaction",
    "kafka_publisher",
    "learner_arms",
    "learner_balance",
    "learner_statuses",
    "pending_messages",
    "publish_pending",
    "read_classes",
    "read_pupils",
    "record_withdrawal",
    "registry_pseudonym_key",
    "verify_allocations",
    "verify_learner_allocations",
    "withdraw",
    "withdraw_learner",
    "withdrawn_pupil_keys",
]
