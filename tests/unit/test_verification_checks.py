"""Domain verification's checks: DNS answers in, pass, fail or missing out
(RFC 7208, RFC 6376, RFC 7489)."""

from __future__ import annotations

import pytest

from engine.dkim.keys import DnsRecord, dns_records
from engine.provisioning.verification import (
    CheckStatus,
    DnsAnswer,
    Expectations,
    check_cname,
    check_dkim,
    check_dmarc,
    check_return_path_mx,
    check_return_path_spf,
    check_spf,
    report,
    spf_errors,
)

PASS, FAIL, MISSING = CheckStatus.PASS, CheckStatus.FAIL, CheckStatus.MISSING
KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAabc"
RECORDS = dns_records(
    "acme.test", "pm202701", ("rsa", KEY), "bounces.acme.test", "mta.penguin.test"
)
DKIM, RP_SPF, RP_MX, DMARC = RECORDS
CNAME = DnsRecord("click.acme.test.", "CNAME", "edge.penguin.test.", "tracking")


def found(*values: str) -> DnsAnswer:
    return DnsAnswer(values)


SERVFAIL = DnsAnswer(failure="SERVFAIL")


@pytest.mark.parametrize(
    ("answer", "status", "detail"),
    [
        (found("v=spf1 include:_spf.example.net ~all"), PASS, ""),
        (found("v=spf1 -all", "google-site-verification=x"), PASS, ""),
        (found("v=spf1"), PASS, ""),
        (found("V=SPF1 a mx ip4:192.0.2.0/24 ip6:2001:db8::/32 redirect=_spf.x.test"), PASS, ""),
        (found(), MISSING, "no v=spf1 record"),
        (found("v=spf10 -all", "other"), MISSING, "no v=spf1 record"),
        (found("v=spf1 -all", "v=spf1 ~all"), FAIL, "more than one"),
        (found("v=spf1 include -all"), FAIL, "do not parse: include"),
        (found("v=spf1 ip4:not-an-ip -all"), FAIL, "ip4:not-an-ip"),
        (SERVFAIL, FAIL, "DNS lookup failed: SERVFAIL"),
    ],
)
def test_the_domains_spf(answer: DnsAnswer, status: CheckStatus, detail: str) -> None:
    check = check_spf("acme.test", answer)
    assert (check.check, check.name, check.type) == ("spf", "acme.test", "TXT")
    assert check.status is status
    assert detail in check.detail


def test_spf_errors_name_the_terms_that_do_not_parse() -> None:
    assert spf_errors("v=spf1 a:mta.test -all") == []
    assert spf_errors("spf1 -all") == ["it does not start with v=spf1"]
    assert spf_errors("v=spf1 +mx/24 bogus?x -all") == ["bogus?x"]


@pytest.mark.parametrize(
    ("answer", "status", "detail"),
    [
        (found(f"v=DKIM1; k=rsa; p={KEY}"), PASS, ""),
        (found(f"v=DKIM1;k=rsa;p={KEY[:20]} {KEY[20:]}"), PASS, ""),
        (found(f"p={KEY}"), PASS, ""),
        (found(), MISSING, "no DKIM key record"),
        (found("v=spf1 -all"), MISSING, "no DKIM key record"),
        (found("v=DKIM1; k=rsa; p=MIIBother"), FAIL, "not this domain's"),
        (found(f"v=DKIM1; k=ed25519; p={KEY}"), FAIL, "key type"),
        (found(f"v=DKIM1; p={KEY}", f"v=DKIM1; p={KEY}"), FAIL, "more than one"),
        (SERVFAIL, FAIL, "DNS lookup failed"),
    ],
)
def test_the_dkim_key(answer: DnsAnswer, status: CheckStatus, detail: str) -> None:
    check = check_dkim(DKIM, answer)
    assert (check.name, check.expected) == ("pm202701._domainkey.acme.test", DKIM.value)
    assert check.status is status
    assert detail in check.detail


