"""The provisioning service on a real SQLite store: what it stores, returns and refuses."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from config import Settings
from config.schema import BounceSettings, EngineSettings
from engine.clock import FakeClock
from engine.delivery.transform import ReturnPathTransform
from engine.dkim.keys import load_private_key, public_b64
from engine.model import MessageState, Suppression
from engine.provisioning import (
    AlreadyExists,
    DkimKeySpec,
    Invalid,
    Provisioning,
    SecretUnusable,
    StoreFailed,
    TenantHasMail,
    Unknown,
)
from engine.return_path import codec_from_settings
from engine.sealing import Sealer, load_or_create_secret
from engine.store import Store, open_store
from engine.submission.passwords import verify_password
from tests.integration.test_store_contract import message, settle_claimed, shunt_all, submission

NOW = 1_800_000_000.0  # 2027-01-15
ED25519 = DkimKeySpec("ed25519")


@dataclasses.dataclass
class World:
    store: Store
    provisioning: Provisioning
    data_dir: Path

    def sealer(self) -> Sealer:
        return Sealer(load_or_create_secret(self.data_dir / "secret.key"))


def settings_in(data_dir: Path, secret_file: str = "") -> Settings:
    engine = EngineSettings(
        data_dir=str(data_dir), hostname="mta.penguin.test", secret_file=secret_file
    )
    return dataclasses.replace(Settings(), engine=engine)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    data = tmp_path / "var"
    settings = settings_in(data)
    store = open_store(settings.database_url())
    await store.migrate()
    try:
        yield World(store, Provisioning(store, settings, nodeid="n1", clock=FakeClock(NOW)), data)
    finally:
        await store.close()


async def test_tenants_are_created_listed_and_unique(world: World) -> None:
    p = world.provisioning
    acme = await p.create_tenant("acme")
    assert (acme.name, acme.created_at) == ("acme", NOW)
    beta = await p.create_tenant("beta")
    assert await p.list_tenants() == [acme, beta]
    assert await p.tenant("beta") == beta
    with pytest.raises(AlreadyExists, match="tenant 'acme' exists"):
        await p.create_tenant("acme")
    with pytest.raises(Invalid):
        await p.create_tenant("  ")
    with pytest.raises(Unknown, match="no tenant named 'ghost'"):
        await p.tenant("ghost")


async def test_a_domain_gets_a_sealed_key_and_its_dns_records(world: World) -> None:
    p = world.provisioning
    acme = await p.create_tenant("acme")
    added = await p.add_domain("acme", "News.Acme.Test.", DkimKeySpec("rsa", bits=1024))
    domain = added.domain
    assert (domain.tenant_id, domain.name, domain.selector) == (
        acme.id,
        "news.acme.test",
        "pm202701",
    )
    assert domain.algorithm == "rsa"
    private = load_private_key(world.sealer().unseal(domain.private_key_sealed))
    assert public_b64(private) == domain.public_key_b64
    assert await p.domain("news.acme.test") == domain
    assert await p.list_domains("acme") == [domain]

    published = {(r.name, r.type): r.value for r in added.dns_records}
    dkim = published[("pm202701._domainkey.news.acme.test", "TXT")]
    assert dkim == f"v=DKIM1; k=rsa; p={domain.public_key_b64}"
    assert published[("bounces.news.acme.test", "MX")] == "10 mta.penguin.test."
    assert (await p.domain_records("NEWS.acme.test")).dns_records == added.dns_records


@pytest.mark.parametrize("prefix", ["bounces", "rp"])
async def test_the_records_cover_the_domain_of_the_return_path_that_is_sent(
    world: World, prefix: str
) -> None:
    """SPF and MX are published for the domain delivery puts in MAIL FROM."""
    settings = settings_in(world.data_dir)
    settings = dataclasses.replace(settings, bounce=BounceSettings(return_path_prefix=prefix))
    p = Provisioning(world.store, settings, nodeid="n1", clock=FakeClock(NOW))
    acme = await p.create_tenant("acme")
    added = await p.add_domain("acme", "news.acme.test", ED25519)
    transform = ReturnPathTransform(codec_from_settings(settings, bytes(32)))
    queued = dataclasses.replace(message("51", 1, acme.id), sender="a@news.acme.test")
    mail_from = transform.sender(queued, added.domain.name)
    return_path = mail_from.partition("@")[2]
    assert return_path == f"{prefix}.news.acme.test"
    published = {(r.name, r.type): r.value for r in added.dns_records}
    assert published[(return_path, "TXT")] == "v=spf1 a:mta.penguin.test -all"
    assert published[(return_path, "MX")] == "10 mta.penguin.test."
    assert (await p.domain_records("news.acme.test")).dns_records == added.dns_records


@pytest.mark.parametrize(
    ("domain", "key", "problem"),
    [
        ("not a domain", ED25519, "not a valid DNS name"),
        ("-bad.example", ED25519, "not a valid DNS name"),
        ("ok.example", DkimKeySpec("ed25519", selector="bad selector"), "not a valid DNS name"),
        ("ok.example", DkimKeySpec("rsa", bits=512), "RSA key size must be 1024..4096"),
        ("ok.example", DkimKeySpec("dsa"), "unknown DKIM algorithm"),
    ],
)
async def test_a_domain_that_cannot_be_published_is_refused(
    world: World, domain: str, key: DkimKeySpec, problem: str
) -> None:
    p = world.provisioning
    await p.create_tenant("acme")
    with pytest.raises(Invalid, match=problem):
        await p.add_domain("acme", domain, key)
    assert await p.list_domains("acme") == []


async def test_domains_are_unique_and_belong_to_a_known_tenant(world: World) -> None:
    p = world.provisioning
    await p.create_tenant("acme")
    await p.create_tenant("beta")
    await p.add_domain("acme", "acme.test", ED25519)
    with pytest.raises(AlreadyExists, match=re.escape("domain 'acme.test' exists")):
        await p.add_domain("beta", "ACME.test", ED25519)
    with pytest.raises(Unknown, match="no tenant named 'ghost'"):
        await p.add_domain("ghost", "ghost.test", ED25519)
    with pytest.raises(Unknown, match="no tenant named 'ghost'"):
        await p.list_domains("ghost")


async def test_rotation_replaces_the_key_under_a_new_selector(world: World) -> None:
    p = world.provisioning
    await p.create_tenant("acme")
    before = (await p.add_domain("acme", "acme.test", ED25519)).domain
    with pytest.raises(Invalid, match="selector 'pm202701' is in use"):
        await p.rotate_domain("acme.test", ED25519)

    rotated = await p.rotate_domain("acme.test", DkimKeySpec("rsa", 1024, selector="s2"))
    assert rotated.previous_selector == "pm202701"
    assert (rotated.domain.selector, rotated.domain.algorithm) == ("s2", "rsa")
    assert rotated.domain.public_key_b64 != before.public_key_b64
    stored = await p.domain("acme.test")
    assert (stored.selector, stored.public_key_b64) == ("s2", rotated.domain.public_key_b64)
    assert rotated.dns_records[0].name == "s2._domainkey.acme.test"
    with pytest.raises(Unknown, match=re.escape("no sending domain 'ghost.test'")):
        await p.rotate_domain("ghost.test", ED25519)


async def test_a_removed_domain_is_gone(world: World) -> None:
    p = world.provisioning
    await p.create_tenant("acme")
    added = (await p.add_domain("acme", "acme.test", ED25519)).domain
    kept = (await p.add_domain("acme", "kept.test", ED25519)).domain
    assert await p.remove_domain("Acme.Test") == added
    assert await p.list_domains("acme") == [kept]
    with pytest.raises(Unknown, match=re.escape("no sending domain 'acme.test'")):
        await p.remove_domain("acme.test")


async def test_smtp_users_get_a_password_shown_once_and_stored_hashed(world: World) -> None:
    p = world.provisioning
    acme = await p.create_tenant("Acme Corp")
    made = await p.create_smtp_user("Acme Corp")
    assert made.tenant == "Acme Corp" and made.username.startswith("acme-corp-")
    assert made.password not in repr(made)
    [listed] = await p.list_smtp_users("Acme Corp")
    assert (listed.tenant_id, listed.username, listed.created_at) == (acme.id, made.username, NOW)
    assert made.password not in listed.password_hash
    assert verify_password(made.password, listed.password_hash)

    other = await p.create_smtp_user("Acme Corp")
    await p.remove_smtp_user(made.username)
    assert [u.username for u in await p.list_smtp_users("Acme Corp")] == [other.username]
    with pytest.raises(Unknown, match=re.escape(f"no SMTP user '{made.username}'")):
        await p.remove_smtp_user(made.username)
    with pytest.raises(Unknown):
        await p.create_smtp_user("ghost")


async def test_suppressions_are_added_listed_by_page_and_removed(world: World) -> None:
    p = world.provisioning
    acme = await p.create_tenant("acme")
    for address in ("Carol@Example.com", "alice@example.com", "bob@example.com"):
        await p.add_suppression("acme", address, "manual")
    again = await p.add_suppression("acme", "ALICE@example.com", "complaint")
    assert again == Suppression(acme.id, "alice@example.com", "complaint", NOW)

    first = await p.list_suppressions("acme", limit=2)
    assert [s.address for s in first] == ["alice@example.com", "bob@example.com"]
    rest = await p.list_suppressions("acme", after="BOB@example.com", limit=2)
    assert [(s.address, s.reason) for s in rest] == [("carol@example.com", "manual")]

    await p.remove_suppression("acme", "Bob@Example.com")
    assert [s.address for s in await p.list_suppressions("acme")] == [
        "alice@example.com",
        "carol@example.com",
    ]
    with pytest.raises(
        Unknown, match=re.escape("'bob@example.com' is not suppressed for tenant 'acme'")
    ):
        await p.remove_suppression("acme", "bob@example.com")
    with pytest.raises(Invalid):
        await p.add_suppression("acme", " ", "manual")


async def test_a_csv_is_imported_in_batches_with_its_counts(world: World) -> None:
    p = world.provisioning
    acme = await p.create_tenant("acme")
    await p.create_tenant("beta")
    await p.add_suppression("acme", "old@example.com", "bounce")
    await p.add_suppression("beta", "ann@example.com", "complaint")
    lines = [
        "address,reason\n",
        "Ann@Example.com,bounced elsewhere\n",
        "old@example.com,x\n",
        "bad address,x\n",
        "ann@example.com,again\n",
        "bob@example.com\n",
        "carl@example.com,\n",
        "@nope,x\n",
    ]

    done = await p.import_suppressions("acme", iter(lines), batch=2, keep_invalid=1)

    assert (done.added, done.duplicate, done.invalid) == (3, 2, 2)
    assert [(r.line, r.text) for r in done.invalid_rows] == [(4, "bad address,x")]
    assert await p.list_suppressions("acme") == [
        Suppression(acme.id, "ann@example.com", "bounced elsewhere", NOW),
        Suppression(acme.id, "bob@example.com", "import", NOW),
        Suppression(acme.id, "carl@example.com", "import", NOW),
        Suppression(acme.id, "old@example.com", "bounce", NOW),
    ]
    assert len(await p.list_suppressions("beta")) == 1
    with pytest.raises(Invalid, match="no 'address' column"):
        await p.import_suppressions("acme", iter(["who\n", "ann@example.com\n"]))
    with pytest.raises(Unknown):
        await p.import_suppressions("ghost", iter(lines))


async def test_suppressions_are_added_together_or_not_at_all(world: World) -> None:
    p = world.provisioning
    acme = await p.create_tenant("acme")
    await p.add_suppression("acme", "old@example.com", "bounce")
    with pytest.raises(Invalid, match=re.escape("[1] 'nope': ")):
        await p.add_suppressions("acme", [("ann@example.com", "manual"), ("nope", "manual")])
    assert [s.address for s in await p.list_suppressions("acme")] == ["old@example.com"]

    added = await p.add_suppressions(
        "acme",
        [("Ann@Example.com", "manual"), ("old@example.com", "manual"), ("ann@example.com", "x")],
    )
    assert (added.added, added.duplicate, added.invalid) == (1, 2, 0)
    assert await p.list_suppressions("acme") == [
        Suppression(acme.id, "ann@example.com", "manual", NOW),
        Suppression(acme.id, "old@example.com", "bounce", NOW),
    ]


async def test_a_tenant_reaches_only_its_own_domains_and_users(world: World) -> None:
    p = world.provisioning
    await p.create_tenant("acme")
    await p.create_tenant("beta")
    await p.add_domain("acme", "acme.test", ED25519)
    await p.add_tracking_domain("acme", "click.acme.test")
    user = await p.create_smtp_user("acme")

    assert (await p.domain("acme.test", tenant="acme")).name == "acme.test"
    for call in (
        p.domain("acme.test", tenant="beta"),
        p.domain_records("acme.test", tenant="beta"),
        p.rotate_domain("acme.test", ED25519, tenant="beta"),
        p.remove_domain("acme.test", tenant="beta"),
    ):
        with pytest.raises(Unknown, match=re.escape("no sending domain 'acme.test'")):
            await call
    for tracking in (
        p.tracking_domain("click.acme.test", tenant="beta"),
        p.remove_tracking_domain("click.acme.test", tenant="beta"),
    ):
        with pytest.raises(Unknown, match=re.escape("no tracking domain 'click.acme.test'")):
            await tracking
    with pytest.raises(Unknown, match=re.escape(f"no SMTP user '{user.username}'")):
        await p.remove_smtp_user(user.username, tenant="beta")
    assert await p.list_smtp_users("acme") != []
    assert (await p.domain("acme.test")).name == "acme.test"
    await p.remove_smtp_user(user.username, tenant="acme")
    assert await p.list_smtp_users("acme") == []


async def test_a_tenant_with_mail_to_deliver_stays_unless_forced(world: World) -> None:
    p, store = world.provisioning, world.store
    acme = await p.create_tenant("acme")
    await p.add_domain("acme", "acme.test", ED25519)
    user = await p.create_smtp_user("acme")
    await p.add_suppression("acme", "x@example.com", "manual")
    queued, shunted, delivered = (
        message(s, 0, acme.id, created_at=NOW - 10, due_at=due)
        for s, due in (("a", NOW - 10), ("b", NOW - 20), ("c", NOW - 10))  # b claimed first
    )
    await store.accept(
        [submission(m.submission_id, acme.id, [m]) for m in (queued, shunted, delivered)], []
    )
    await shunt_all(store, [shunted], [NOW - 5])
    claimed = await store.claim("w1", NOW, 60.0, 10)
    await settle_claimed(store, claimed, delivered.id, MessageState.DELIVERED, NOW)
    await settle_claimed(store, claimed, queued.id, MessageState.QUEUED, NOW - 1)

    with pytest.raises(TenantHasMail) as refused:
        await p.remove_tenant("acme")
    assert (refused.value.pending, refused.value.forced) == (2, False)
    assert str(refused.value) == (
        "tenant 'acme' still has 2 messages queued, being delivered or shunted"
    )
    assert await p.tenant("acme") == acme

    removal = await p.remove_tenant("acme", force=True)
    assert removal.tenant == acme
    assert sorted(removal.removed_messages) == sorted([queued.id, shunted.id])
    for removed in (queued, shunted):
        [*_, last] = await store.list_records(removed.id)
        assert (last["type"], last["meta"]["tenant"], last["nodeid"]) == (
            "AdminBounce",
            "acme",
            "n1",
        )
        assert last["response"]["code"] == 551
    assert await p.list_tenants() == []
    assert await store.get_smtp_user(user.username) is None
    assert await store.get_domain("acme.test") is None
    assert await store.list_suppressions(acme.id, "", 10) == []
    assert await store.get_message(delivered.id) is None
    with pytest.raises(Unknown):
        await p.remove_tenant("acme")


async def test_a_forced_removal_waits_for_mail_being_delivered(world: World) -> None:
    p, store = world.provisioning, world.store
    acme = await p.create_tenant("acme")
    leased, queued = (message(s, 0, acme.id, created_at=NOW - 10) for s in "ab")
    await store.accept([submission(leased.submission_id, acme.id, [leased])], [])
    await store.claim("w1", NOW, 60.0, 10)
    await store.accept([submission(queued.submission_id, acme.id, [queued])], [])

    with pytest.raises(TenantHasMail) as refused:
        await p.remove_tenant("acme", force=True)
    assert (refused.value.pending, refused.value.forced) == (1, True)
    assert "removed 1 queued or shunted messages, but 1 are being delivered" in str(refused.value)
    assert await store.get_message(queued.id) is None
    assert await p.tenant("acme") == acme


async def test_mail_accepted_during_a_forced_removal_is_left_alone(world: World) -> None:
    p, store = world.provisioning, world.store
    acme = await p.create_tenant("acme")
    later = message("a", 0, acme.id, created_at=NOW + 1)  # accepted after the removal began
    await store.accept([submission("a", acme.id, [later])], [])
    with pytest.raises(TenantHasMail) as refused:
        await p.remove_tenant("acme", force=True)
    assert refused.value.pending == 1
    assert await store.get_message(later.id) is not None


async def test_only_sealing_makes_the_engine_secret(world: World) -> None:
    p = world.provisioning
    await p.create_tenant("acme")
    await p.create_smtp_user("acme")
    await p.add_suppression("acme", "x@example.com", "manual")
    assert not (world.data_dir / "secret.key").exists()
    await p.add_domain("acme", "acme.test", ED25519)
    assert (world.data_dir / "secret.key").exists()


async def test_an_unusable_secret_is_a_provisioning_error(world: World, tmp_path: Path) -> None:
    (tmp_path / "secret").mkdir()
    settings = settings_in(world.data_dir, secret_file=str(tmp_path / "secret"))
    p = Provisioning(world.store, settings, nodeid="n1")
    await p.create_tenant("acme")
    with pytest.raises(SecretUnusable, match=re.escape(f"engine secret {tmp_path / 'secret'}")):
        await p.add_domain("acme", "acme.test", ED25519)


async def test_store_failures_are_provisioning_errors(tmp_path: Path) -> None:
    (tmp_path / "penguin.db").mkdir()  # a directory where the SQLite file should be
    store = open_store(f"sqlite:{tmp_path / 'penguin.db'}")
    try:
        p = Provisioning(store, settings_in(tmp_path), nodeid="n1")
        with pytest.raises(StoreFailed, match="sqlite"):
            await p.list_tenants()
        with pytest.raises(StoreFailed):
            await p.create_tenant("acme")
    finally:
        await store.close()
