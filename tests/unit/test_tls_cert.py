import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from engine.smtp.tls_cert import TlsCertError, ensure_self_signed, server_context


def _paths(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"


def _load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str) -> str | None:
    """Run a TLS handshake entirely in memory; return the negotiated version."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client_obj = client.wrap_bio(c_in, c_out, server_hostname=hostname)
    server_obj = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, obj in (("client", client_obj), ("server", server_obj)):
            if not done[name]:
                try:
                    obj.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return client_obj.version()
    raise AssertionError("handshake did not finish")


def test_creates_key_and_cert(tmp_path: Path) -> None:
    cert_path, key_path = _paths(tmp_path)
    ensure_self_signed(cert_path, key_path, "mta.example.net")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_path.stat().st_mode) == 0o644
    assert sorted(p.name for p in cert_path.parent.iterdir()) == ["cert.pem", "key.pem"]

    cert = _load_cert(cert_path)
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert cert.public_key() == key.public_key()
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mta.example.net"]
    assert san.get_values_for_type(x509.IPAddress) == []
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 3649 <= lifetime.days <= 3651


def test_localhost_also_gets_loopback_ip(tmp_path: Path) -> None:
    cert_path, key_path = _paths(tmp_path)
    ensure_self_signed(cert_path, key_path, "localhost")
    san = _load_cert(cert_path).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.value.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]


def test_ip_hostname_gets_ip_san(tmp_path: Path) -> None:
    cert_path, key_path = _paths(tmp_path)
    ensure_self_signed(cert_path, key_path, "192.0.2.7")
    san = _load_cert(cert_path).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.0.2.7")]


def test_existing_files_are_kept(tmp_path: Path) -> None:
    cert_path, key_path = _paths(tmp_path)
    ensure_self_signed(cert_path, key_path, "localhost")
    before = cert_path.read_bytes(), key_path.read_bytes()
    ensure_self_signed(cert_path, key_path, "other.example")
    assert (cert_path.read_bytes(), key_path.read_bytes()) == before


@pytest.mark.parametrize("missing", ["cert", "key"])
def test_one_file_missing_is_an_error(tmp_path: Path, missing: str) -> None:
    cert_path, key_path = _paths(tmp_path)
    ensure_self_signed(cert_path, key_path, "localhost")
    (cert_path if missing == "cert" else key_path).unlink()
    with pytest.raises(TlsCertError, match="provide both or neither"):
        ensure_self_signed(cert_path, key_path, "localhost")


def test_server_context_completes_a_handshake(tmp_path: Path) -> None:
    cert_path, key_path = _paths(tmp_path)
    ensure_self_signed(cert_path, key_path, "localhost")
    server = server_context(cert_path, key_path)
    assert server.minimum_version == ssl.TLSVersion.TLSv1_2
    client = ssl.create_default_context(cafile=str(cert_path))
    assert _handshake(server, client, "localhost") in {"TLSv1.2", "TLSv1.3"}


def test_server_context_speaks_tls_1_2(tmp_path: Path) -> None:
    cert_path, key_path = _paths(tmp_path)
    ensure_self_signed(cert_path, key_path, "localhost")
    server = server_context(cert_path, key_path)
    client = ssl.create_default_context(cafile=str(cert_path))
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    assert _handshake(server, client, "localhost") == "TLSv1.2"


def test_client_rejects_certificate_for_other_name(tmp_path: Path) -> None:
    cert_path, key_path = _paths(tmp_path)
    ensure_self_signed(cert_path, key_path, "mta.example.net")
    server = server_context(cert_path, key_path)
    client = ssl.create_default_context(cafile=str(cert_path))
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server, client, "other.example.net")


def test_a_host_name_longer_than_a_common_name_is_in_the_alt_names(tmp_path: Path) -> None:
    hostname = "a" * 60 + ".example.com"
    cert_path, key_path = _paths(tmp_path)
    ensure_self_signed(cert_path, key_path, hostname)
    cert = _load_cert(cert_path)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [hostname]
    assert cert.subject.rfc4514_string() == "CN=" + "a" * 60
