"""DKIM signing of outgoing messages (RFC 6376), RSA-SHA256 and Ed25519-SHA256 (RFC 8463).

Owns:

* :class:`KeyCache`: (domain, selector) → parsed private key. A key is parsed
  once, from the PEM that the injected loader returns (the loader unseals it,
  see ``engine.sealing``); parsing reuses :func:`engine.dkim.keys.load_private_key`.
  Rotation is a new selector, so old and new keys are usable side by side.
* :class:`DkimSigner`: message bytes in, the ``DKIM-Signature`` header field
  out (:meth:`DkimSigner.signature_header`), or the signed message
  (:meth:`DkimSigner.sign`, the header followed by the message).
* the relaxed canonicalizations (RFC 6376 §3.4.2, §3.4.4) as pure functions
  (:func:`relaxed_header_value`, :func:`relaxed_body`), written with ``bytes``
  operations rather than per-line regular expressions.

The signature: ``c=relaxed/relaxed``; ``h=`` lists the fields of
:data:`SIGNED_FIELDS` present in the message, in message order, then ``from``
once more than From appears, so a From added in transit breaks the signature
(RFC 6376 §8.15). List-Unsubscribe and List-Unsubscribe-Post are signed when
present, as RFC 8058 §4 requires. ``t=`` comes from the ``now`` argument (no
clock is read here); ``x=`` only when asked. ``bh=`` is SHA-256 of the
canonical body (§3.7); ``b=`` signs the canonical signed fields followed by
this DKIM-Signature field with an empty ``b=`` and no final CRLF (§3.7):
RSASSA-PKCS1-v1_5 with SHA-256 for RSA, and for Ed25519 the PureEdDSA
signature of the SHA-256 digest of that input (RFC 8463 §3).

The header section is read by ``engine.header_section``, the reading that
acceptance applies before it answers 250, so whatever was accepted can be
signed; white space before a field's colon (RFC 5322 §4.5) is not part of
its relaxed form (RFC 6376 §3.4.2). A line ends at LF, with one CR before
it removed, as verifiers read it; a body that does not end in a line break
is canonicalized as if it did, as it will be on the wire (RFC 5321
§4.1.1.4), so its last line loses trailing whitespace like every other line.

Everything here is pure: CPU only, no clock, no I/O beyond the injected loader.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils

from engine import header_section
from engine.dkim.keys import ALGORITHMS, DkimKeyError, DkimPrivateKey, load_private_key

SIGNED_FIELDS: Final = frozenset(
    {
        b"from",
        b"to",
        b"cc",
        b"subject",
        b"date",
        b"message-id",
        b"reply-to",
        b"mime-version",
        b"content-type",
        b"content-transfer-encoding",
        b"list-unsubscribe",
        b"list-unsubscribe-post",
        b"list-id",
        b"feedback-id",
        b"in-reply-to",
        b"references",
    }
)
"""Lower-case names of the header fields signed when present."""

LINE_MAX: Final = 78
"""Folding target for the DKIM-Signature field (RFC 5322 §2.1.1)."""

_SIGNATURE_ALGORITHM: Final = {"rsa": b"rsa-sha256", "ed25519": b"ed25519-sha256"}
_CRLF: Final = b"\r\n"
_FOLD: Final = b"\r\n "
_FIELD: Final = b"DKIM-Signature:"
_PKCS1V15: Final = padding.PKCS1v15()
_PREHASHED_SHA256: Final = utils.Prehashed(hashes.SHA256())

KeyLoader = Callable[[str, str], bytes]
"""``(domain, selector)`` → the PKCS#8 PEM private key, unsealed.