@pytest.mark.parametrize(
    ("answer", "status", "detail"),
    [
        (found("v=DMARC1; p=none; rua=mailto:d@acme.test"), PASS, "policy none"),
        (found("v=DMARC1;p=Reject"), PASS, "policy reject"),
        (found(), MISSING, "no v=DMARC1"),
        (found("v=DMARC1; rua=mailto:d@acme.test"), FAIL, "no p="),
        (found("v=DMARC1; p=block"), FAIL, "p=block"),
        (found("v=DMARC1; p=none", "v=DMARC1; p=reject"), FAIL, "more than one"),
        (SERVFAIL, FAIL, "DNS lookup failed"),
    ],
)
def test_the_dmarc_policy(answer: DnsAnswer, status: CheckStatus, detail: str) -> None:
    check = check_dmarc(DMARC, answer)
    assert check.name == "_dmarc.acme.test"
    assert check.status is status
    assert detail in check.detail


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (found("10 mta.penguin.test."), PASS),
        (found("20 backup.example.", "5 MTA.Penguin.Test."), PASS),
        (found("10 mx.elsewhere.example."), FAIL),
        (found(), MISSING),
        (SERVFAIL, FAIL),
    ],
)
def test_the_return_path_mx(answer: DnsAnswer, status: CheckStatus) -> None:
    check = check_return_path_mx(RP_MX, answer)
    assert (check.name, check.type, check.expected) == ("bounces.acme.test", "MX", RP_MX.value)
    assert check.status is status


@pytest.mark.parametrize(
    ("answer", "status", "detail"),
    [
        (found("v=spf1 a:mta.penguin.test -all"), PASS, ""),
        (found("v=spf1 ip4:192.0.2.1 +a:MTA.penguin.test ~all"), PASS, ""),
        (found("v=spf1 include:_spf.elsewhere.example -all"), FAIL, "a:mta.penguin.test"),
        (found(), MISSING, "no v=spf1"),
        (found("v=spf1 a:mta.penguin.test", "v=spf1 -all"), FAIL, "more than one"),
    ],
)
def test_the_return_path_spf(answer: DnsAnswer, status: CheckStatus, detail: str) -> None:
    check = check_return_path_spf(RP_SPF, answer)
    assert check.status is status
    assert detail in check.detail


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (found("edge.penguin.test."), PASS),
        (found("EDGE.penguin.test"), PASS),
        (found("elsewhere.example."), FAIL),
        (found(), MISSING),
        (SERVFAIL, FAIL),
    ],
)
def test_a_tracking_cname(answer: DnsAnswer, status: CheckStatus) -> None:
    check = check_cname(CNAME, answer)
    assert (check.check, check.name) == ("tracking_cname", "click.acme.test")
    assert check.status is status


def test_the_report_checks_every_record_from_its_answers() -> None:
    expectations = Expectations("acme.test", RECORDS, [CNAME])
    assert expectations.lookups() == [
        ("acme.test", "TXT"),
        ("pm202701._domainkey.acme.test", "TXT"),
        ("bounces.acme.test", "TXT"),
        ("bounces.acme.test", "MX"),
        ("_dmarc.acme.test", "TXT"),
        ("click.acme.test", "CNAME"),
    ]
    answers = {
        ("acme.test", "TXT"): found("v=spf1 -all"),
        ("pm202701._domainkey.acme.test", "TXT"): found(DKIM.value),
        ("bounces.acme.test", "TXT"): found(RP_SPF.value),
        ("bounces.acme.test", "MX"): found(RP_MX.value),
        ("_dmarc.acme.test", "TXT"): found(DMARC.value),
        ("click.acme.test", "CNAME"): found("edge.penguin.test."),
    }

    verified = report(expectations, answers)
    assert [(c.check, c.status) for c in verified.checks] == [
        ("spf", PASS),
        ("dkim", PASS),
        ("return_path_spf", PASS),
        ("return_path_mx", PASS),
        ("dmarc", PASS),
        ("tracking_cname", PASS),
    ]
    assert verified.verified

    del answers[("click.acme.test", "CNAME")]
    partly = report(expectations, answers)
    assert not partly.verified
    assert partly.checks[-1].status is FAIL
    assert partly.checks[-1].detail == "DNS lookup failed: not looked up"
