import base64
import datetime
import os
import re
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from engine.dkim.keys import (
    DkimKeyError,
    DkimKeyPair,
    DnsRecord,
    default_selector,
    dns_records,
    format_zone_line,
    generate_key,
    load_private_key,
    public_b64,
    render_instructions,
    txt_chunks,
)

GOLDEN = Path(__file__).parent / "golden" / "dns_records.txt"

FIXED_RSA_PUBLIC = (
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAuoyJypRUBQJKfnv6eSHCGrhPsZjbRMnQeTCrUstAKxJ/"
    "nzg5TOIxLVfWyYRaG2exz7xyNx0P9O8Iu702kEoj9FpcG8dUoQ3OOY7yM/lzW+Ntw+KxD9/12lKUtE1517rEJpa9"
    "zPMbqMHuBLlUQZNtJJtSbp1pRwx+UWRGLhZjTsK2JM/P5v75VuR1pXgxKjWclSIEpnKx471/9qM7G5ZghC8OxU48"
    "jxYiOHjJdl8+BrKNzavesZSstKRsFY8G+m45axzh2PnVa3sWWzNBBvpXOWKLb5otrSQX64hEI2atwvTc0OABuPH+"
    "oLmrCf61y2Ope4j2Plu4Bh2b9+E70xCEIQIDAQAB"
)
FIXED_ED25519_PUBLIC = "V2V6f/xdaaV9Ah0VNoopaZ/MIh/UbWLqVEKeqvv/itQ="


@pytest.fixture(scope="module")
def rsa_key() -> DkimKeyPair:
    return generate_key("rsa")


@pytest.fixture(scope="module")
def ed_key() -> DkimKeyPair:
    return generate_key("ed25519")


def test_rsa_key_matches_its_public_value(rsa_key: DkimKeyPair) -> None:
    private = load_private_key(rsa_key.private_pem)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.key_size == 2048
    assert rsa_key.algorithm == "rsa"
    assert rsa_key.private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    der = base64.b64decode(rsa_key.public_b64, validate=True)
    public = serialization.load_der_public_key(der)
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.public_numbers() == private.public_key().public_numbers()
    assert public_b64(private) == rsa_key.public_b64


def test_ed25519_key_matches_its_public_value(ed_key: DkimKeyPair) -> None:
    private = load_private_key(ed_key.private_pem)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    raw = base64.b64decode(ed_key.public_b64, validate=True)
    assert len(raw) == 32
    public = ed25519.Ed25519PublicKey.from_public_bytes(raw)
    signature = private.sign(b"message")
    public.verify(signature, b"message")
    assert public_b64(private) == ed_key.public_b64


def test_rsa_key_signs_and_verifies_with_dkimpy(rsa_key: DkimKeyPair) -> None:
    message = (
        b"From: a@example.com\r\nTo: b@example.net\r\nSubject: hi\r\n"
        b"Date: Mon, 02 Nov 2026 10:00:00 +0000\r\n\r\nHello.\r\n"
    )
    records = dns_records("example.com", "pm202611", rsa_key, "bounces.example.com", "mx.e.net")
    txt = records[0].value.encode()

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"pm202611._domainkey.example.com."
        return txt

    signature = dkim.sign(message, b"pm202611", b"example.com", rsa_key.private_pem)
    assert dkim.verify(signature + message, dnsfunc=dnsfunc)


@pytest.mark.parametrize("bits", [1024, 3072])
def test_rsa_sizes(bits: int) -> None:
    private = load_private_key(generate_key("rsa", bits=bits).private_pem)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.key_size == bits


@pytest.mark.parametrize(
    ("algorithm", "bits"), [("rsa", 512), ("rsa", 1023), ("rsa", 8192), ("dsa", 2048), ("", 2048)]
)
def test_generate_rejects(algorithm: str, bits: int) -> None:
    with pytest.raises(DkimKeyError):
        generate_key(algorithm, bits=bits)


def test_repr_hides_private_key(ed_key: DkimKeyPair) -> None:
    text = repr(ed_key)
    assert "PRIVATE" not in text
    assert ed_key.private_pem.decode() not in text
    assert ed_key.public_b64 in text


@pytest.mark.parametrize(
    "pem",
    [
        b"",
        b"not a key",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    ],
)
def test_load_private_key_rejects(pem: bytes) -> None:
    with pytest.raises(DkimKeyError):
        load_private_key(pem)


