import re
from pathlib import Path

import pytest

from engine.delivery.bounce_classify import (
    BUILTIN_RULES,
    BUILTIN_TABLE,
    BounceClassifier,
    Category,
    Rule,
    RuleFileError,
    load_rules,
    parse_rules,
)
from engine.smtp.reply import Reply

CLASSIFIER = BounceClassifier([])

# (code, enhanced code, text, expected category): replies as the providers send them.
REPLIES = [
    # Gmail
    (
        550,
        "5.1.1",
        "The email account that you tried to reach does not exist. Please try double-checking "
        "the recipient's email address for typos or unnecessary spaces. Learn more at "
        "https://support.google.com/mail/?p=NoSuchUser",
        "InvalidRecipient",
    ),
    (
        452,
        "4.2.2",
        "The email account that you tried to reach is over quota. Please direct the recipient "
        "to https://support.google.com/mail/?p=OverQuotaTemp",
        "QuotaIssues",
    ),
    (
        552,
        "5.2.2",
        "The recipient's inbox is out of storage space and inactive. Please direct the "
        "recipient to https://support.google.com/mail/?p=OverQuotaPerm",
        "InactiveMailbox",
    ),
    (550, "5.2.1", "The email account that you tried to reach is disabled.", "InactiveMailbox"),
    (
        450,
        "4.2.1",
        "The user you are trying to contact is receiving mail too quickly. Please resend your "
        "message at a later time.",
        "RateLimited",
    ),
    (
        421,
        "4.7.28",
        "Our system has detected an unusual rate of unsolicited mail originating from your IP "
        "address. To protect our users from spam, mail sent from your IP address has been "
        "temporarily rate limited.",
        "RateLimited",
    ),
    (
        550,
        "5.7.1",
        "Our system has detected an unusual rate of unsolicited mail originating from your IP "
        "address. To protect our users from spam, mail sent from your IP address has been "
        "blocked.",
        "SpamBlock",
    ),
    (
        550,
        "5.7.1",
        "Our system has detected that this message is likely unsolicited mail. To reduce the "
        "amount of spam sent to Gmail, this message has been blocked.",
        "SpamContent",
    ),
    (
        550,
        "5.7.1",
        "Our system has detected that this message is likely suspicious due to the very low "
        "reputation of the sending domain. To best protect our users from spam, the message "
        "has been blocked.",
        "SpamBlock",
    ),
    (
        550,
        "5.7.26",
        "This mail has been blocked because the sender is unauthenticated. Gmail requires all "
        "senders to authenticate with either SPF or DKIM.",
        "AuthenticationFailed",
    ),
    (
        550,
        "5.7.26",
        "Unauthenticated email from example.com is not accepted due to domain's DMARC policy.",
        "AuthenticationFailed",
    ),
    (
        550,
        "5.7.25",
        "The IP address sending this message does not have a PTR record setup, or the "
        "corresponding forward DNS entry does not point to the sending IP.",
        "BadConfiguration",
    ),
    (
        421,
        "4.7.29",
        "Your email has been rate limited because this message wasn't sent over a TLS "
        "connection. Gmail requires all bulk email senders to use TLS/SSL.",
        "BadConfiguration",
    ),
    (
        552,
        "5.7.0",
        "This message was blocked because its content presents a potential security issue. "
        "Please visit https://support.google.com/mail/?p=BlockedMessage to review our message "
        "content and attachment content guidelines.",
        "VirusRelated",
    ),
    (552, "5.3.4", "Your message exceeded Google's message size limits.", "ContentRelated"),
    (421, "4.7.0", "Try again later, closing connection.", "PolicyRelated"),
    (451, "4.3.0", "Mail server temporarily rejected message.", "TransientFailure"),
    # Microsoft: Outlook.com, Exchange Online, Exchange Server
    (
        550,
        "5.5.0",
        "Requested action not taken: mailbox unavailable (S2017062302). [AM0PR07MB1234.eurprd07]",
        "InvalidRecipient",
    ),
    (
        550,
        "5.7.1",
        "Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet "
        "service provider since part of their network is on our block list (S3150).",
        "SpamBlock",
    ),
    (
        550,
        "5.7.1",
        "Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet "
        "service provider since part of their network is on our block list (S3140).",
        "SpamBlock",
    ),
    (
        451,
        "4.7.650",
        "The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation. "
        "For e-mail delivery information, see https://postmaster.live.com (S775)",
        "RateLimited",
    ),
    (
        451,
        "4.7.651",
        "The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation.",
        "RateLimited",
    ),
    (
        421,
        None,
        "RP-001 (BAY004-MC1F13) Unfortunately, some messages from 192.0.2.1 weren't sent. "
        "Please try again. We have limits for how many messages can be sent per hour and per day.",
        "RateLimited",
    ),
    (
        550,
        None,
        "DY-001 (SNT004-MC1F17) Unfortunately, messages from 192.0.2.1 weren't sent. Please "
        "contact your Internet service provider. You can tell them that Hotmail does not relay "
        "dynamically-assigned IP ranges.",
        "SpamBlock",
    ),
    (
        550,
        "5.7.515",
        "Access denied, sending domain example.com does not meet the required authentication "
        "level.",
        "AuthenticationFailed",
    ),
    (
        550,
        "5.7.509",
        "Access denied, sending domain example.com does not pass DMARC verification and has a "
        "DMARC policy of reject.",
        "AuthenticationFailed",
    ),
    (550, "5.7.606", "Access denied, banned sending IP [192.0.2.1].", "SpamBlock"),
    (
        550,
        "5.4.1",
        "Recipient address rejected: Access denied. AS(201806281) [DB5EUR03FT012.eop-EUR03]",
        "InvalidRecipient",
    ),
    (
        550,
        "5.1.10",
        "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        "InvalidRecipient",
    ),
    (550, "5.7.1", "RESOLVER.RST.NotAuthorized; not authorized", "PolicyRelated"),
    (452, "4.3.1", "Insufficient system resources", "TransientFailure"),
    (554, "5.4.14", "Hop count exceeded - possible mail loop ATTR34", "RoutingErrors"),
    (
        554,
        "5.2.2",
        "mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuota",
        "QuotaIssues",
    ),
    (550, "5.7.1", "Unable to relay", "RelayDenied"),
    (550, "5.5.3", "RESOLVER.ADR.RecipLimit; too many recipients", "TooManyRecipients"),
    # Yahoo, AOL
    (
        421,
        "4.7.0",
        "[TS01] Messages from 192.0.2.1 temporarily deferred due to user complaints - "
        "4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
        "RateLimited",
    ),
    (
        421,
        "4.7.0",
        "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user "
        "complaints - 4.16.56.1; see https://postmaster.yahooinc.com/error-codes",
        "RateLimited",
    ),
    (
        421,
        "4.7.0",
        "[TS03] All messages from 192.0.2.1 will be permanently deferred; Retrying will NOT "
        "succeed. See https://postmaster.yahooinc.com/error-codes",
        "SpamBlock",
    ),
    (
        553,
        "5.7.1",
        "[BL21] Connections will not be accepted from 192.0.2.1, because the ip is in "
        "Spamhaus's list; see https://postmaster.yahooinc.com/error-codes",
        "SpamBlock",
    ),
    (
        554,
        "5.7.9",
        "Message not accepted for policy reasons.  See https://senders.yahooinc.com/error-codes",
        "PolicyRelated",
    ),
    (
        553,
        "5.1.1",
        "<someone@yahoo.com>: user doesn't have a yahoo.com account",
        "InvalidRecipient",
    ),
    (552, None, "1 Requested mail action aborted, mailbox not found", "InvalidRecipient"),
    (
        554,
        None,
        "30 Sorry, your message to someone@aol.com cannot be delivered. This mailbox is "
        "disabled (554.30).",
        "InactiveMailbox",
    ),
    # Apple iCloud
    (550, "5.1.1", "<someone@icloud.com>: user does not exist", "InvalidRecipient"),
    (
        554,
        "5.7.1",
        "[CS01] Message rejected due to local policy. Please visit "
        "https://support.apple.com/en-us/HT204137",
        "PolicyRelated",
    ),
    (552, "5.2.2", "<someone@me.com>: user is over quota", "QuotaIssues"),
    (
        550,
        "5.7.0",
        "Blocked - see https://ipcheck.proofpoint.com/?ip=192.0.2.1",
        "SpamBlock",
    ),
    # Postfix
    (
        550,
        "5.1.1",
        "<someone@example.org>: Recipient address rejected: User unknown in virtual mailbox table",
        "InvalidRecipient",
    ),
    (
        550,
        "5.1.1",
        "<someone@example.org>: Recipient address rejected: User unknown in local recipient table",
        "InvalidRecipient",
    ),
    (552, "5.2.2", "<someone@example.org>: Mailbox full", "QuotaIssues"),
    (554, "5.7.1", "<someone@example.org>: Relay access denied", "RelayDenied"),
    (
        450,
        "4.7.1",
        "<localhost>: Helo command rejected: Host not found",
        "BadConfiguration",
    ),
    (
        504,
        "5.5.2",
        "<localhost>: Helo command rejected: need fully-qualified hostname",
        "BadConfiguration",
    ),
    (421, "4.7.0", "mx.example.org Error: too many connections from 192.0.2.1", "RateLimited"),
    (
        450,
        "4.7.1",
        "Client host rejected: cannot find your hostname, [192.0.2.1]",
        "BadConfiguration",
    ),
    (
        554,
        "5.7.1",
        "Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org; "
        "https://www.spamhaus.org/query/ip/192.0.2.1",
        "SpamBlock",
    ),
    (
        450,
        "4.2.0",
        "<someone@example.org>: Recipient address rejected: Greylisted, see "
        "http://postgrey.schweikert.ch/help/example.org.html",
        "TransientFailure",
    ),
    (
        450,
        "4.1.8",
        "<bounces@example.com>: Sender address rejected: Domain not found",
        "InvalidSender",
    ),
    (
        450,
        "4.1.2",
        "<someone@nosuch.example>: Recipient address rejected: Domain not found",
        "BadDomain",
    ),
    (
        550,
        "5.7.23",
        "<someone@example.org>: Recipient address rejected: Message rejected due to: SPF fail - "
        "not authorized",
        "AuthenticationFailed",
    ),
    (452, "4.3.1", "Insufficient system storage", "TransientFailure"),
    (552, "5.3.4", "Message size exceeds fixed limit", "ContentRelated"),
    (452, "4.5.3", "Error: too many recipients", "TooManyRecipients"),
    (421, "4.4.2", "mx.example.org Error: timeout exceeded", "BadConnection"),
    (
        556,
        "5.1.10",
        "<someone@nullmx.example>: Recipient address rejected: Domain nullmx.example does not "
        "accept mail (nullMX)",
        "BadDomain",
    ),
    (500, "5.5.2", "Error: bad syntax", "ProtocolErrors"),
    (503, "5.5.1", "Error: need MAIL command", "ProtocolErrors"),
    # Exim, cPanel
    (550, None, "Unrouteable address", "RoutingErrors"),
    (550, "5.1.1", "<someone@example.net>... No Such User Here", "InvalidRecipient"),
    (451, None, "Temporary local problem - please try later", "TransientFailure"),
    (550, None, "Administrative prohibition", "PolicyRelated"),
    (550, None, "relay not permitted", "RelayDenied"),
    (
        550,
        None,
        "Verification failed for <bounces@example.com>\nUnrouteable address\nSender verify failed",
        "InvalidSender",
    ),
    (
        421,
        None,
        "Too many concurrent SMTP connections from this IP address; please try again later.",
        "RateLimited",
    ),
    (
        550,
        None,
        "This message contains a virus (Eicar-Test-Signature) and has been rejected",
        "VirusRelated",
    ),
    (
        552,
        None,
        "This message contains an unacceptable attachment (.exe)",
        "ProhibitedAttachment",
    ),
    (550, None, "Your message has been rejected as spam", "SpamContent"),
    # Texts of DSNs and of failures the sending MTA reports itself (Postfix, Exim wording).
    (
        451,
        None,
        "Host or domain name not found. Name service error for name=example.com type=MX: Host "
        "not found, try again",
        "DNSFailure",
    ),
    (
        550,
        "5.4.4",
        "Host or domain name not found. Name service error for name=nosuch.example type=A: "
        "Host not found",
        "BadDomain",
    ),
    (
        451,
        None,
        "connect to mx.example.org[192.0.2.25]:25: Connection timed out",
        "NoAnswerFromHost",
    ),
    (
        451,
        None,
        "lost connection with mx.example.org[192.0.2.25] while sending end of data -- message "
        "may be sent more than once",
        "BadConnection",
    ),
    (550, None, "retry timeout exceeded", "MessageExpired"),
    (550, None, "Message rejected due to local policy", "PolicyRelated"),
    (550, None, "Automatic reply: I am out of the office until 3 June", "AutoReply"),
    (
        550,
        None,
        "I am protecting myself from junk mail with a challenge-response system",
        "ChallengeResponse",
    ),
    (550, None, "You have been unsubscribed from the announce list", "Unsubscribe"),
    (550, None, "Please confirm your subscription to the announce list", "Subscribe"),
    # No text rule: enhanced and basic code fallbacks.
    (550, "5.1.1", "Sorry", "InvalidRecipient"),
    (550, "5.2.1", "Sorry", "InactiveMailbox"),
    (451, "4.4.1", "Sorry", "NoAnswerFromHost"),
    (451, "4.4.3", "Sorry", "DNSFailure"),
    (554, "5.4.7", "Sorry", "MessageExpired"),
    (554, "5.6.0", "Sorry", "ContentRelated"),
    (535, "5.7.8", "Sorry", "AuthenticationFailed"),
    (550, "5.7.27", "Sorry", "InvalidSender"),
    (550, "5.7.99", "Sorry", "PolicyRelated"),
    (550, "5.0.0", "Sorry", "Uncategorized"),
    (450, None, "Sorry", "TransientFailure"),
    (554, None, "Transaction failed", "Uncategorized"),
    (502, None, "Command not implemented", "ProtocolErrors"),
]


