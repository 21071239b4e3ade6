"""The webhook URL rule and the address rule."""

from __future__ import annotations

import pytest

from engine.webhooks.endpoints import (
    Endpoint,
    InvalidEndpoint,
    allowed_addresses,
    parse_endpoint,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://hooks.example.com/in", Endpoint(True, "hooks.example.com", 443, "/in")),
        ("https://hooks.example.com", Endpoint(True, "hooks.example.com", 443, "/")),
        ("https://h.example:8443/a/b?x=1&y=2", Endpoint(True, "h.example", 8443, "/a/b?x=1&y=2")),
        ("https://8.8.8.8/x", Endpoint(True, "8.8.8.8", 443, "/x")),
        ("https://[2001:4860::8888]/x", Endpoint(True, "2001:4860::8888", 443, "/x")),
    ],
)
def test_https_urls_to_public_hosts_are_endpoints(url: str, expected: Endpoint) -> None:
    assert parse_endpoint(url, allow_http=False, allow_private=False) == expected


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.com/", "https"),
        ("ftp://hooks.example.com/", "https"),
        ("https://user:pw@hooks.example.com/", "user information"),
        ("https://hooks.example.com/#frag", "fragment"),
        ("https:///path", "no host"),
        ("https://bad_host.example/", "host name"),
        ("https://hooks.example.com:99999/", "not a URL"),
        ("https://hooks.example.com/ x", "white space"),
        ("https://hooks.example.com/caf\u00e9", "ASCII"),
        ("https://b\u00fccher.example/", "ASCII"),
        ("https://127.0.0.1/", "not a public address"),
        ("https://10.1.2.3/", "not a public address"),
        ("https://169.254.169.254/latest/meta-data", "not a public address"),
        ("https://100.64.0.1/", "not a public address"),
        ("https://[::1]/", "not a public address"),
        ("https://[fd00::1]/", "not a public address"),
        ("https://[::ffff:127.0.0.1]/", "not a public address"),
        ("https://0.0.0.0/", "not a public address"),
        ("https://h.example/" + "x" * 2048, "longer than"),
    ],
)
def test_refused_urls_say_why(url: str, why: str) -> None:
    with pytest.raises(InvalidEndpoint, match=why):
        parse_endpoint(url, allow_http=False, allow_private=False)


def test_the_operator_may_allow_http_and_private_addresses() -> None:
    endpoint = parse_endpoint("http://127.0.0.1:8080/hook", allow_http=True, allow_private=True)
    assert endpoint == Endpoint(False, "127.0.0.1", 8080, "/hook")
    assert endpoint.host_header == "127.0.0.1:8080"
    with pytest.raises(InvalidEndpoint, match="not a public"):
        parse_endpoint("http://127.0.0.1:8080/hook", allow_http=True, allow_private=False)
    with pytest.raises(InvalidEndpoint, match="https"):
        parse_endpoint("http://127.0.0.1:8080/hook", allow_http=False, allow_private=True)


def test_a_name_resolving_to_any_private_address_is_refused() -> None:
    assert allowed_addresses(["8.8.8.8", "2001:4860::8888"], allow_private=False) == [
        "8.8.8.8",
        "2001:4860::8888",
    ]
    with pytest.raises(InvalidEndpoint, match=r"10\.0\.0\.1"):
        allowed_addresses(["8.8.8.8", "10.0.0.1"], allow_private=False)
    with pytest.raises(InvalidEndpoint, match="no address"):
        allowed_addresses([], allow_private=True)
    assert allowed_addresses(["127.0.0.1"], allow_private=True) == ["127.0.0.1"]
