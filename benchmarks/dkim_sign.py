"""DKIM signing throughput on one core: ``engine.dkim.signer`` against dkimpy's ``dkim.sign``.

For RSA-2048 and Ed25519 (RFC 6376, RFC 8463), and 2 KB and 20 KB messages
(a typical set of header fields including List-Unsubscribe per RFC 8058, and
a plain-text CRLF body), it counts the signatures made in a fixed time, five
times, and prints the median (or with ``--stat best`` the best) signatures/s
of each as a Markdown table, with the ratio of ours to dkimpy's and to the
private-key operation alone (the ceiling of any signer on this machine).
Both sign with ``c=relaxed/relaxed`` and the same ``h=`` list; ours uses a
key parsed once (the key cache), dkimpy parses its key argument on every call
and signs RSA in pure Python. dkimpy signs Ed25519 through PyNaCl; without it
that row reads ``n/a``.

The process is pinned to one CPU (``--cpu``, default the last one). Runs are
timed by the wall clock, or with ``--clock cpu`` by this process's CPU time,
which other processes sharing the machine disturb less.

Run: ``python -m benchmarks.dkim_sign [--runs 5] [--seconds 0.5] [--cpu N]
[--clock wall|cpu] [--stat median|best]``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from engine.dkim.keys import DkimKeyPair, generate_key, load_private_key
from engine.dkim.signer import DkimSigner, KeyCache, parse_header_section, signed_fields

DOMAIN = "example.com"
SELECTOR = "bench"
SIZES = (2048, 20480)
ALGORITHMS = ("rsa", "ed25519")
_HEADERS = (
    b"From: Penguin News <news@example.com>\r\n"
    b"To: reader@example.org\r\n"
    b"Subject: Your weekly digest from the colony\r\n"
    b"Date: Mon, 02 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <20261102100000.1234567@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"List-Unsubscribe: <https://t.example.com/u/AbCdEf0123456789>,\r\n"
    b" <mailto:unsubscribe-AbCdEf0123456789@example.com>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"Feedback-ID: c42:t7:weekly:penguin\r\n"
    b"X-Campaign: weekly-2026-45\r\n"
)
_LINE = b"The colony marched to the sea at dawn, and the fish were plentiful again.\r\n"


@dataclass(frozen=True)
class Row:
    algorithm: str
    size: int
    ours: float
    dkimpy: float | None
    ceiling: float


def message(size: int) -> bytes:
    """A message of ``size`` octets: the header fields, a blank line, CRLF text lines."""
    head = _HEADERS + b"\r\n"
    lines, rest = divmod(size - len(head), len(_LINE))
    return head + _LINE * lines + b"x" * max(rest - 2, 0) + b"\r\n"


Clock = Callable[[], float]
CLOCKS: dict[str, Clock] = {"wall": time.perf_counter, "cpu": time.process_time}


STATS: dict[str, Callable[[list[float]], float]] = {"median": statistics.median, "best": max}


def rates(
    signers: dict[str, Callable[[], object]],
    seconds: float,
    runs: int,
    clock: Clock,
    stat: Callable[[list[float]], float] = statistics.median,
) -> dict[str, float]:
    """``stat`` (median) of each signer's signatures/s over ``runs`` rounds of about ``seconds``.

    The signers take turns within each round, so a change in machine load
    falls on all of them alike.
    """
    results: dict[str, list[float]] = {name: [] for name in signers}
    for sign in signers.values():
        sign()
    for _ in range(runs):
        for name, sign in signers.items():
            count = 0
            start = clock()
            deadline = start + seconds
            while True:
                sign()
                count += 1
                now = clock()
                if now >= deadline:
                    break
            results[name].append(count / (now - start))
    return {name: stat(values) for name, values in results.items()}


def ceiling(pair: DkimKeyPair) -> Callable[[], bytes]:
    """The private-key operation alone, on a SHA-256 digest: the most any signer can do."""
    key = load_private_key(pair.private_pem)
    digest = hashlib.sha256(b"").digest()
    if isinstance(key, rsa.RSAPrivateKey):
        pkcs1, prehashed = padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())
        return lambda: key.sign(digest, pkcs1, prehashed)
    return lambda: key.sign(digest)


def ours(pair: DkimKeyPair, msg: bytes) -> Callable[[], bytes]:
    signer = DkimSigner(KeyCache(lambda domain, selector: pair.private_pem))
    now = time.time()
    return lambda: signer.signature_header(msg, DOMAIN, SELECTOR, pair.algorithm, now=now)


def theirs(pair: DkimKeyPair, msg: bytes) -> Callable[[], bytes] | None:
    fields, _ = parse_header_section(msg)
    include, _ = signed_fields(fields)
    key = load_private_key(pair.private_pem)
    if pair.algorithm == "rsa":
        privkey = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        algorithm = b"rsa-sha256"
    else:
        if importlib.util.find_spec("nacl") is None:
            return None
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        privkey = base64.b64encode(raw)
        algorithm = b"ed25519-sha256"

    def sign() -> bytes:
        header: bytes = dkim.sign(
            msg,
            SELECTOR.encode(),
            DOMAIN.encode(),
            privkey,
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=algorithm,
            include_headers=include,
        )
        return header

    return sign


def measure(
    seconds: float, runs: int, clock: Clock, stat: Callable[[list[float]], float]
) -> list[Row]:
    rows = []
    for algorithm in ALGORITHMS:
        pair = generate_key(algorithm)
        for size in SIZES:
            msg = message(size)
            signers: dict[str, Callable[[], object]] = {
                "ceiling": ceiling(pair),
                "ours": ours(pair, msg),
            }
            dkimpy_sign = theirs(pair, msg)
            if dkimpy_sign is not None:
                signers["dkimpy"] = dkimpy_sign
            got = rates(signers, seconds, runs, clock, stat)
            rows.append(Row(algorithm, size, got["ours"], got.get("dkimpy"), got["ceiling"]))
    return rows


def table(rows: list[Row]) -> str:
    names = {"rsa": "RSA-2048", "ed25519": "Ed25519"}
    out = [
        "| algorithm | message | ours (sig/s) | dkimpy `dkim.sign` (sig/s) | ours / dkimpy "
        "| key operation alone (sig/s) | ours / key operation |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cells = [
            names[r.algorithm],
            f"{r.size // 1024} KB",
            f"{r.ours:,.0f}",
            "n/a" if r.dkimpy is None else f"{r.dkimpy:,.0f}",
            "n/a" if r.dkimpy is None else f"{r.ours / r.dkimpy:,.1f}x",
            f"{r.ceiling:,.0f}",
            f"{r.ours / r.ceiling:.0%}",
        ]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="runs per cell; the median is shown")
    parser.add_argument("--seconds", type=float, default=0.5, help="length of one run")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: last)")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="time signatures by wall clock or by this process's CPU time",
    )
    parser.add_argument(
        "--stat",
        choices=sorted(STATS),
        default="median",
        help="report the median run, or the best run (least disturbed by other load)",
    )
    args = parser.parse_args(argv)
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    print(
        f"pinned to CPU {cpu}; {args.clock} clock; "
        f"{args.stat} of {args.runs} runs of {args.seconds} s each"
    )
    print(table(measure(args.seconds, args.runs, CLOCKS[args.clock], STATS[args.stat])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
