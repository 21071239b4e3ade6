"""Link rewriting cost per recipient: a ~30 KB HTML newsletter with ~40 links.

The tracking transform (``tracking_edge.rewriting``) parses a submission
once (its plan) and then, for each recipient, only makes the recipient's
URLs and splices them in. This prints the first-parse cost (the plan) and
the per-recipient cost (tokens included, one HMAC-SHA256 per URL as signed
tokens cost), in µs, for the newsletter as 8bit UTF-8 and as
quoted-printable (its link lines encoded again for each recipient) and
base64 (the whole part encoded again), with and without the text
alternative. The median of ``--runs`` runs of ``--recipients`` recipients.

Then the whole per-copy path of the delivering process, on the newsletter
of ``benchmarks.throughput --tracking-links 30 --sizes 20480`` (20 KB,
quoted-printable, one recipient per submission, so each copy is rewritten
and signed on its own): the copy rewritten with real signed tokens
(``TrackingTokens``), the return path's reference header, the From domain
read, and DKIM RSA-2048 signing, each stage and the whole in CPU µs per
copy (``time.process_time``, which other processes disturb less than the
wall clock), median of ``--runs``.

Run: ``python -m benchmarks.rewrite [--runs 5] [--recipients 2000] [--copies 2000]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks.smtp_load import build_newsletter
from engine.delivery.transform import ReturnPathTransform, TransformChain
from engine.dkim.keys import generate_key, load_private_key
from engine.dkim.signer import DkimSigner
from engine.model import MessageState, QueuedMessage, TrackingPolicy
from engine.return_path import ReturnPathCodec
from engine.submission.acceptance import message_from_domains
from tests.harness.tracking_urls import FakeTrackingUrls
from tracking_edge.rewriting import PlanCache, TrackingTransform
from tracking_edge.rewriting.plan import plan
from tracking_edge.rewriting.transfer import encode_base64, encode_quoted_printable
from tracking_edge.tokens import TrackingTokens

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


SENDER = "news@acme.test"
COPY_SIZE = 20480
COPY_LINKS = 30


def submission_copy(index: int) -> QueuedMessage:
    """The one recipient of submission ``index``, as the throughput benchmark sends it."""
    submission = f"0192f3a4b5c6d7e8f90a1b{index:010x}"
    return QueuedMessage(
        f"{submission}-1",
        submission,
        1,
        "bench@x.test",
        "",
        SENDER,
        f"rcpt{index}@x{index % 50}.test",
        f"x{index % 50}.test",
        MessageState.LEASED,
        1_764_556_800.0 + index,
        1_764_556_800.0,
    )


def measure_copy(runs: int, copies: int) -> dict[str, float]:
    """CPU µs per copy of each stage of the per-copy path, and of the whole, medians."""
    body = _unstuffed(build_newsletter(COPY_SIZE, SENDER, COPY_LINKS))
    tokens = TrackingTokens({"t1": b"k" * 32}, "t1")
    codec = ReturnPathCodec({"r1": b"r" * 32}, "r1")
    policy = TrackingPolicy("click.acme.test")
    key = load_private_key(generate_key("rsa").private_pem)
    signer = DkimSigner()
    messages = [submission_copy(n) for n in range(copies)]
    targets = [
        f"https://shop.bench.test/item/{n}?utm_source=news&utm_campaign=spring"
        for n in range(COPY_LINKS)
    ]

    def tokens_only(message: QueuedMessage) -> object:
        click_url = tokens.click_urls(message, policy.domain)
        for url in targets:
            click_url(url)
        tokens.open_url(message, policy.domain)
        return tokens.unsubscribe_url(message, policy.domain)

    tracking = TrackingTransform(tokens, lambda m: policy, plans=PlanCache())
    chain = TransformChain(tracking, ReturnPathTransform(codec))
    unsigned = chain.body(messages[0], body)

    def sign_only(message: QueuedMessage) -> object:
        return signer.sign(unsigned, "acme.test", "s1", "rsa", key, now=message.due_at)

    def whole(message: QueuedMessage) -> object:
        copy = chain.body(message, body)
        domains = message_from_domains(copy)
        assert domains == ["acme.test"]
        signed = signer.sign(copy, domains[0], "s1", "rsa", key, now=message.due_at)
        return chain.sender(message, domains[0]), signed

    stages = {
        "tokens (32 signed URLs)": tokens_only,
        "rewrite (tokens included)": lambda m: tracking.body(m, body),
        "DKIM sign (RSA-2048, 20 KB)": sign_only,
        "whole copy (rewrite, return path, From, sign)": whole,
    }
    medians: dict[str, float] = {}
    for name, stage in stages.items():
        spent = []
        for _ in range(runs):
            started = time.process_time()
            for message in messages:
                stage(message)
            spent.append((time.process_time() - started) / copies)
        medians[name] = statistics.median(spent) * 1e6
    return medians


def _unstuffed(data: bytes) -> bytes:
    """The message a ``smtp_load`` DATA payload stands for (dot-stuffing and the final
    dot taken off)."""
    data = data.removesuffix(b".\r\n").replace(b"\r\n..", b"\r\n.")
    return data[1:] if data.startswith(b"..") else data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--recipients", type=int, default=2000)
    parser.add_argument("--copies", type=int, default=2000)
    parser.add_argument("--only-copy", action="store_true", help="only the per-copy path")
    args = parser.parse_args()
    if not args.only_copy:
        rewrite_table(args.runs, args.recipients)
    print(
        f"\nPer copy, {COPY_SIZE / 1024:.0f} KB quoted-printable newsletter, {COPY_LINKS} links\n"
    )
    print("| stage | CPU µs per copy |")
    print("|---|---:|")
    for name, each in measure_copy(args.runs, args.copies).items():
        print(f"| {name} | {each:,.1f} |")


def rewrite_table(runs: int, recipients: int) -> None:
    """The plan and per-recipient cost of the ~30 KB newsletter, in each encoding."""
    markup = newsletter()
    print(f"HTML {len(markup.encode()) / 1024:.1f} KB, {markup.count('<a ')} links\n")
    print("| body | size | plan (first parse), µs | per recipient, µs |")
    print("|---|---:|---:|---:|")
    for encoding in ("8bit", "quoted-printable", "base64"):
        for with_text in (False, True):
            body = message(markup, encoding, with_text)
            parse, each = measure(body, runs, recipients)
            name = f"HTML {encoding}" + (" + text alternative" if with_text else "")
            print(f"| {name} | {len(body) / 1024:.1f} KB | {parse:,.0f} | {each:,.1f} |")


if __name__ == "__main__":
    main()
