"""Machines that open and click: mail privacy proxies and link scanners.

Opens fetched by a mail provider's image proxy (Apple Mail Privacy
Protection, Google's image proxy, Yahoo's and Microsoft's) and clicks made
by security scanners (Barracuda, Proofpoint, Mimecast, Microsoft Safe
Links, Google Safe Browsing, ...) are recorded like any other, with
``machine: true`` and the reason, so stats can count people and machines
apart. The signs, each a table below:

- opens: a proxy's user agent, or a proxy's network;
- clicks: a HEAD or prefetch request, no user agent, a scanner's user agent
  or network, a click within ``scanner_seconds`` of the send (scanners
  fetch as the message arrives), or a burst: several links of one message
  clicked within ``burst_seconds`` (``ClickBursts``, a scanner follows every
  link; a person follows one).

The tables are heuristics from the providers' documentation and observed
traffic; a person behind a scanner's network is counted as a machine.
Pure: the time is given; ``ClickBursts`` keeps a bounded window in memory.
"""

from __future__ import annotations

import functools
import ipaddress
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

OPEN_AGENTS: Final = (
    ("googleimageproxy", "google image proxy"),
    ("ggpht.com", "google image proxy"),
    ("yahoomailproxy", "yahoo mail proxy"),
    ("outlookimageproxy", "microsoft image proxy"),
)
"""Lowercase user-agent fragments of mail providers' image proxies."""

APPLE_PROXY_AGENT: Final = "mozilla/5.0"
"""Apple Mail Privacy Protection fetches with a bare ``Mozilla/5.0`` user agent."""


def _networks(*texts: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(text) for text in texts)


OPEN_NETWORKS: Final = (
    (_networks("17.0.0.0/8"), "apple mail privacy protection"),
    (_networks("66.102.0.0/20", "66.249.80.0/20"), "google image proxy"),
    (_networks("40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14"), "microsoft proxy"),
)
"""Networks whose fetches of a pixel are a provider's, not a reader's."""

SCANNER_AGENTS: Final = (
    ("barracuda", "barracuda"),
    ("proofpoint", "proofpoint"),
    ("mimecast", "mimecast"),
    ("safelinks", "microsoft safe links"),
    ("google-safety", "google safe browsing"),
    ("googlebot", "google safe browsing"),
    ("bingpreview", "microsoft link preview"),
    ("python-requests", "script"),
    ("curl/", "script"),
    ("wget/", "script"),
    ("go-http-client", "script"),
    ("headlesschrome", "headless browser"),
)
"""Lowercase user-agent fragments of link scanners and scripts."""

SCANNER_NETWORKS: Final = (
    (_networks("64.235.144.0/20", "209.222.80.0/21"), "barracuda"),
    (_networks("148.163.128.0/19", "67.231.144.0/20", "185.132.180.0/22"), "proofpoint"),
    (_networks("205.139.110.0/24", "207.211.30.0/24", "185.58.84.0/22"), "mimecast"),
    (
        _networks("40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17"),
        "microsoft safe links",
    ),
    (_networks("66.249.64.0/19"), "google safe browsing"),
)
"""Networks of security scanners that follow links in incoming mail."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a hit was a machine's, and why (empty for a person)."""

    machine: bool
    reason: str = ""


HUMAN: Final = Verdict(False)


def open_verdict(user_agent: str, address: str) -> Verdict:
    """Whether a fetch of the open pixel by ``user_agent`` from ``address`` is a proxy's."""
    agent = user_agent.lower()
    for fragment, reason in OPEN_AGENTS:
        if fragment in agent:
            return Verdict(True, reason)
    if agent.strip() == APPLE_PROXY_AGENT:
        return Verdict(True, "apple mail privacy protection")
    reason = _network_reason(OPEN_NETWORKS, address)
    return Verdict(True, reason) if reason else HUMAN


def click_verdict(
    *,
    method: str,
    user_agent: str,
    address: str,
    prefetch: bool,
    seconds_since_send: float,
    scanner_seconds: float,
    burst: bool = False,
) -> Verdict:
    """Whether a click is a scanner's: the first sign found, in the module's order."""
    if method == "HEAD":
        return Verdict(True, "head request")
    if prefetch:
        return Verdict(True, "prefetch")
    agent = user_agent.lower()
    if not agent.strip():
        return Verdict(True, "no user agent")
    for fragment, reason in SCANNER_AGENTS:
        if fragment in agent:
            return Verdict(True, reason)
    reason = _network_reason(SCANNER_NETWORKS, address)
    if reason:
        return Verdict(True, reason)
    if seconds_since_send < scanner_seconds:
        return Verdict(True, "clicked within seconds of the send")
    if burst:
        return Verdict(True, "every link clicked at once")
    return HUMAN


@functools.lru_cache(maxsize=65_536)
def _network_reason(table: tuple[tuple[tuple[Network, ...], str], ...], address: str) -> str:
    """The reason of the first networks of ``table`` holding ``address``; remembered per
    address, as a reader or a proxy comes back many times."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return ""
    for networks, reason in table:
        if any(ip in network for network in networks):
            return reason
    return ""


class ClickBursts:
    """Remembers the links of recent clicks per message to tell a burst.

    A click is part of a burst when, with it, ``links`` or more different
    URLs of one message were clicked within ``seconds``. At most
    ``messages`` messages are remembered (the least recently clicked are
    forgotten first), so memory stays bounded.
    """

    def __init__(self, *, seconds: float = 2.0, links: int = 3, messages: int = 50_000) -> None:
        self._seconds = seconds
        self._links = links
        self._messages = messages
        self._recent: OrderedDict[str, list[tuple[float, str]]] = OrderedDict()

    def clicked(self, message_id: str, url: str, now: float) -> bool:
        """Note a click at ``now``; whether it makes a burst of its message."""
        since = now - self._seconds
        recent = [(at, link) for at, link in self._recent.pop(message_id, ()) if at >= since]
        recent.append((now, url))
        self._recent[message_id] = recent[-4 * self._links :]
        if len(self._recent) > self._messages:
            self._recent.popitem(last=False)
        return len({link for _, link in recent}) >= self._links