@pytest.mark.parametrize(("code", "enhanced", "text", "expected"), REPLIES)
def test_classify_real_world_replies(
    code: int, enhanced: str | None, text: str, expected: str
) -> None:
    assert CLASSIFIER.classify(Reply(code, enhanced or "", text)) == expected


def test_the_table_has_enough_real_world_replies() -> None:
    assert len([r for r in REPLIES if r[2] != "Sorry"]) >= 40


def test_builtin_table_uses_known_categories_and_compiles() -> None:
    for entry in BUILTIN_TABLE:
        assert entry.category in set(Category)
        assert entry.reason
        re.compile(entry.regex)


def test_every_builtin_rule_decides_some_reply() -> None:
    """A rule no reply reaches is shadowed by an earlier one, or untested."""
    decided = set()
    for code, enhanced, text, _ in REPLIES:
        subject = " ".join(str(Reply(code, enhanced or "", text)).split())
        first = next((i for i, r in enumerate(BUILTIN_RULES) if r.pattern.search(subject)), None)
        decided.add(first)
    assert [BUILTIN_TABLE[i].regex for i in range(len(BUILTIN_TABLE)) if i not in decided] == []


def test_operator_rules_override_builtin_rules() -> None:
    reply = Reply(550, "5.1.1", "<someone@example.org>: user does not exist")
    assert CLASSIFIER.classify(reply) == "InvalidRecipient"
    classifier = BounceClassifier(
        [
            Rule("SpamBlock", re.compile(r"^550 5\.1\.1 <\S+@example\.org>")),
            Rule("ExampleOrgQuirk", re.compile(r"example\.org")),
        ]
    )
    assert classifier.classify(reply) == "SpamBlock"
    other = Reply(550, "", "no thanks, example.org")
    assert classifier.classify(other) == "ExampleOrgQuirk"
    assert classifier.classify(Reply(552, "5.2.2", "Mailbox full")) == "QuotaIssues"


