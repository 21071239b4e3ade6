"""A campaign created through the API goes out its own way: from its pool's source
and with links on its tracking domain, while the tenant's other mail keeps the
tenant's pool and default tracking domain (as the receiving sink sees them)."""

from __future__ import annotations

import collections
import re
from pathlib import Path

import httpx

from tests.e2e.conftest import EngineProcess, penguin, provision, start_engine, submit
from tests.e2e.scheduling import DEFAULT_SOURCES, Destinations, ok_recipients

POOLS = (
    DEFAULT_SOURCES
    + """
[sources.a]
address = "127.0.0.2"
ehlo_hostname = "a.penguin.test"

[sources.b]
address = "127.0.0.3"
ehlo_hostname = "b.penguin.test"

[pools.tenant]
sources = ["a"]

[pools.campaign]
sources = ["b"]

[tenants.acme]
pool = "tenant"
"""
)
DEFAULT_TRACKING = "click.acme.test"
CAMPAIGN_TRACKING = "spring.acme.test"


def test_a_campaign_goes_out_from_its_pool_with_its_tracking_domain(
    tmp_path: Path, destinations: Destinations, engine_factory: list[EngineProcess]
) -> None:
    destinations.site("dest.test", "mx.dest.test")
    config = destinations.config(
        tmp_path,
        sources=POOLS,
        scheduler="refresh_seconds = 0.2",
        tracking='scheme = "http"\nrefresh_seconds = 0.2',
    )
    account = provision(config)
    penguin(config, "tracking-domain", "add", "acme", DEFAULT_TRACKING, "--default")
    penguin(config, "tracking-domain", "add", "acme", CAMPAIGN_TRACKING)
    key = penguin(config, "api-key", "create", "acme", "--scope", "send", "--scope", "read")
    engine = start_engine(engine_factory, config)
    api = httpx.Client(
        base_url=f"http://{engine.admin[0]}:{engine.admin[1]}/v1",
        headers={"Authorization": f"Bearer {key['token']}"},
        timeout=30,
    )
    body = {
        "name": "spring",
        "template": {
            "from": f"news@{account.domain}",
            "subject": "Spring, {{ name }}",
            "html": '<p>Hi {{ name }}, <a href="https://shop.example/spring">shop</a></p>',
        },
        "variables": ["name"],
        "pool": "campaign",
        "tracking_domain": CAMPAIGN_TRACKING,
    }
    with api:
        created = api.post("/campaigns", json=body)
        assert created.status_code == 201, created.text
        campaign_id = created.json()["id"]
        campaign = ok_recipients("camp", "dest.test", 4)
        rows = [{"email": r, "variables": {"name": r[:5]}} for r in campaign]
        assert api.post(f"/campaigns/{campaign_id}/recipients", json=rows).json()["added"] == 4
        assert api.post(f"/campaigns/{campaign_id}/start").status_code == 200
    plain = ok_recipients("plain", "dest.test", 3)
    sender = f"news@{account.domain}"
    html = (
        f"From: {sender}\r\nTo: someone@dest.test\r\nSubject: plain\r\n"
        'Content-Type: text/html\r\n\r\n<a href="https://shop.example/plain">shop</a>\r\n'
    )
    submit(engine.submission, account, plain, html.encode())

    destinations.sink.wait_for_count(len(campaign) + len(plain), timeout=30)
    peers: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    hosts: dict[str, set[bytes]] = collections.defaultdict(set)
    for _, rcpt, m in destinations.arrivals("dest.test"):
        group = rcpt[:4]
        peers[group][m.peer[0]] += 1
        hosts[group].update(re.findall(rb'href="https?://([^/"]+)/', m.data.replace(b"=\r\n", b"")))
    assert peers["camp"] == {"127.0.0.3": 4}, "the campaign's pool"
    assert peers["plai"] == {"127.0.0.2": 3}, "the tenant's pool"
    assert hosts["camp"] == {CAMPAIGN_TRACKING.encode()}, "only the campaign's tracking domain"
    assert hosts["plai"] == {DEFAULT_TRACKING.encode()}, "the tenant's default"
    assert engine.terminate() == 0
