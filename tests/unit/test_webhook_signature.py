"""The Penguin-Signature header against an independent HMAC computation."""

from __future__ import annotations

import hashlib
import hmac

from engine.webhooks.signature import new_secret, signature, verify

BODY = b'{"type":"Delivery","id":"m1"}'


def test_the_signature_is_hmac_sha256_of_the_timestamp_dot_body() -> None:
    secret = "whsec_test"
    expected = hmac.new(b"whsec_test", b"1800000000." + BODY, hashlib.sha256).hexdigest()
    assert signature(secret, BODY, 1_800_000_000) == f"t=1800000000,v1={expected}"


def test_verify_accepts_its_own_signature_and_refuses_changes() -> None:
    secret = new_secret()
    header = signature(secret, BODY, 1_800_000_000)
    assert verify(secret, header, BODY, now=1_800_000_100)
    assert not verify(secret, header, BODY + b" ", now=1_800_000_100)
    assert not verify(new_secret(), header, BODY, now=1_800_000_100)
    assert not verify(secret, header, BODY, now=1_800_000_301)  # a replay
    assert not verify(secret, header.replace("t=18", "t=19"), BODY, now=1_900_000_000)
    assert not verify(secret, "garbage", BODY, now=1_800_000_000)


def test_secrets_are_new_each_time() -> None:
    secrets = {new_secret() for _ in range(100)}
    assert len(secrets) == 100
    assert all(s.startswith("whsec_") and len(s) == 6 + 43 for s in secrets)
