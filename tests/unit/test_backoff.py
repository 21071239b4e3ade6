"""Backoff rules and levels (engine.scheduler.backoff): the shipped rules against the
providers' full replies and their near misses, rule files, and the adaptive levels."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.loader import ConfigError, load_settings
from engine.limits.throttle import ThrottleSpec
from engine.scheduler.backoff import (
    Action,
    BackoffPolicy,
    BackoffRule,
    Level,
    Target,
    after_success,
    load_rules,
    match_rule,
    parse_rules,
    reduced,
    scaled,
    scaled_spec,
)
from engine.smtp.reply import Reply
from engine.smtp.reply_reader import ReplyReader

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True)
SHIPPED = load_rules()


def wire(text: str) -> Reply:
    """The reply a client reads from ``text`` (lines separated by newlines)."""
    reader = ReplyReader()
    reader.feed("".join(f"{line}\r\n" for line in text.strip().splitlines()).encode())
    reply = reader.next_reply()
    assert reply is not None
    return reply


GMAIL_RATE = """
421-4.7.28 [203.0.113.5      15] Our system has detected an unusual rate of
421-4.7.28 unsolicited mail originating from your IP address. To protect our
421-4.7.28 users from spam, mail sent from your IP address has been temporarily
421-4.7.28 rate limited. For more information, go to
421-4.7.28  https://support.google.com/mail/?p=UnsolicitedRateLimitError to
421 4.7.28 review our Bulk Email Senders Guidelines. d2e1a72fcca58-6c4b1f2a3bsi12b3a.211 - gsmtp
"""
GMAIL_RATE_DKIM = """
421-4.7.28 Our system has detected an unusual rate of unsolicited mail originating
421-4.7.28 from your DKIM domain [news.example.com      12]. To protect our users from
421-4.7.28 spam, mail sent from your DKIM domain has been temporarily rate limited.
421 4.7.28 https://support.google.com/mail/?p=UnsolicitedRateLimitError a1si2.3 - gsmtp
"""
GMAIL_BLOCKED = """
550-5.7.28 [203.0.113.5      15] Our system has detected an unusual rate of
550-5.7.28 unsolicited mail originating from your IP address. To protect our
550-5.7.28 users from spam, mail sent from your IP address has been blocked.
550 5.7.28 https://support.google.com/mail/?p=UnsolicitedIPError a1si2.3 - gsmtp
"""
GMAIL_RECIPIENT_RATE = """
452-4.2.1 The recipient you are trying to contact is receiving mail at a rate that
452-4.2.1 prevents additional messages from being delivered. Please resend your
452 4.2.1 message at a later point. https://support.google.com/mail/?p=ReceivingRate a1si2.3 - gsmtp
"""
GMAIL_SUSPICIOUS = """
421-4.7.0 [203.0.113.5      15] Our system has detected that this message is
421-4.7.0 suspicious due to the nature of the content and/or the links within.
421 4.7.0 https://support.google.com/mail/answer/188131 a1si2.3 - gsmtp
"""
GMAIL_DMARC = """
550-5.7.26 Unauthenticated email from example.com is not accepted due to domain's
550 5.7.26 DMARC policy. https://support.google.com/mail/answer/2451690 a1si2.3 - gsmtp
"""
YAHOO = (
    "421 4.7.0 [{code}] Messages from 203.0.113.5 temporarily deferred due to unexpected "
    "volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes"
)
YAHOO_GL01 = (
    "421 4.7.0 [GL01] Message from (203.0.113.5) temporarily deferred - 4.16.50. "
    "Please refer to https://postmaster.yahooinc.com/error-codes"
)
YAHOO_DEFERRED = (
    "421 Message temporarily deferred - 4.16.51. Please refer to "
    "https://postmaster.yahooinc.com/error-codes"
)
YAHOO_TS03 = (
    "554 5.7.9 Message not accepted for policy reasons. [TS03] All messages from "
    "203.0.113.5 will be permanently deferred; Retrying will NOT succeed. "
    "See https://postmaster.yahooinc.com/error-codes"
)
YAHOO_NO_ACCOUNT = "554 5.7.9 Message not accepted; mailbox@yahoo.com doesn't have a Yahoo account"
MS_REPUTATION = (
    "451 4.7.{detail} The mail server [203.0.113.5] has been temporarily rate limited due to "
    "IP reputation. For e-mail delivery information, see https://postmaster.live.com "
    "({scode}) [Name=Protocol Filter Agent][AGT=PFA][MxId=11BA9E0BE9F0A5E5] "
    "[DB5EUR03FT024.eop-EUR03.prod.protection.outlook.com 2024-05-02T09:12:33.511Z 08DC6A]"
)
MS_RP = (
    "421 RP-00{n} (BAY004-MC1F42) Unfortunately, some messages from 203.0.113.5 weren't "
    "sent. Please try again. We have limits for how many messages can be sent per hour "
    "and per day. You can also refer to http://mail.live.com/mail/troubleshooting.aspx#errors."
)
MS_BLOCK = """
550-5.7.1 Unfortunately, messages from [203.0.113.5] weren't sent. Please contact your
550-5.7.1 Internet service provider since part of their network is on our block list
550-5.7.1 ({scode}). You can also refer your provider to
550-5.7.1 http://mail.live.com/mail/troubleshooting.aspx#errors.
550 5.7.1 [AM2PEPF0001C70B.eurprd05.prod.outlook.com 2024-05-02T09:12:33.511Z 08DC6A2F]
"""
MS_BANNED = (
    "550 5.7.1 Service unavailable, Client host [203.0.113.5] blocked using Spamhaus. "
    "To request removal from this list see https://www.spamhaus.org/query/ip/203.0.113.5 "
    "(AS3130). [BN8NAM12FT051.eop-nam12.prod.protection.outlook.com]"
)
MS_AUTH = (
    "550 5.7.515 Access denied, sending domain [EXAMPLE.COM] doesn't meet the required "
    "authentication level. The sender's domain in the 5322.From address doesn't meet the "
    "authentication requirements defined for the sender."
)
MS_BUSY = "451 4.7.500 Server busy. Please try again later from [203.0.113.5]. (S77719)"
COMCAST = (
    "421 resimta-po-12v.sys.comcast.net comcast 203.0.113.5 Comcast RL000001 Too many "
    "sessions are opened from your IP. Please refer to "
    "http://postmaster.comcast.net/smtp-error-codes.php#RL000001"
)
COMCAST_RECIPIENTS = (
    "452 4.1.1 resimta-h1p-028481.sys.comcast.net comcast 203.0.113.5 Comcast RL000010 "
    "Too many recipients. Please refer to http://postmaster.comcast.net/smtp-error-codes.php#RL000010"
)
COMCAST_BL = (
    "554 resimta-po-12v.sys.comcast.net comcast 203.0.113.5 Comcast BL000010 Comcast "
    "block list. Please refer to http://postmaster.comcast.net/smtp-error-codes.php#BL000010"
)


@pytest.mark.parametrize(
    ("text", "provider", "name"),
    [
        (GMAIL_RATE, "google", "gmail-rate"),
        (GMAIL_RATE_DKIM, "google", "gmail-rate"),
        (YAHOO.format(code="TS01"), "yahoo", "yahoo-ts01-ts02"),
        (YAHOO.format(code="TS02"), "yahoo", "yahoo-ts01-ts02"),
        (YAHOO.format(code="TS04"), "yahoo", "yahoo-ts04"),
        (YAHOO_GL01, "yahoo", "yahoo-gl01"),
        (YAHOO_DEFERRED, "yahoo", "yahoo-deferred"),
        ("451 Message temporarily deferred - [160]", "yahoo", "yahoo-deferred"),
        (
            MS_REPUTATION.format(detail=650, scode="S775"),
            "microsoft",
            "microsoft-ip-reputation-650",
        ),
        (
            MS_REPUTATION.format(detail=651, scode="S3114"),
            "microsoft",
            "microsoft-ip-reputation-651",
        ),
        (MS_RP.format(n=1), "microsoft", "microsoft-rp"),
        (MS_RP.format(n=2), "microsoft", "microsoft-rp"),
        (MS_RP.format(n=3), "microsoft", "microsoft-rp"),
        (MS_BLOCK.format(scode="S3140"), "microsoft", "microsoft-network-block"),
        (MS_BLOCK.format(scode="S3150"), "microsoft", "microsoft-network-block"),
        (COMCAST, "", "comcast-rate"),
        (COMCAST_RECIPIENTS, "", "comcast-rate"),
    ],
)
def test_shipped_rules_match_the_providers_replies(text: str, provider: str, name: str) -> None:
    rule = match_rule(SHIPPED, wire(text), provider)
    assert rule is not None and rule.name == name


@pytest.mark.parametrize(
    ("text", "provider"),
    [
        (GMAIL_BLOCKED, "google"),  # 5.7.28 is a block, not a rate limit
        (GMAIL_RECIPIENT_RATE, "google"),  # one recipient's rate, not the source's
        (GMAIL_SUSPICIOUS, "google"),
        (GMAIL_DMARC, "google"),
        (GMAIL_RATE, "microsoft"),  # another provider's reply
        (GMAIL_RATE, ""),
        ("421 4.7.2 Try again later", "google"),  # 4.7.2 is not within 4.7.28
        (YAHOO_TS03, "yahoo"),  # permanent: the bounce classifier's business
        (YAHOO_NO_ACCOUNT, "yahoo"),
        (YAHOO.format(code="TS01"), "google"),
        (YAHOO.format(code="TS01").replace("421 4.7.0", "554 5.7.9"), "yahoo"),
        ("421 4.7.0 [TS010] deferred", "yahoo"),
        ("421 4.7.0 [TS05] Messages from 203.0.113.5 held", "yahoo"),
        (YAHOO_DEFERRED, "microsoft"),
        (MS_BANNED, "microsoft"),  # a block list entry, not the network block (AS3130)
        (MS_AUTH, "microsoft"),
        (MS_BUSY, "microsoft"),
        (MS_REPUTATION.format(detail=652, scode="S775"), "microsoft"),
        (MS_REPUTATION.format(detail=650, scode="S775").replace("451", "550", 1), "microsoft"),
        (MS_RP.format(n=4), "microsoft"),
        (MS_RP.format(n=1).replace("421", "550", 1), "microsoft"),
        (MS_BLOCK.format(scode="S31400"), "microsoft"),
        (MS_BLOCK.format(scode="S3140").replace("5.7.1", "5.7.606"), "microsoft"),
        (MS_BLOCK.format(scode="S3140"), "yahoo"),
        (COMCAST_BL, ""),
        (COMCAST.replace("421", "554", 1), ""),
        ("250 2.0.0 OK 1714641153 a1si2.3 - gsmtp", "google"),
    ],
)
def test_near_misses_match_no_shipped_rule(text: str, provider: str) -> None:
    assert match_rule(SHIPPED, wire(text), provider) is None


def test_shipped_actions_follow_the_providers_advice() -> None:
    rules = {rule.name: rule for rule in SHIPPED}
    assert rules["gmail-rate"].target is Target.SOURCE_PROVIDER
    assert rules["gmail-rate"].action is Action.REDUCE and rules["gmail-rate"].factor == 0.5
    ts04 = rules["yahoo-ts04"]
    assert (ts04.action, ts04.target, ts04.duration_seconds) == (
        Action.SUSPEND,
        Target.SOURCE_PROVIDER,
        7200.0,
    )
    block = rules["microsoft-network-block"]
    assert (block.action, block.target, block.duration_seconds) == (
        Action.SUSPEND,
        Target.SOURCE_PROVIDER,
        86400.0,
    )
    assert "block list" in block.reason and "delisting" in block.reason
    assert rules["comcast-rate"].target is Target.LANE
    assert all(rule.origin.file == "backoff.toml" for rule in SHIPPED)
    reduces = [rule for rule in SHIPPED if rule.action is Action.REDUCE]
    assert all(rule.duration_seconds == 0.0 and 0 < rule.factor < 1 for rule in reduces)


def test_the_shipped_file_is_package_data() -> None:
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"engine.scheduler" = ["*.toml"]' in pyproject


def rule(**keys: object) -> BackoffRule:
    table = {"name": "r", "target": "lane", "action": "reduce", **keys}
    (parsed,) = parse_rules({"rule": [table]}, "ops.toml")
    return parsed


@pytest.mark.parametrize(
    ("keys", "reply", "provider", "matches"),
    [
        ({"code": 421}, "421 4.7.0 slow down", "", True),
        ({"code": 421}, "451 4.7.0 slow down", "", False),
        ({"code": "4xx"}, "451 4.7.0 slow down", "", True),
        ({"code": "4XX"}, "451 4.7.0 slow down", "", True),
        ({"code": "4xx"}, "550 5.7.0 go away", "", False),
        ({"code": "5xx"}, "550 5.7.0 go away", "", True),
        ({"enhanced": "4.7.28"}, "421 4.7.28 rate", "", True),
        ({"enhanced": "4.7"}, "421 4.7.28 rate", "", True),
        ({"enhanced": "4"}, "421 4.7.28 rate", "", True),
        ({"enhanced": "4.7.2"}, "421 4.7.28 rate", "", False),
        ({"enhanced": "4.7.28"}, "421 4.7.2 rate", "", False),
        ({"enhanced": "4.7"}, "421 rate without a code", "", False),
        ({"match": "(?i)unusual rate"}, "421 4.7.28 An UNUSUAL RATE", "", True),
        ({"match": "unusual rate"}, "421 4.7.28 An UNUSUAL RATE", "", False),
        ({"match": "unusual rate"}, "421-4.7.28 an unusual\n421 4.7.28 rate of mail", "", True),
        ({"match": "^421"}, "421 4.7.28 rate", "", False),  # the text alone, not the code
        ({"match": "4\\.7\\.28"}, "421 4.7.28 rate", "", False),
        ({"code": 421, "provider": "google"}, "421 4.7.0 x", "google", True),
        ({"code": 421, "provider": "google"}, "421 4.7.0 x", "yahoo", False),
        ({"code": 421, "provider": "google"}, "421 4.7.0 x", "", False),
        ({"code": 421, "enhanced": "4.7.0", "match": "x"}, "421 4.7.0 x", "", True),
        ({"code": 421, "enhanced": "4.7.0", "match": "y"}, "421 4.7.0 x", "", False),
    ],
)
def test_a_rule_matches_when_every_condition_holds(
    keys: dict[str, object], reply: str, provider: str, matches: bool
) -> None:
    assert rule(**keys).matches(wire(reply), provider) is matches


@pytest.mark.parametrize(
    ("table", "key", "problem"),
    [
        ({"fator": 0.5}, "rule[0].fator", "unknown key"),
        ({"code": None}, "rule[0].code", "at least one of"),
        ({"name": ""}, "rule[0].name", "non-empty"),
        ({"name": 3}, "rule[0].name", "expected a string"),
        ({"code": 250}, "rule[0].code", "400..599"),
        ({"code": "42x"}, "rule[0].code", "400..599"),
        ({"code": None, "target": None}, "rule[0].code", "at least one of"),
        ({"target": None}, "rule[0].target", "required"),
        ({"code": True}, "rule[0].code", "400..599"),
        ({"enhanced": "4.7.x"}, "rule[0].enhanced", "enhanced status code"),
        ({"enhanced": "7.1.1"}, "rule[0].enhanced", "enhanced status code"),
        ({"enhanced": "4.7.28.1"}, "rule[0].enhanced", "enhanced status code"),
        ({"enhanced": "4..1"}, "rule[0].enhanced", "enhanced status code"),
        ({"enhanced": "4.7."}, "rule[0].enhanced", "enhanced status code"),
        ({"match": "(unclosed"}, "rule[0].match", "not a valid regex"),
        ({"match": ""}, "rule[0].match", "non-empty regex"),
        ({"target": "site"}, "rule[0].target", "lane, source, source_provider"),
        ({"action": "slow"}, "rule[0].action", "reduce, suspend"),
        ({"factor": 1}, "rule[0].factor", "between 0 and 1"),
        ({"factor": 0}, "rule[0].factor", "between 0 and 1"),
        ({"factor": "half"}, "rule[0].factor", "between 0 and 1"),
        ({"duration": "2h"}, "rule[0].duration", "only for action = suspend"),
        ({"action": "suspend"}, "rule[0].duration", "required for suspend"),
        ({"action": "suspend", "duration": "soon"}, "rule[0].duration", "not a duration"),
        ({"action": "suspend", "duration": "2h", "factor": 0.5}, "rule[0].factor", "reduce"),
        ({"provider": ["google"]}, "rule[0].provider", "expected a string"),
    ],
)
def test_rule_errors_name_the_file_and_key(
    tmp_path: Path, table: dict[str, object], key: str, problem: str
) -> None:
    base: dict[str, object] = {"name": "r", "code": 421, "target": "lane", "action": "reduce"}
    body = {name: value for name, value in (base | table).items() if value is not None}
    lines = "".join(f"{name} = {toml(value)}\n" for name, value in body.items())
    path = tmp_path / "ops.toml"
    path.write_text(f"[[rule]]\n{lines}")
    with pytest.raises(ConfigError) as caught:
        load_rules([path])
    assert (caught.value.file, caught.value.key) == (str(path), key)
    assert problem in caught.value.problem
    assert str(caught.value).count("\n") == 0


def toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value + "'"
    if isinstance(value, list):
        return "[" + ", ".join(toml(item) for item in value) + "]"
    return repr(value)


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('[rules]\nname = "x"\n', "rules", "expected [[rule]]"),
        ('rule = "x"\n', "rule", "array of tables"),
        ("rule = [1]\n", "rule[0]", "expected a table"),
        (
            '[[rule]]\nname = "a"\ncode = 421\ntarget = "lane"\naction = "reduce"\n' * 2,
            "rule[1].name",
            "named twice",
        ),
        ("[[rule]\n", "-", "not valid TOML"),
    ],
)
def test_file_errors_name_the_file_and_key(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    path = tmp_path / "ops.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_rules([path])
    assert (caught.value.key, caught.value.file) == (key, str(path))
    assert problem in caught.value.problem


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_rules([tmp_path / "absent.toml"])


def write(path: Path, *rules: str) -> Path:
    path.write_text("".join(f"[[rule]]\n{body}\n" for body in rules))
    return path


def test_operator_rules_come_first_the_last_file_first_and_replace_by_name(
    tmp_path: Path,
) -> None:
    first = write(
        tmp_path / "first.toml",
        'name = "gmail-rate"\ncode = 421\ntarget = "source"\naction = "reduce"\nfactor = 0.8',
        'name = "any-421"\ncode = 421\ntarget = "lane"\naction = "reduce"',
    )
    second = write(
        tmp_path / "second.toml",
        'name = "gmail-soft"\nprovider = "google"\nmatch = "(?i)unusual rate"\n'
        'target = "lane"\naction = "suspend"\nduration = "30min"\nreason = "be gentle"',
    )
    rules = load_rules([first, second])
    names = [rule.name for rule in rules]
    assert names[:3] == ["gmail-soft", "gmail-rate", "any-421"]
    assert names.count("gmail-rate") == 1 and len(rules) == len(SHIPPED) + 2
    assert rules[1].origin == (str(first), "rule[0]") and rules[1].factor == 0.8
    matched = match_rule(rules, wire(GMAIL_RATE), "google")
    assert matched is not None and matched.name == "gmail-soft"
    assert (matched.duration_seconds, matched.reason) == (1800.0, "be gentle")
    yahoo = match_rule(rules, wire(YAHOO.format(code="TS04")), "yahoo")
    assert yahoo is not None and yahoo.origin.file == str(first)  # before the shipped rules
    assert rules[2].reason == "any-421"  # no reason: the name


def test_the_policy_reads_the_scheduler_settings(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    write(
        tmp_path / "rules" / "ops.toml",
        'name = "mine"\ncode = 452\ntarget = "tenant"\naction = "reduce"',
    )
    config = tmp_path / "penguin.toml"
    config.write_text(
        '[scheduler]\nbackoff_files = ["rules/ops.toml"]\nbackoff_step_after = 7\n'
        "backoff_max_level = 3\n"
    )
    policy = BackoffPolicy.from_settings(load_settings(config))
    assert (policy.step_after, policy.max_level) == (7, 3)
    assert policy.rules[0].name == "mine" and policy.rules[0].target is Target.TENANT
    assert policy.rules[0].origin.file == str(tmp_path / "rules" / "ops.toml")
    found = policy.match(wire("452 4.5.3 Too many recipients"), "")
    assert found is not None and found.name == "mine"


def test_a_bad_backoff_file_fails_the_environment_check(tmp_path: Path) -> None:
    bad = write(tmp_path / "ops.toml", 'name = "x"\ncode = 421\ntarget = "lane"\naction = "stop"')
    config = tmp_path / "penguin.toml"
    config.write_text(f'[scheduler]\nbackoff_files = ["{bad}"]\n')
    with pytest.raises(ConfigError) as caught:
        BackoffPolicy.from_settings(load_settings(config))
    assert str(caught.value).startswith(f"{bad}: rule[0].action: expected one of reduce")


# Levels


def test_reduce_steps_down_to_the_cap_and_drops_the_successes() -> None:
    level = Level(0, 0, 0.5)
    level = reduced(level, max_level=2, factor=0.7)
    assert level == Level(1, 0, 0.7)
    level = after_success(level, step_after=10)
    assert level == Level(1, 1, 0.7)
    level = reduced(level, max_level=2, factor=0.5)
    assert level == Level(2, 0, 0.5)  # the stronger factor stays
    level = reduced(level, max_level=2, factor=0.9)
    assert level == Level(2, 0, 0.5)  # at the cap; a weaker factor does not loosen it
    assert reduced(Level(3, 4, 0.25)) == Level(4, 0, 0.25)


def test_recovery_takes_one_step_per_step_after_successes() -> None:
    level = Level(2, 0, 0.5)
    for _ in range(3):
        level = after_success(level, step_after=3)
    assert level == Level(1, 0, 0.5)
    for _ in range(2):
        level = after_success(level, step_after=3)
    assert level == Level(1, 2, 0.5)
    level = after_success(level, step_after=3)
    assert level == Level(0, 0, 0.5)
    assert after_success(level, step_after=3) is level
    assert reduced(level, factor=0.8) == Level(1, 0, 0.8)  # back at full speed: the new factor


@pytest.mark.parametrize(
    ("base", "factor", "level", "expected"),
    [
        (10, 0.5, 0, 10),
        (10, 0.5, 1, 5),
        (10, 0.5, 2, 2),
        (10, 0.5, 3, 1),
        (10, 0.5, 6, 1),
        (100, 0.7, 1, 70),
        (100, 0.7, 2, 49),
        (100, 0.1, 2, 1),
        (1000, 0.1, 3, 1),
        (1, 0.5, 1, 1),
    ],
)
def test_scaled(base: int, factor: float, level: int, expected: int) -> None:
    assert scaled(base, factor, Level(level, 0, factor)) == expected


def test_scaled_spec_keeps_period_and_locality() -> None:
    spec = ThrottleSpec.parse("local:100/min,max_burst=20")
    assert scaled_spec(spec, 0.5, Level()) is spec
    assert scaled_spec(spec, 0.5, Level(1)) == ThrottleSpec(50, 60.0, 10, local=True)
    assert scaled_spec(spec, 0.5, Level(6)) == ThrottleSpec(1, 60.0, 1, local=True)


levels = st.builds(
    Level,
    st.integers(0, 30),
    st.integers(0, 100_000),
    st.floats(0.01, 1.0, exclude_min=False),
)


@PROPERTY
@given(levels)
def test_encode_decode_round_trip(level: Level) -> None:
    assert Level.decode(level.encode()) == level


@pytest.mark.parametrize("text", ["", "1:2", "a:b:c", "-1:0:0.5", "1:0:0", "1:0:1.5", "1:2:0.5:9"])
def test_decode_refuses_what_encode_never_wrote(text: str) -> None:
    with pytest.raises(ValueError):
        Level.decode(text)


@PROPERTY
@given(
    st.lists(st.booleans(), max_size=300),
    st.integers(1, 10),
    st.integers(1, 8),
    st.sampled_from([0.3, 0.5, 0.8]),
)
def test_levels_stay_within_bounds_and_limits_never_reach_zero(
    failures: list[bool], step_after: int, max_level: int, factor: float
) -> None:
    level = Level()
    for failed in failures:
        before = level
        level = reduced(level, max_level, factor) if failed else after_success(level, step_after)
        assert 0 <= level.level <= max_level
        assert 0 <= level.successes < step_after
        assert abs(level.level - before.level) <= 1
        assert scaled(100, level.factor, level) >= 1
