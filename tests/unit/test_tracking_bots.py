"""Bot judgement: privacy proxies' opens and scanners' clicks, told apart from people's."""

from __future__ import annotations

import pytest

from tracking_edge.bots import ClickBursts, Verdict, click_verdict, open_verdict

BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Safari/537.36"
)
PERSON_IP = "203.0.113.9"


@pytest.mark.parametrize(
    ("agent", "address", "expected"),
    [
        (BROWSER, PERSON_IP, Verdict(False)),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile/15E148", PERSON_IP, Verdict(False)),
        (
            "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 "
            "(via ggpht.com GoogleImageProxy)",
            "66.102.8.1",
            Verdict(True, "google image proxy"),
        ),
        ("GoogleImageProxy", PERSON_IP, Verdict(True, "google image proxy")),
        (
            "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
            PERSON_IP,
            Verdict(True, "yahoo mail proxy"),
        ),
        ("Mozilla/5.0", PERSON_IP, Verdict(True, "apple mail privacy protection")),
        (BROWSER, "17.58.1.10", Verdict(True, "apple mail privacy protection")),
        (BROWSER, "66.249.84.3", Verdict(True, "google image proxy")),
        (BROWSER, "40.107.22.1", Verdict(True, "microsoft proxy")),
        (BROWSER, "not an address", Verdict(False)),
        (BROWSER, "2001:db8::1", Verdict(False)),
    ],
)
def test_opens(agent: str, address: str, expected: Verdict) -> None:
    assert open_verdict(agent, address) == expected


@pytest.mark.parametrize(
    ("method", "agent", "address", "prefetch", "since", "burst", "expected"),
    [
        ("GET", BROWSER, PERSON_IP, False, 3600, False, Verdict(False)),
        ("HEAD", BROWSER, PERSON_IP, False, 3600, False, Verdict(True, "head request")),
        ("GET", BROWSER, PERSON_IP, True, 3600, False, Verdict(True, "prefetch")),
        ("GET", "", PERSON_IP, False, 3600, False, Verdict(True, "no user agent")),
        (
            "GET",
            "Mozilla/5.0 Barracuda Sentinel",
            PERSON_IP,
            False,
            3600,
            False,
            Verdict(True, "barracuda"),
        ),
        (
            "GET",
            "Proofpoint URL Defense",
            PERSON_IP,
            False,
            3600,
            False,
            Verdict(True, "proofpoint"),
        ),
        ("GET", "Mimecast-URL-Protect", PERSON_IP, False, 3600, False, Verdict(True, "mimecast")),
        ("GET", "python-requests/2.31", PERSON_IP, False, 3600, False, Verdict(True, "script")),
        ("GET", BROWSER, "148.163.150.2", False, 3600, False, Verdict(True, "proofpoint")),
        ("GET", BROWSER, "40.94.1.1", False, 3600, False, Verdict(False)),
        ("GET", BROWSER, "40.107.1.1", False, 3600, False, Verdict(True, "microsoft safe links")),
        ("GET", BROWSER, "66.249.66.1", False, 3600, False, Verdict(True, "google safe browsing")),
        (
            "GET",
            BROWSER,
            PERSON_IP,
            False,
            4,
            False,
            Verdict(True, "clicked within seconds of the send"),
        ),
        ("GET", BROWSER, PERSON_IP, False, 10, False, Verdict(False)),
        ("GET", BROWSER, PERSON_IP, False, 3600, True, Verdict(True, "every link clicked at once")),
    ],
)
def test_clicks(
    method: str,
    agent: str,
    address: str,
    prefetch: bool,
    since: float,
    burst: bool,
    expected: Verdict,
) -> None:
    verdict = click_verdict(
        method=method,
        user_agent=agent,
        address=address,
        prefetch=prefetch,
        seconds_since_send=since,
        scanner_seconds=10,
        burst=burst,
    )
    assert verdict == expected


def test_every_link_of_a_message_clicked_at_once_is_a_burst() -> None:
    bursts = ClickBursts(seconds=2, links=3)
    assert not bursts.clicked("m1", "https://a.test/1", 100.0)
    assert not bursts.clicked("m1", "https://a.test/1", 100.2)  # the same link again
    assert not bursts.clicked("m1", "https://a.test/2", 100.4)
    assert bursts.clicked("m1", "https://a.test/3", 100.6)
    assert not bursts.clicked("m2", "https://a.test/4", 100.7)  # another message


def test_links_clicked_apart_are_no_burst() -> None:
    bursts = ClickBursts(seconds=2, links=3)
    assert not bursts.clicked("m1", "https://a.test/1", 100.0)
    assert not bursts.clicked("m1", "https://a.test/2", 103.0)
    assert not bursts.clicked("m1", "https://a.test/3", 106.0)


def test_the_burst_window_is_bounded() -> None:
    bursts = ClickBursts(seconds=2, links=2, messages=2)
    bursts.clicked("m1", "https://a.test/1", 100.0)
    bursts.clicked("m2", "https://a.test/1", 100.0)
    bursts.clicked("m3", "https://a.test/1", 100.0)  # m1 is forgotten
    assert not bursts.clicked("m1", "https://a.test/2", 100.1)
    assert bursts.clicked("m3", "https://a.test/2", 100.1)