For example ``lambda d, s: sealer.unseal(sealed_pem_of(d, s))`` with an
``engine.sealing.Sealer``; it may raise for an unknown key.
"""


class DkimSignError(ValueError):
    """A message cannot be signed: no From field, or a malformed header section."""


class KeyCache:
    """Parsed DKIM private keys by (domain, selector), each loaded and parsed once."""

    def __init__(self, loader: KeyLoader) -> None:
        self._loader = loader
        self._keys: dict[tuple[str, str], DkimPrivateKey] = {}

    def get(self, domain: str, selector: str) -> DkimPrivateKey:
        """The key for ``selector._domainkey.domain``; the loader is called on first use only."""
        cache_key = (domain.lower(), selector.lower())
        key = self._keys.get(cache_key)
        if key is None:
            key = load_private_key(self._loader(domain, selector))
            self._keys[cache_key] = key
        return key

    def forget(self, domain: str, selector: str) -> None:
        """Drop a retired key; a later :meth:`get` loads it again."""
        self._keys.pop((domain.lower(), selector.lower()), None)

    def __len__(self) -> int:
        return len(self._keys)


class DkimSigner:
    """Signs messages with keys given per call or taken from its :class:`KeyCache`."""

    def __init__(self, keys: KeyCache | None = None) -> None:
        self.keys = keys

    def signature_header(
        self,
        message: bytes,
        domain: str,
        selector: str,
        algorithm: str,
        private_key: DkimPrivateKey | None = None,
        *,
        now: float,
        expire_after: int | None = None,
    ) -> bytes:
        """The folded ``DKIM-Signature: ...\\r\\n`` field to put before ``message``.

        ``algorithm`` is ``"rsa"`` or ``"ed25519"`` and must match the key;
        without ``private_key`` the key comes from the cache. ``t=`` is
        ``int(now)``; ``expire_after`` seconds, if given, sets ``x=``.
        """
        key = self._key(domain, selector, algorithm, private_key)
        if not (domain.isascii() and selector.isascii()):
            raise DkimSignError("d= and s= must be ASCII (use A-labels for IDN domains)")
        fields, body_start = parse_header_section(message)
        names, chosen = signed_fields(fields)
        body_hash = hashlib.sha256(relaxed_body_view(message, body_start)).digest()
        tags = _tags(algorithm, domain, selector, int(now), expire_after, names, body_hash)
        unsigned = _fold([*tags, (b" ", b"b=")])
        header_hash = hashlib.sha256(relaxed_fields(chosen))
        header_hash.update(b"dkim-signature:" + relaxed_header_value(unsigned[len(_FIELD) :]))
        signature = base64.b64encode(_sign(key, header_hash.digest()))
        return unsigned + _fold_b64(signature, len(unsigned) - unsigned.rfind(b"\n") - 1)

    def sign(
        self,
        message: bytes,
        domain: str,
        selector: str,
        algorithm: str,
        private_key: DkimPrivateKey | None = None,
        *,
        now: float,
        expire_after: int | None = None,
    ) -> bytes:
        """``message`` with its DKIM-Signature field prepended."""
        header = self.signature_header(
            message, domain, selector, algorithm, private_key, now=now, expire_after=expire_after
        )
        return header + message

    def _key(
        self, domain: str, selector: str, algorithm: str, private_key: DkimPrivateKey | None
    ) -> DkimPrivateKey:
        if algorithm not in ALGORITHMS:
            raise DkimKeyError(
                f"unknown DKIM algorithm {algorithm!r}; expected one of {ALGORITHMS}"
            )
        if private_key is None:
            if self.keys is None:
                raise DkimKeyError("no private key given and the signer has no key cache")
            private_key = self.keys.get(domain, selector)
        expected = rsa.RSAPrivateKey if algorithm == "rsa" else ed25519.Ed25519PrivateKey
        if not isinstance(private_key, expected):
            raise DkimKeyError(
                f"DKIM key for {selector}._domainkey.{domain} is not an {algorithm} key"
            )
        return private_key


def parse_header_section(message: bytes) -> tuple[list[tuple[bytes, bytes]], int]:
    """The header fields as (lower-case name, unfolded value), and where the body starts.

    Read by :func:`engine.header_section.parse_header_section`, as acceptance
    reads them; a line that is part of no field raises :class:`DkimSignError`.
    """
    try:
        section = header_section.parse_header_section(message)
    except header_section.MalformedHeader as exc:
        raise DkimSignError(f"malformed header section: {exc}") from exc
    return section.unfolded(), section.body_start


def signed_fields(
    fields: list[tuple[bytes, bytes]],
) -> tuple[list[bytes], list[tuple[bytes, bytes]]]:
    """The ``h=`` list, and the fields it selects in the order they are hashed.

    ``h=`` names the fields of :data:`SIGNED_FIELDS` present, in message order,
    then ``from`` once more (over-signing, RFC 6376 §8.15).
    """
    chosen = [field for field in fields if field[0] in SIGNED_FIELDS]
    names = [name for name, _ in chosen]
    if b"from" not in names:
        raise DkimSignError("message has no From header field (RFC 6376 §5.4)")
    names.append(b"from")
    if len(set(names)) != len(chosen):
        chosen = select_fields(chosen, names)
    return names, chosen


def select_fields(
    fields: list[tuple[bytes, bytes]], names: Iterable[bytes]
) -> list[tuple[bytes, bytes]]:
    """The fields that ``h=`` names, each instance taken from the bottom up (RFC 6376 §5.4.2).

    A name with no instance left contributes nothing (it is over-signed).
    """
    remaining: dict[bytes, list[int]] = {}
    for index, (name, _) in enumerate(fields):
        remaining.setdefault(name, []).append(index)
    chosen: list[tuple[bytes, bytes]] = []
    for name in names:
        indexes = remaining.get(name)
        if indexes:
            chosen.append(fields[indexes.pop()])
    return chosen


def relaxed_fields(fields: Iterable[tuple[bytes, bytes]]) -> bytes:
    """``name:value CRLF`` for each (lower-case name, unfolded value), relaxed (RFC 6376 §3.4.2).

    Trimming each value before compressing the whole block equals compressing
    then trimming each value: names hold no WSP and CRLF separates the lines.
    """
    block = b"".join([b"%s:%s\r\n" % (name, value.strip()) for name, value in fields])
    return _compress_wsp(block) if b"\t" in block or b"  " in block else block


def relaxed_header_value(value: bytes) -> bytes:
    """Relaxed header value (RFC 6376 §3.4.2): unfolded, WSP runs to one SP, trimmed."""
    return _compress_wsp(value.replace(_CRLF, b"").replace(b"\n", b"")).strip()


def relaxed_body(body: bytes) -> bytes:
    """The relaxed canonical form of a whole body (RFC 6376 §3.4.4)."""
    return bytes(relaxed_body_view(body, 0))


def relaxed_body_view(message: bytes, start: int) -> memoryview:
    """The relaxed canonical body of ``message[start:]`` (RFC 6376 §3.4.4).

    A body that needs no rewriting (CRLF line ends, no tab, no double space,
    no space before a line end) comes back as a view into ``message``, uncopied.
    """
    ends_in_newline = message.endswith(b"\n") and len(message) > start
    if ends_in_newline and not _needs_rewrite(message, start):
        body: bytes = message
    else:
        body = message[start:]
        if body and not ends_in_newline:
            body += _CRLF
        start = 0
        body = _rewrite(body)
    end = len(body)
    while end > start and body.endswith(_CRLF, start, end):
        end -= 2
    return memoryview(body)[start : end + 2 if end > start else start]


def _needs_rewrite(message: bytes, start: int) -> bool:
    return (
        message.find(b"\t", start) >= 0
        or message.find(b"  ", start) >= 0
        or message.find(b" \r\n", start) >= 0
        or message.count(b"\n", start) != message.count(_CRLF, start)
    )


def _rewrite(body: bytes) -> bytes:
    """Line ends to CRLF, WSP runs to one SP, no WSP before a line end."""
    body = body.replace(_CRLF, b"\n").replace(b"\n", _CRLF)
    return _compress_wsp(body).replace(b" \r\n", _CRLF)


def _compress_wsp(data: bytes) -> bytes:
    data = data.replace(b"\t", b" ")
    while b"  " in data:
        data = data.replace(b"  ", b" ")
    return data


def _tags(
    algorithm: str,
    domain: str,
    selector: str,
    timestamp: int,
    expire_after: int | None,
    names: list[bytes],
    body_hash: bytes,
) -> list[tuple[bytes, bytes]]:
    """The signature's tags as (joiner, atom) pairs for :func:`_fold`, up to ``bh=``."""
    tags = [
        (b" ", b"v=1;"),
        (b" ", b"a=%s;" % _SIGNATURE_ALGORITHM[algorithm]),
        (b" ", b"c=relaxed/relaxed;"),
        (b" ", b"d=%s;" % domain.encode("ascii")),
        (b" ", b"s=%s;" % selector.encode("ascii")),
        (b" ", b"t=%d;" % timestamp),
    ]
    if expire_after is not None:
        tags.append((b" ", b"x=%d;" % (timestamp + expire_after)))
    h = [b"%s:" % name for name in names]
    h[0] = b"h=" + h[0]
    h[-1] = h[-1][:-1] + b";"
    tags.extend((b" " if i == 0 else b"", atom) for i, atom in enumerate(h))
    tags.append((b" ", b"bh=%s;" % base64.b64encode(body_hash)))
    return tags


def _fold_b64(encoded: bytes, column: int) -> bytes:
    """``encoded`` folded to lines of at most LINE_MAX octets from ``column`` on, then CRLF.

    FWS may appear anywhere in a ``b=`` value (RFC 6376 §3.5).
    """
    first = max(LINE_MAX - column, 0)
    width = LINE_MAX - 1
    lines = [encoded[:first]]
    lines.extend(encoded[i : i + width] for i in range(first, len(encoded), width))
    return _FOLD.join(lines) + _CRLF


def _fold(atoms: Iterable[tuple[bytes, bytes]], start: bytes = _FIELD) -> bytes:
    """Append atoms to ``start``, each after its joiner, or after a fold when the line is full."""
    out = [start]
    line = len(start) - start.rfind(b"\n") - 1
    for joiner, atom in atoms:
        if line + len(joiner) + len(atom) > LINE_MAX:
            out.append(_FOLD)
            line = 1
        else:
            out.append(joiner)
            line += len(joiner)
        out.append(atom)
        line += len(atom)
    return b"".join(out)


def _sign(key: DkimPrivateKey, header_digest: bytes) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(header_digest, _PKCS1V15, _PREHASHED_SHA256)
    return key.sign(header_digest)
