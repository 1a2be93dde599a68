"""The xAPI verbs Preuve classifies, by vocabulary, and what each becomes in contract v1.

Tools do not share one vocabulary: Moodle's logstore_xapi sends Activity Streams and
Tin Can verbs, Open edX the xAPI Video Profile and ACRossX, cmi5 players the ADL verbs
under two IRIs, TRAX the French ``vocab.xapi.fr`` verbs. :data:`VERB_RULES` maps each
verb IRI we can classify onto a contract verb; a verb that is not in it is not refused:
it is stored as ``interacted``, an interaction that no protocol counts as active use by
default (see :data:`ingest.contract.OTHER_VERBS`). The table is documented verb by verb in
``docs/xapi-mapping.md``.

Sources of the IRIs: the ADL vocabulary (http://adlnet.gov/expapi/verbs/ and its
https://w3id.org/xapi/adl/verbs/ twin, which cmi5 uses for ``abandoned``, ``waived`` and
``satisfied``); the cmi5 specification (AICC/CMI-5_Spec_Current, section 9.3); the xAPI
Video Profile (https://w3id.org/xapi/video/verbs/, the list in openfun/ralph
``src/ralph/models/xapi/concepts/verbs/video.py``); Activity Streams 1.0 (both
``http://activitystrea.ms/schema/1.0/`` and the short ``http://activitystrea.ms/`` that
Moodle's logstore_xapi also sends); the Tin Can registry (http://id.tincanapi.com/verb/);
the ADL Total Learning Architecture verbs (https://w3id.org/xapi/tla/verbs/); the French
vocabulary of xapi-fr/moodle-profile ``vocab.md`` (http://vocab.xapi.fr/verbs/); and the
verbs Open edX's event-routing-backends (ACRossX, DoD ISD) and Moodle's logstore_xapi
(EDLM LMS) send, as seen in their test fixtures (tests/data/xapi/).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ingest.contract import Verb

__all__ = ["OTHER_INTERACTION", "VERB_FAMILIES", "VERB_RULES", "VerbRule", "verb_rule"]

OTHER_INTERACTION: Final[Verb] = "interacted"


@dataclass(frozen=True)
class VerbRule:
    """What one xAPI verb becomes.

    ``verb`` is the contract verb; ``without_score`` the contract verb used instead when
    the statement has no score (None: the contract then requires one); ``verdict`` the
    success the verb itself states (``passed``: True, ``failed``: False).
    """

    verb: Verb
    without_score: Verb | None = None
    verdict: bool | None = None

    def contract_verb(self, has_score: bool) -> Verb:
        """The contract verb of a statement that has (or has not) a score."""
        if self.without_score is not None and not has_score:
            return self.without_score
        return self.verb


_SCORED = VerbRule("assessment_scored")
_PASSED = VerbRule("assessment_scored", without_score="activity_completed", verdict=True)
_FAILED = VerbRule("assessment_scored", without_score="activity_completed", verdict=False)
_GRADED = VerbRule("assessment_scored", without_score=OTHER_INTERACTION)


def _rules(**verbs: Verb | VerbRule) -> dict[str, VerbRule]:
    # Keyword names cannot hold '-': "logged_in" stands for "logged-in".
    return {
        name.replace("_", "-"): rule if isinstance(rule, VerbRule) else VerbRule(rule)
        for name, rule in verbs.items()
    }


# (vocabulary, IRI prefixes, verbs) – the order of the documentation's table.
VERB_FAMILIES: Final[list[tuple[str, tuple[str, ...], dict[str, VerbRule]]]] = [
    (
        "ADL and cmi5",
        ("http://adlnet.gov/expapi/verbs/", "https://w3id.org/xapi/adl/verbs/"),
        _rules(
            initialized="session_started", launched="session_started",
            resumed="session_started", logged_in="session_started",
            attended="session_started",
            terminated="session_ended", exited="session_ended", suspended="session_ended",
            logged_out="session_ended", abandoned="session_ended",
            experienced="content_viewed",
            attempted="activity_started", progressed="activity_started",
            completed="activity_completed", mastered="activity_completed",
            answered="exercise_answered",
            scored=_SCORED, passed=_PASSED, failed=_FAILED,
            # Not the pupil's use of the resource: the LMS's bookkeeping (cmi5 satisfied,
            # waived), enrolment, social acts and voiding.
            satisfied=OTHER_INTERACTION, waived=OTHER_INTERACTION,
            registered=OTHER_INTERACTION, interacted=OTHER_INTERACTION,
            asked=OTHER_INTERACTION, commented=OTHER_INTERACTION, shared=OTHER_INTERACTION,
        ),
    ),
    (
        "xAPI Video Profile",
        ("https://w3id.org/xapi/video/verbs/",),
        _rules(played="content_viewed", paused=OTHER_INTERACTION, seeked=OTHER_INTERACTION),
    ),
    (
        "Activity Streams",
        ("http://activitystrea.ms/schema/1.0/", "http://activitystrea.ms/"),
        _rules(
            start="activity_started", complete="activity_completed",
            submit="activity_completed",
            join="session_started", attend="session_started", leave="session_ended",
            open="resource_opened", access="resource_opened",
            read="content_viewed", watch="content_viewed", listen="content_viewed",
            play="content_viewed", consume="content_viewed",
        ),
    ),
    (
        "Tin Can registry",
        ("http://id.tincanapi.com/verb/",),
        _rules(
            viewed="content_viewed", downloaded="resource_opened",
            earned=_GRADED, skipped=OTHER_INTERACTION, selected=OTHER_INTERACTION,
        ),
    ),
    (
        "TLA",
        ("https://w3id.org/xapi/tla/verbs/",),
        _rules(
            explored="content_viewed", achieved="activity_completed", scored=_GRADED,
            focused=OTHER_INTERACTION, assigned=OTHER_INTERACTION,
            registered=OTHER_INTERACTION,
        ),
    ),
    (
        "vocab.xapi.fr",
        ("http://vocab.xapi.fr/verbs/",),
        _rules(
            navigated_in="resource_opened", marked_completion="activity_completed",
            graded=_GRADED, reset=OTHER_INTERACTION,
        ),
    ),
    (
        "ACRossX (Open edX)",
        ("https://w3id.org/xapi/acrossx/verbs/",),
        _rules(evaluated=VerbRule("exercise_answered"), posted=OTHER_INTERACTION),
    ),
    (
        "DoD ISD (Open edX, TRAX)",
        ("https://w3id.org/xapi/dod-isd/verbs/",),
        _rules(navigated="resource_opened", created=OTHER_INTERACTION),
    ),
    (
        "EDLM LMS (Moodle logstore_xapi)",
        ("https://xapi.edlm/profiles/edlm-lms/concepts/verbs/",),
        _rules(login="session_started", logout="session_ended"),
    ),
]

VERB_RULES: Final[dict[str, VerbRule]] = {
    prefix + name: rule
    for _family, prefixes, rules in VERB_FAMILIES
    for prefix in prefixes
    for name, rule in rules.items()
}
_UNKNOWN = VerbRule(OTHER_INTERACTION)


def verb_rule(verb_id: str) -> tuple[VerbRule, bool]:
    """The rule of ``verb_id`` and whether the verb is classified (known).

    Examples
    --------
    >>> verb_rule("https://w3id.org/xapi/video/verbs/played")
    (VerbRule(verb='content_viewed', without_score=None, verdict=None), True)
    >>> verb_rule("https://example.org/verbs/doodled")[0].verb
    'interacted'
    """
    rule = VERB_RULES.get(verb_id)
    return (rule, True) if rule is not None else (_UNKNOWN, False)
