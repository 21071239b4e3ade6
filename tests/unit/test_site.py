"""site_name: the MX rollup that names a destination's site."""

import pytest

from smtp_out.site import canonical_host, site_name


@pytest.mark.parametrize(
    ("hosts", "site"),
    [
        (["mx.example.com"], "mx.example.com"),
        (["mx.example.com."], "mx.example.com"),
        (["MX.Example.COM."], "mx.example.com"),
        (["mx2.example.com", "mx1.example.com"], "mx1.example.com,mx2.example.com"),
        (["mx1.example.com", "mx2.example.com"], "mx1.example.com,mx2.example.com"),
        (["mx1.example.com", "MX1.example.com.", "mx1.example.com"], "mx1.example.com"),
        (
            [
                "alt1.aspmx.l.google.com.",
                "aspmx.l.google.com.",
                "alt2.aspmx.l.google.com.",
                "alt3.aspmx.l.google.com.",
                "alt4.aspmx.l.google.com.",
            ],
            "alt1.aspmx.l.google.com,alt2.aspmx.l.google.com,alt3.aspmx.l.google.com,"
            "alt4.aspmx.l.google.com,aspmx.l.google.com",
        ),
        (["example.org"], "example.org"),
        ([" mx.example.com "], "mx.example.com"),
        (("b.example", "a.example"), "a.example,b.example"),
        (["mx.example.com", "."], "mx.example.com"),
    ],
)
def test_site_name(hosts: list[str], site: str) -> None:
    assert site_name(hosts) == site


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (["mx1.a.example", "mx2.a.example"], ["mx2.a.example.", "MX1.A.EXAMPLE"]),
        (["mx.shared.example"], ["mx.shared.example", "mx.shared.example."]),
    ],
)
def test_domains_on_the_same_mx_set_share_a_site(first: list[str], second: list[str]) -> None:
    assert site_name(first) == site_name(second)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (["mx1.example.com"], ["mx1.example.com", "mx2.example.com"]),
        (["mx.a.example"], ["mx.b.example"]),
    ],
)
def test_different_mx_sets_are_different_sites(first: list[str], second: list[str]) -> None:
    assert site_name(first) != site_name(second)


@pytest.mark.parametrize("hosts", [[], ["."], [""], [".", " "]])
def test_no_host_name_is_an_error(hosts: list[str]) -> None:
    with pytest.raises(ValueError, match="no MX host name"):
        site_name(hosts)


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("MX.Example.com.", "mx.example.com"),
        ("mx.example.com", "mx.example.com"),
        (".", ""),
    ],
)
def test_canonical_host(name: str, canonical: str) -> None:
    assert canonical_host(name) == canonical
