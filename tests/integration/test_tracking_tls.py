"""TLS per tracking domain by SNI from a certificate directory, reloaded without restart;
X-Forwarded-For only from trusted proxies."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from engine.runtime.http_serving import HttpService, listening_socket
from engine.smtp.tls_cert import ensure_self_signed
from tracking_edge.certificates import CertificateDirectory, CertificateError


async def echo_client(scope: Any, receive: Any, send: Any) -> None:
    """Answers with the client address the server settled on."""
    body = scope["client"][0].encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def make_cert(directory: Path, name: str, *, pem: bool = False) -> bytes:
    """A self-signed certificate for ``name`` in ``directory``; its PEM bytes."""
    work = directory / ".work"
    work.mkdir(exist_ok=True)
    cert, key = work / f"{name}.crt", work / f"{name}.key"
    cert.unlink(missing_ok=True)
    key.unlink(missing_ok=True)
    ensure_self_signed(cert, key, name)
    if pem:
        (directory / f"{name}.pem").write_bytes(cert.read_bytes() + key.read_bytes())
    else:
        (directory / f"{name}.key").write_bytes(key.read_bytes())
        (directory / f"{name}.crt").write_bytes(cert.read_bytes())
    return cert.read_bytes()


def peer_certificate(port: int, server_name: str | None) -> bytes:
    """The PEM certificate presented for ``server_name`` (None sends no SNI)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return ssl.DER_cert_to_PEM_cert(der).encode()


def verified_get(port: int, server_name: str, ca: Path) -> bytes:
    """A GET over TLS that checks the certificate names ``server_name``."""
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
        return data


def same(pem_a: bytes, pem_b: bytes) -> bool:
    return ssl.PEM_cert_to_DER_cert(pem_a.decode()) == ssl.PEM_cert_to_DER_cert(pem_b.decode())


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[int, CertificateDirectory, Path]]:
    directory = tmp_path / "certs"
    directory.mkdir()
    make_cert(directory, "a.test")
    make_cert(directory, "b.test", pem=True)
    certificates = CertificateDirectory(directory)
    service = HttpService(
        "tracking",
        echo_client,
        listening_socket("127.0.0.1", 0),
        ssl_context=certificates.context(),
        trusted_proxies=[],
    )
    [(_, port)] = await service.start()
    running = asyncio.create_task(service.run())
    yield port, certificates, directory
    await service.stop(1)
    await asyncio.wait_for(running, 10)


async def test_each_domain_gets_its_certificate_by_sni(
    served: tuple[int, CertificateDirectory, Path],
) -> None:
    port, certificates, directory = served
    assert certificates.domains == ["a.test", "b.test"]
    a_cert = (directory / ".work" / "a.test.crt").read_bytes()
    b_cert = (directory / ".work" / "b.test.crt").read_bytes()
    assert same(await asyncio.to_thread(peer_certificate, port, "a.test"), a_cert)
    assert same(await asyncio.to_thread(peer_certificate, port, "B.TEST"), b_cert)
    assert same(await asyncio.to_thread(peer_certificate, port, None), a_cert)  # no SNI
    assert same(await asyncio.to_thread(peer_certificate, port, "other.test"), a_cert)
    response = await asyncio.to_thread(
        verified_get, port, "b.test", directory / ".work" / "b.test.crt"
    )
    assert response.startswith(b"HTTP/1.1 200")


async def test_changed_certificates_are_served_without_restart(
    served: tuple[int, CertificateDirectory, Path],
) -> None:
    port, certificates, directory = served
    old = await asyncio.to_thread(peer_certificate, port, "b.test")
    (directory / "b.test.pem").unlink()
    new = make_cert(directory, "b.test")
    make_cert(directory, "default")
    assert not same(old, new)
    assert certificates.reload()
    assert not certificates.reload()  # nothing changed since
    assert same(await asyncio.to_thread(peer_certificate, port, "b.test"), new)
    default = (directory / ".work" / "default.crt").read_bytes()
    assert same(await asyncio.to_thread(peer_certificate, port, None), default)


async def test_a_broken_file_keeps_the_old_certificate(
    served: tuple[int, CertificateDirectory, Path],
) -> None:
    port, certificates, directory = served
    old = await asyncio.to_thread(peer_certificate, port, "a.test")
    (directory / "a.test.crt").write_text("half a certificate")
    assert certificates.reload()
    assert same(await asyncio.to_thread(peer_certificate, port, "a.test"), old)


def test_a_directory_without_certificates_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CertificateError):
        CertificateDirectory(tmp_path)


def forwarded_get(port: int, forwarded_for: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\n"
            + f"X-Forwarded-For: {forwarded_for}\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize(
    ("trusted", "expected"), [([], b"127.0.0.1"), (["127.0.0.0/8"], b"198.51.100.7")]
)
async def test_x_forwarded_for_only_from_trusted_proxies(
    trusted: list[str], expected: bytes
) -> None:
    service = HttpService(
        "tracking", echo_client, listening_socket("127.0.0.1", 0), trusted_proxies=trusted
    )
    [(_, port)] = await service.start()
    running = asyncio.create_task(service.run())
    try:
        assert await asyncio.to_thread(forwarded_get, port, "198.51.100.7") == expected
    finally:
        await service.stop(1)
        await asyncio.wait_for(running, 10)
