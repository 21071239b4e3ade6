"""Fuzzing the bounce parser: any input gives a report, quickly and in bounded memory.

Hypothesis feeds :func:`bounce_in.parsing.read_report` (which, unlike
``parse_report``, lets a defect of ours raise) arbitrary bytes and damaged
corpus samples: truncated, bytes flipped, MIME boundaries broken, huge
lines and deep nesting. Time is measured per input against a generous bound
(CPU time, so a busy machine does not make it flaky), memory with tracemalloc.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bounce_in.parsing import parse_report, read_report
from bounce_in.report import BounceReport, ReportKind
from engine.delivery.bounce_classify import BounceClassifier

FUZZ = settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CORPUS = sorted((Path(__file__).parent.parent / "data" / "bounces").glob("*.eml"))
SAMPLES = [CORPUS[i].read_bytes() for i in range(0, len(CORPUS), 7)]
CLASSIFIER = BounceClassifier()
SECONDS_PER_INPUT = 2.0
"""Far above what any input takes (milliseconds); a hang or a quadratic scan exceeds it."""


def parse_within_bound(raw: bytes) -> BounceReport:
    started = time.process_time()
    report = read_report(raw, CLASSIFIER)
    assert time.process_time() - started < SECONDS_PER_INPUT
    assert isinstance(report.kind, ReportKind)
    return report


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 6))):
        how = draw(st.sampled_from(["cut", "flip", "insert", "boundary", "delete"]))
        at = draw(st.integers(0, len(data)))
        if how == "cut":
            del data[at:]
        elif how == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif how == "insert":
            data[at:at] = draw(st.sampled_from(_NASTY))
        elif how == "boundary":
            data = bytearray(bytes(data).replace(b"--", draw(st.sampled_from([b"-", b"", b"---"]))))
        elif how == "delete":
            del data[at : at + draw(st.integers(1, 200))]
    return bytes(data)


_NASTY = [
    b"\r",
    b"\n\n",
    b"\r\n--",
    b"Content-Type: multipart/mixed; boundary=x\n\n--x\n",
    b"Content-Transfer-Encoding: base64\n\n",
    b"=?utf-8?b?////?=",
    b"=?x-unknown?q?=FF?=",
    b"@" * 5000,
    b"a" * 70000,
    b"\n 550 5.1.1" * 2000,
    b"\x00\xff\xfe",
    b"Final-Recipient: rfc822; " + b"x" * 20000 + b"\n",
]


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(raw: bytes) -> None:
    parse_within_bound(raw)


@FUZZ
@given(damaged())
def test_damaged_corpus_samples(raw: bytes) -> None:
    parse_within_bound(raw)


@FUZZ
@given(
    st.lists(
        st.sampled_from(
            [
                b"From: MAILER-DAEMON@x\n",
                b"Subject: Undelivered Mail\n",
                b"Content-Type: multipart/report; boundary=b\n",
                b"Content-Type: message/delivery-status\n",
                b"Content-Type: message/rfc822\n",
                b"Content-Type: message/feedback-report\n",
                b"\n",
                b"--b\n",
                b"--b--\n",
                b"Final-Recipient: rfc822; a@b.example\n",
                b"Action: failed\n",
                b"Status: 5.1.1\n",
                b"<a@b.example>: host x said: 550 5.1.1 no\n",
                b"Feedback-Type: abuse\n",
                b"X-HmXmrOriginalRecipient: c@d.example\n",
            ]
        ),
        max_size=80,
    )
)
def test_shuffled_report_pieces(pieces: list[bytes]) -> None:
    parse_within_bound(b"".join(pieces))


_BOUNCE = b"From: MAILER-DAEMON@mx.example\nSubject: failure notice\n\n"


@pytest.mark.parametrize(
    "raw",
    [
        _BOUNCE + b"a" * 1_000_000,
        _BOUNCE + b"x@y.example " * 90_000,
        _BOUNCE + b"a" * 72 + b"@" * 20_000,
        _BOUNCE + (b"a" * 70 + b"@") * 14_000,
        _BOUNCE + b"\n 550 5.1.1 x@y.example" * 40_000,
        b"Content-Type: multipart/mixed; boundary=q\n\n"
        + b"--q\nContent-Type: message/rfc822\n\n" * 30_000,
        b"Content-Type: text/html\n\n" + b"<style" * 150_000,
        b"Content-Type: text/html\n\n" + b"<" * 1_000_000,
        b"\r" * 1_000_000,
        b"Content-Type: multipart/report; boundary=b\n\n--b\n"
        b"Content-Type: message/delivery-status\n\n"
        + b"Final-Recipient: rfc822; a@b.example\nAction: failed\n\n"
        * 20_000,
    ],
    ids=[
        "one-line",
        "addresses",
        "at-signs",
        "long-locals",
        "replies",
        "nesting",
        "html",
        "brackets",
        "cr",
        "recipients",
    ],
)
def test_huge_inputs_are_bounded(raw: bytes) -> None:
    tracemalloc.start()
    try:
        parse_within_bound(raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024 * 1024


def test_parse_report_never_raises() -> None:
    report = parse_report(b"", CLASSIFIER)
    assert report.kind is ReportKind.OTHER and report.recipients == ()
