"""Plain record lookups for domain verification: ``engine.provisioning.verification``'s
``DnsLookup`` on dnspython.

In: a name and a type (TXT, MX, CNAME). Out: a ``DnsAnswer``: TXT records
as their character-strings joined, MX as ``preference exchange.``, CNAME as
``target.``; NXDOMAIN and no data as no values; SERVFAIL, timeouts and
network errors as a ``failure``. Uses the resolver delivery uses
(``smtp_out.dns.make_resolver``, the ``[dns]`` settings), without a cache:
an operator verifying a record just published wants today's answer.
dnspython exceptions never leave this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.MX import MX
from dns.rdtypes.ANY.TXT import TXT

from engine.provisioning.verification import DnsAnswer
from smtp_out.dns import make_resolver


class RecordLookup:
    """``DnsLookup`` through ``nameservers`` (the system's when empty)."""

    def __init__(self, nameservers: Sequence[tuple[str, int]], timeout_seconds: float) -> None:
        self._resolver = make_resolver(nameservers, timeout_seconds)
        self._timeout = timeout_seconds

    async def lookup(self, name: str, rdtype: str) -> DnsAnswer:
        try:
            answer = await self._resolver.resolve(
                dns.name.from_text(name), dns.rdatatype.from_text(rdtype), search=False
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return DnsAnswer()
        except dns.exception.Timeout:
            return DnsAnswer(failure=f"no answer within {self._timeout:g} s")
        except dns.exception.DNSException as exc:
            return DnsAnswer(failure=str(exc))
        except OSError as exc:
            return DnsAnswer(failure=f"network error: {exc}")
        return DnsAnswer(tuple(_text(rdata) for rdata in answer.rrset or ()))


def _text(rdata: object) -> str:
    if isinstance(rdata, TXT):
        return b"".join(rdata.strings).decode("utf-8", "replace")
    if isinstance(rdata, MX):
        return f"{rdata.preference} {rdata.exchange.to_text().lower()}"
    if isinstance(rdata, CNAME):
        return rdata.target.to_text().lower()
    return str(rdata)
