"""The site of a destination: its MX rollup.

A *site* (KumoMTA's "site name", https://docs.kumomta.com/reference/queues/)
is the set of MX hosts a destination domain
delivers to, named canonically so that every domain hosted on the same MX set
shares one site, and with it one connection limit and one rate (the ready
queue is ``(source IP, site)``).

In: the MX host names of a domain as published (any case, with or without the
trailing root dot), or the domain itself when it has no MX records and the
implicit MX of RFC 5321 §5.1 applies.
Out: the site name, the host names lower-cased, without trailing dots,
de-duplicated, sorted and joined with ``","``.

Invariants: pure; never empty (no host name at all is a ``ValueError``); the
result does not depend on the order, case or repetition of the input names
nor on preferences, so a reshuffled or re-prioritised MX set keeps its site;
an implicit-MX domain's site is its own name.
"""

from __future__ import annotations

from collections.abc import Sequence

SEPARATOR = ","


def canonical_host(name: str) -> str:
    """A host name lower-cased and without its trailing root dot."""
    return name.strip().rstrip(".").lower()


def site_name(hosts: Sequence[str]) -> str:
    """The site of a destination whose MX hosts are ``hosts``."""
    names = {canonical_host(host) for host in hosts}
    names.discard("")
    if not names:
        raise ValueError(f"no MX host name in {list(hosts)!r}")
    return SEPARATOR.join(sorted(names))


def site_hosts(site: str) -> list[str]:
    """The MX host names of ``site`` (the inverse of ``site_name``)."""
    return site.split(SEPARATOR)
