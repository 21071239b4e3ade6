"""Link rewriting cost per recipient: a ~30 KB HTML newsletter with ~40 links.

The tracking transform (``tracking_edge.rewriting``) parses a submission
once (its plan) and then, for each recipient, only makes the recipient's
URLs and splices them in. This prints the first-parse cost (the plan) and
the per-recipient cost (tokens included, one HMAC-SHA256 per URL as signed
tokens cost), in µs, for the newsletter as 8bit UTF-8 and as
quoted-printable (its link lines encoded again for each recipient) and
base64 (the whole part encoded again), with and without the text
alternative. The median of ``--runs`` runs of ``--recipients`` recipients.

Run: ``python -m benchmarks.rewrite [--runs 5] [--recipients 2000]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

from engine.model import MessageState, QueuedMessage, TrackingPolicy
from tests.harness.tracking_urls import FakeTrackingUrls
from tracking_edge.rewriting import PlanCache, TrackingTransform
from tracking_edge.rewriting.plan import plan
from tracking_edge.rewriting.transfer import encode_base64, encode_quoted_printable

ROW = (
    '<tr><td class="mcnTextContent" style="padding:9px 18px;color:#202020;'
    'font-family:Helvetica;font-size:16px;line-height:150%;text-align:left;">'
    "<h3>Story {n}: what our customers built this week</h3>"
    "<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua — café, naïve, €{n}.</p>"
    '<a href="https://www.acme.test/stories/{n}?utm_source=newsletter&amp;utm_medium=email'
    '&amp;utm_campaign=weekly" target="_blank" style="color:#007C89;font-weight:normal;'
    'text-decoration:underline;">Read story {n}</a></td></tr>\r\n'
)


def newsletter(links: int = 40) -> str:
    """A table-layout newsletter of about 30 KB with ``links`` tracked links."""
    rows = "".join(ROW.format(n=n) for n in range(links - 2))
    return (
        '<!DOCTYPE html><html><head><meta charset="UTF-8"><style>'
        + "p{margin:10px 0;padding:0}table{border-collapse:collapse}" * 100
        + "</style></head><body><center><table>\r\n"
        + rows
        + '<tr><td><a href="https://www.acme.test/">acme</a> '
        + '<a href="https://twitter.test/acme">twitter</a> '
        + '<a href="{{unsubscribe_url}}">Unsubscribe</a></td></tr>'
        + "</table></center></body></html>\r\n"
    )


def message(markup: str, encoding: str, with_text: bool) -> bytes:
    raw = markup.encode()
    content = {
        "8bit": raw,
        "quoted-printable": encode_quoted_printable(raw),
        "base64": encode_base64(raw),
    }
    html = (
        (
            "Content-Type: text/html; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
        ).encode()
        + content[encoding]
        + b"\r\n"
    )
    head = (
        b"From: News <news@acme.test>\r\nTo: r@x.test\r\nSubject: Weekly\r\nMIME-Version: 1.0\r\n"
    )
    if not with_text:
        return head + html
    text = "".join(f"Story {n}: https://www.acme.test/stories/{n}\r\n" for n in range(38))
    return head + (
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        + text.encode()
        + b"\r\n--b\r\n"
        + html
        + b"--b--\r\n"
    )


def queued(index: int) -> QueuedMessage:
    return QueuedMessage(
        f"0192f3a4b5c6d7e8f90a1b2c3d4e-{index}",
        "0192f3a4b5c6d7e8f90a1b2c3d4e",
        1,
        "weekly:acme@x.test",
        "weekly",
        "news@acme.test",
        f"r{index}@x.test",
        "x.test",
        MessageState.LEASED,
        0.0,
        0.0,
    )


def measure(body: bytes, runs: int, recipients: int) -> tuple[float, float]:
    """(plan µs, per-recipient µs): medians over ``runs``."""
    parses, each = [], []
    messages = [queued(n) for n in range(recipients)]
    policy = TrackingPolicy("click.acme.test")
    for _ in range(runs):
        started = time.perf_counter()
        plan(body)
        parses.append(time.perf_counter() - started)
        transform = TrackingTransform(FakeTrackingUrls(), lambda m: policy, plans=PlanCache())
        transform.body(messages[0], body)
        started = time.perf_counter()
        for queued_message in messages:
            transform.body(queued_message, body)
        each.append((time.perf_counter() - started) / recipients)
    return statistics.median(parses) * 1e6, statistics.median(each) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--recipients", type=int, default=2000)
    args = parser.parse_args()
    markup = newsletter()
    print(f"HTML {len(markup.encode()) / 1024:.1f} KB, {markup.count('<a ')} links\n")
    print("| body | size | plan (first parse), µs | per recipient, µs |")
    print("|---|---:|---:|---:|")
    for encoding in ("8bit", "quoted-printable", "base64"):
        for with_text in (False, True):
            body = message(markup, encoding, with_text)
            parse, each = measure(body, args.runs, args.recipients)
            name = f"HTML {encoding}" + (" + text alternative" if with_text else "")
            print(f"| {name} | {len(body) / 1024:.1f} KB | {parse:,.0f} | {each:,.1f} |")


if __name__ == "__main__":
    main()
