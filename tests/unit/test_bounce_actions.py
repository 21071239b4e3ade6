"""The pure parts of bounce intake: the suppression policy, attribution, who may be mailed."""

from __future__ import annotations

import pytest

from bounce_in.actions import Context, Effect, Finding, Policy, effect, plan, response, soft_keys
from bounce_in.attribution import complaint_recipient, match, reference
from bounce_in.listener import NO_MAILBOX, NOT_LOCAL, recipient_refusal
from bounce_in.report import (
    Action,
    BounceReport,
    FeedbackReport,
    OriginalMessage,
    RecipientStatus,
    ReportKind,
)
from config.schema import BounceSettings
from engine.model import MessageState, QueuedMessage
from engine.records.record import RecordType

T0 = 1_800_000_000.0
POLICY = Policy.from_settings(BounceSettings(soft_suppress_after=3))
CONTEXT = Context("in-1", "192.0.2.7", T0, "node1")


def message(n: int, recipient: str) -> QueuedMessage:
    return QueuedMessage(
        id=f"m{n}",
        submission_id="s1",
        tenant_id=7,
        queue="news:acme@example.org",
        campaign="news",
        sender="hello@acme.test",
        recipient=recipient,
        domain="example.org",
        state=MessageState.DELIVERED,
        due_at=T0,
        created_at=T0 - 60,
    )


def status(action: Action, code: str, category: str, address: str = "") -> RecipientStatus:
    return RecipientStatus(address, action, code, category, diagnostic="the text")


@pytest.mark.parametrize(
    ("action", "category", "expected"),
    [
        (Action.FAILED, "InvalidRecipient", Effect.HARD),
        (Action.FAILED, "BadDomain", Effect.HARD),
        (Action.FAILED, "InactiveMailbox", Effect.HARD),
        (Action.FAILED, "QuotaIssues", Effect.SOFT),
        (Action.FAILED, "NoAnswerFromHost", Effect.SOFT),
        (Action.FAILED, "RoutingErrors", Effect.SOFT),
        (Action.DELAYED, "TransientFailure", Effect.SOFT),
        (Action.DELAYED, "InvalidRecipient", Effect.SOFT),
        (Action.DELAYED, "RateLimited", Effect.NONE),
        (Action.FAILED, "RateLimited", Effect.NONE),
        (Action.DELAYED, "PolicyRelated", Effect.NONE),
        (Action.DELAYED, "SpamBlock", Effect.NONE),
        (Action.DELAYED, "AutoReply", Effect.NONE),
        (Action.DELAYED, "BadConnection", Effect.NONE),
        (Action.DELAYED, "ProtocolErrors", Effect.NONE),
        (Action.FAILED, "PolicyRelated", Effect.NONE),
        (Action.FAILED, "SpamBlock", Effect.NONE),
        (Action.FAILED, "ContentRelated", Effect.NONE),
        (Action.FAILED, "InvalidSender", Effect.NONE),
        (Action.FAILED, "AutoReply", Effect.NONE),
        (Action.DELIVERED, "Uncategorized", Effect.NONE),
    ],
)
def test_effect_follows_the_common_policy(action: Action, category: str, expected: Effect) -> None:
    assert effect(status(action, "5.0.0", category)) is expected


def dsn(*statuses: RecipientStatus) -> BounceReport:
    return BounceReport(ReportKind.DSN, statuses, reporting_mta="mx.example.org")


def test_a_hard_bounce_suppresses_with_its_status_and_category() -> None:
    bad = status(Action.FAILED, "5.1.1", "InvalidRecipient")
    result = plan(
        dsn(bad), [Finding(message(1, "Bob@Example.org"), "acme", bad)], {}, POLICY, CONTEXT
    )
    [record] = result.records
    assert record.type is RecordType.OOB
    assert (record.id, record.recipient, record.tenant_id) == ("m1", "Bob@Example.org", 7)
    assert record.bounce_classification == "InvalidRecipient"
    assert record.meta["tenant"] == "acme"
    [suppression] = result.suppressions
    assert (suppression.address, suppression.reason) == (
        "bob@example.org",
        "bounce: 5.1.1 InvalidRecipient",
    )
    assert result.soft_bounces == ()


@pytest.mark.parametrize(("before", "suppressed"), [(0, False), (1, False), (2, True), (5, True)])
def test_a_soft_bounce_suppresses_once_the_count_reaches_the_threshold(
    before: int, suppressed: bool
) -> None:
    full = status(Action.FAILED, "4.2.2", "QuotaIssues")
    finding = Finding(message(1, "bob@example.org"), "acme", full)
    assert soft_keys([finding]) == [(7, "bob@example.org")]
    counts = {(7, "bob@example.org"): before}
    result = plan(dsn(full), [finding], counts, POLICY, CONTEXT)
    assert len(result.soft_bounces) == 1
    assert bool(result.suppressions) is suppressed


@pytest.mark.parametrize(
    ("feedback_type", "suppresses"),
    [
        ("abuse", True),
        ("fraud", True),
        ("Abuse", True),
        ("not-spam", False),
        ("virus", False),
        ("auth-failure", False),
    ],
)
def test_complaints_record_feedback_and_abuse_suppresses(
    feedback_type: str, suppresses: bool
) -> None:
    report = BounceReport(ReportKind.FEEDBACK, feedback=FeedbackReport(feedback_type))
    result = plan(report, [Finding(message(1, "bob@example.org"), "acme")], {}, POLICY, CONTEXT)
    [record] = result.records
    assert record.type is RecordType.FEEDBACK
    assert record.feedback_report is not None
    assert record.feedback_report["feedback_type"] == feedback_type
    assert bool(result.suppressions) is suppresses
    if suppresses:
        assert result.suppressions[0].reason == f"complaint: {feedback_type.lower()}"