@pytest.mark.parametrize(
    ("when", "selector"),
    [
        ("2026-11-02 10:00:00", "pm202611"),
        ("2026-01-01 00:00:00", "pm202601"),
        ("2025-12-31 23:59:59", "pm202512"),
        ("1970-01-01 00:00:00", "pm197001"),
    ],
)
def test_default_selector(when: str, selector: str) -> None:
    now = datetime.datetime.fromisoformat(when).replace(tzinfo=datetime.UTC).timestamp()
    assert default_selector(now) == selector


def _golden_records() -> list[DnsRecord]:
    rsa_records = dns_records(
        "Example.COM.",
        "pm202611",
        ("rsa", FIXED_RSA_PUBLIC),
        "bounces.example.com",
        "mta.example.net",
    )
    ed_record = dns_records(
        "example.com",
        "pm202611e",
        ("ed25519", FIXED_ED25519_PUBLIC),
        "bounces.example.com",
        "mta.example.net",
    )[0]
    return [rsa_records[0], ed_record, *rsa_records[1:]]


def test_golden_instructions() -> None:
    rendered = render_instructions(_golden_records())
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(rendered, encoding="utf-8")
    assert rendered == GOLDEN.read_text(encoding="utf-8")


def test_records_content() -> None:
    dkim_rsa, dkim_ed, spf, mx, dmarc = _golden_records()
    assert (dkim_rsa.name, dkim_rsa.type) == ("pm202611._domainkey.example.com", "TXT")
    assert dkim_rsa.value == f"v=DKIM1; k=rsa; p={FIXED_RSA_PUBLIC}"
    assert dkim_ed.value == f"v=DKIM1; k=ed25519; p={FIXED_ED25519_PUBLIC}"
    assert (spf.name, spf.type, spf.value) == (
        "bounces.example.com",
        "TXT",
        "v=spf1 a:mta.example.net -all",
    )
    assert (mx.name, mx.type, mx.value) == ("bounces.example.com", "MX", "10 mta.example.net.")
    assert (dmarc.name, dmarc.type) == ("_dmarc.example.com", "TXT")
    assert dmarc.value == "v=DMARC1; p=none; rua=mailto:dmarc@example.com; adkim=r; aspf=r"


def test_key_pair_accepted_as_key(ed_key: DkimKeyPair) -> None:
    records = dns_records("example.com", "s1", ed_key, "bounces.example.com", "mta.example.net")
    assert records[0].value == f"v=DKIM1; k=ed25519; p={ed_key.public_b64}"


def _quoted_chunks(line: str) -> list[str]:
    return [
        m.replace('\\"', '"').replace("\\\\", "\\")
        for m in re.findall(r'"((?:[^"\\]|\\.)*)"', line)
    ]


@pytest.mark.parametrize("bits", [2048, 4096])
def test_long_txt_is_split_into_255_octet_strings(bits: int) -> None:
    key = generate_key("rsa", bits=bits)
    record = dns_records("example.com", "s1", key, "bounces.example.com", "mta.example.net")[0]
    line = format_zone_line(record)
    chunks = _quoted_chunks(line)
    assert len(chunks) > 1
    assert all(len(c.encode()) <= 255 for c in chunks)
    assert "".join(chunks) == record.value
    assert line.startswith("s1._domainkey.example.com. 3600 IN TXT ")


@pytest.mark.parametrize(
    ("value", "lengths"),
    [("", [0]), ("a", [1]), ("a" * 255, [255]), ("a" * 256, [255, 1]), ("a" * 600, [255, 255, 90])],
)
def test_txt_chunks(value: str, lengths: list[int]) -> None:
    assert [len(c) for c in txt_chunks(value)] == lengths


def test_txt_quotes_are_escaped() -> None:
    line = format_zone_line(DnsRecord("x.example", "TXT", 'say "hi" \\ bye', "test"))
    assert line == 'x.example. 3600 IN TXT "say \\"hi\\" \\\\ bye"'
    assert _quoted_chunks(line) == ['say "hi" \\ bye']


def test_non_ascii_txt_is_rejected() -> None:
    with pytest.raises(ValueError):
        txt_chunks("é")


@pytest.mark.parametrize(
    ("domain", "selector", "algorithm"),
    [
        ("", "s1", "rsa"),
        ("exa mple.com", "s1", "rsa"),
        ('example.com"', "s1", "rsa"),
        ("example..com", "s1", "rsa"),
        ("-example.com", "s1", "rsa"),
        ("example.com", "", "rsa"),
        ("example.com", "s;1", "rsa"),
        ("example.com", "s1", "dsa"),
    ],
)
def test_dns_records_rejects_bad_input(domain: str, selector: str, algorithm: str) -> None:
    with pytest.raises(ValueError):
        dns_records(domain, selector, (algorithm, "AAAA"), "bounces.example.com", "mta.example.net")