def test_rule_subject_has_no_enhanced_code_when_absent() -> None:
    classifier = BounceClassifier([Rule("Odd", re.compile(r"^550 Odd$"))])
    assert classifier.classify(Reply(550, "", "Odd")) == "Odd"


RULE_FILE = """
[[rule]]
category = "SpamBlock"
pattern = '(?i)blocked by CustomRBL'

[[rule]]
category = "AcmeGateway"
pattern = '^554 5\\.7\\.1 ACME-\\d+'
"""


def test_load_rules_and_use_them(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(RULE_FILE)
    rules = load_rules(path)
    assert [rule.category for rule in rules] == ["SpamBlock", "AcmeGateway"]
    classifier = BounceClassifier(rules)
    assert classifier.classify(Reply(554, "5.7.1", "ACME-42 rejected")) == "AcmeGateway"
    assert classifier.classify(Reply(550, "", "BLOCKED BY CUSTOMRBL")) == "SpamBlock"


def test_empty_rule_file_has_no_rules() -> None:
    assert parse_rules("", "rules.toml") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[rule]\n", "rules.toml: not valid TOML"),
        ("rules = []\n", "rules.toml: unknown key 'rules'"),
        ('rule = "x"\n', "rules.toml: 'rule' must be an array of tables"),
        ("rule = [1]\n", "rules.toml: rule 1: expected a table"),
        ('[[rule]]\npattern = "x"\n', "rules.toml: rule 1: category must be"),
        ('[[rule]]\ncategory = ""\npattern = "x"\n', "rules.toml: rule 1: category must be"),
        (
            '[[rule]]\ncategory = "Spam Block"\npattern = "x"\n',
            "rules.toml: rule 1: category must be",
        ),
        (
            '[[rule]]\ncategory = "spamblock"\npattern = "x"\n',
            "rules.toml: rule 1: category 'spamblock': did you mean 'SpamBlock'?",
        ),
        ('[[rule]]\ncategory = "SpamBlock"\n', "rules.toml: rule 1: pattern must be"),
        ('[[rule]]\ncategory = "SpamBlock"\npattern = 5\n', "rules.toml: rule 1: pattern must be"),
        (
            '[[rule]]\ncategory = "SpamBlock"\npattern = "x"\n'
            '[[rule]]\ncategory = "SpamBlock"\npattern = "(unclosed"\n',
            "rules.toml: rule 2: pattern '(unclosed' is not a valid regex",
        ),
        (
            '[[rule]]\ncategory = "SpamBlock"\npattern = "x"\npatern = "y"\n',
            "rules.toml: rule 1: unknown key 'patern'",
        ),
    ],
)
def test_rule_file_errors(text: str, message: str) -> None:
    with pytest.raises(RuleFileError) as info:
        parse_rules(text, "rules.toml")
    assert str(info.value).startswith(message)
    assert isinstance(info.value, ValueError)


def test_unreadable_rule_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    with pytest.raises(RuleFileError, match=r"missing\.toml: cannot read rule file"):
        load_rules(path)


def test_rule_file_error_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[[rule]]\ncategory = "X"\npattern = "["\n')
    with pytest.raises(RuleFileError, match=r"rules\.toml: rule 1: pattern"):
        load_rules(path)