def test_an_auto_reply_is_recorded_and_never_suppresses() -> None:
    report = BounceReport(ReportKind.AUTO_REPLY)
    result = plan(report, [Finding(message(1, "bob@example.org"), "acme")], {}, POLICY, CONTEXT)
    [record] = result.records
    assert record.bounce_classification == "AutoReply"
    assert result.suppressions == () and result.soft_bounces == ()


@pytest.mark.parametrize(
    ("smtp_code", "code", "action", "expected"),
    [
        (550, "5.1.1", Action.FAILED, 550),
        (None, "5.1.1", Action.FAILED, 550),
        (None, "4.2.2", Action.DELAYED, 450),
        (None, "", Action.DELAYED, 450),
        (None, "", Action.FAILED, 550),
    ],
)
def test_the_response_code_comes_from_the_reply_the_status_or_the_action(
    smtp_code: int | None, code: str, action: Action, expected: int
) -> None:
    given = RecipientStatus("", action, code, "Uncategorized", "text", smtp_code=smtp_code)
    assert response(given).code == expected


def test_the_soft_window_is_a_duration() -> None:
    assert Policy.from_settings(BounceSettings(soft_window="36h")).soft_window_seconds == 129600
    with pytest.raises(ValueError):
        Policy.from_settings(BounceSettings(soft_window="a week"))


ALICE, CAROL = message(0, "alice@example.org"), message(1, "Carol@Example.org")


def test_dsn_statuses_match_candidates_by_final_or_original_recipient() -> None:
    report = dsn(
        status(Action.FAILED, "5.1.1", "InvalidRecipient", "carol@example.org"),
        RecipientStatus(
            "x@forward.test",
            Action.DELAYED,
            "4.4.1",
            "NoAnswerFromHost",
            original_recipient="alice@example.org",
        ),
    )
    found = {m.message.id: m.status for m in match(report, [ALICE, CAROL])}
    assert found["m1"] is not None and found["m1"].status == "5.1.1"
    assert found["m0"] is not None and found["m0"].status == "4.4.1"


def test_a_single_candidate_takes_the_most_telling_status_of_an_unnamed_dsn() -> None:
    report = dsn(
        status(Action.DELAYED, "4.4.1", "NoAnswerFromHost", "someone@forward.test"),
        status(Action.FAILED, "5.1.1", "InvalidRecipient", ""),
    )
    [found] = match(report, [ALICE])
    assert found.status is not None and found.status.status == "5.1.1"


def test_an_unnamed_dsn_about_several_candidates_matches_none() -> None:
    assert match(dsn(status(Action.FAILED, "5.1.1", "InvalidRecipient")), [ALICE, CAROL]) == []


def test_complaints_name_their_recipient_in_arf_or_jmrp() -> None:
    arf = BounceReport(
        ReportKind.FEEDBACK, feedback=FeedbackReport("abuse", original_rcpt_to="carol@example.org")
    )
    jmrp = BounceReport(
        ReportKind.FEEDBACK,
        feedback=FeedbackReport("abuse"),
        original=OriginalMessage((("X-HmXmrOriginalRecipient", "<CAROL@example.org>"),)),
    )
    redacted = BounceReport(ReportKind.FEEDBACK, feedback=FeedbackReport("abuse"))
    assert complaint_recipient(jmrp) == "carol@example.org"
    assert [m.message.id for m in match(arf, [ALICE, CAROL])] == ["m1"]
    assert [m.message.id for m in match(jmrp, [ALICE, CAROL])] == ["m1"]
    assert match(redacted, [ALICE, CAROL]) == []
    assert [m.message.id for m in match(redacted, [ALICE])] == ["m0"]


def test_our_reference_is_read_from_the_returned_original() -> None:
    original = OriginalMessage((("x-penguin-ref", " r-abc "),))
    assert reference(BounceReport(ReportKind.DSN, original=original)) == "r-abc"
    assert reference(BounceReport(ReportKind.DSN)) is None


DOMAINS = frozenset({"bounces.acme.test"})
FEEDBACK = frozenset({"fbl@bounces.example.test"})


@pytest.mark.parametrize(
    ("address", "refusal"),
    [
        ("b-abcd1234@bounces.acme.test", None),
        ("B-ABCD1234@BOUNCES.ACME.TEST", None),
        ("FBL@bounces.example.test", None),
        ("postmaster@bounces.acme.test", NO_MAILBOX),
        ("b-@bounces.acme.test", NO_MAILBOX),
        ("b-ab cd@bounces.acme.test", NO_MAILBOX),
        ("b-abcd1234@acme.test", NOT_LOCAL),
        ("b-abcd1234@bounces.other.test", NOT_LOCAL),
        ("someone@example.org", NOT_LOCAL),
        ("b-abcd1234", NOT_LOCAL),
        ("b-abcd1234@bounces.acme.test@evil.test", NOT_LOCAL),
    ],
)
def test_only_bounce_and_feedback_addresses_are_accepted(address: str, refusal: object) -> None:
    assert recipient_refusal(address, DOMAINS, FEEDBACK) == refusal
