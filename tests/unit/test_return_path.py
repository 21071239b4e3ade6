"""The return-path codec: tokens round-trip, survive lowercasing, refuse forgeries."""

from __future__ import annotations

import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.loader import parse_settings
from engine.return_path import (
    LOCAL_PART_MAX,
    REFERENCE_HEADER,
    ReturnPathCodec,
    codec_from_settings,
    derive_key,
    return_path_domain,
)

SECRET = bytes(range(32))
KEYS = {"a": derive_key(SECRET, "a"), "b": derive_key(SECRET, "b")}
CODEC = ReturnPathCodec({"a": KEYS["a"]}, "a")
MESSAGE_ID = "0192f3a4b5c6d7e8f90a1b2c3d4e-1"
"""A real message id: a 28-hex submission id and the recipient's index."""
SUBMISSION_ID = "0192f3a4b5c6d7e8f90a1b2c3d4e"
BASE32 = "abcdefghijklmnopqrstuvwxyz234567"

hex_ids = st.builds(
    lambda raw, index: f"{raw.hex()}-{index}",
    st.binary(min_size=1, max_size=16),
    st.integers(min_value=0, max_value=2**24),
)
text_ids = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=24)
"""Other ids (tests and older spools use them): short ASCII text."""
message_ids = hex_ids | text_ids
submission_ids = st.binary(min_size=1, max_size=16).map(bytes.hex) | text_ids


def test_a_real_message_id_makes_a_short_lowercase_local_part() -> None:
    local = CODEC.local_part(MESSAGE_ID)
    assert local.startswith("b-")
    assert set(local[2:]) <= set(BASE32)
    assert len(local) <= 52, "14 bytes of submission, an index, a key id and 80 bits of MAC"
    assert CODEC.message_id(local) == MESSAGE_ID


def test_the_longest_key_id_and_a_large_index_still_fit_a_local_part() -> None:
    codec = ReturnPathCodec({"k1234567": derive_key(SECRET, "k1234567")}, "k1234567")
    local = codec.local_part(f"{SUBMISSION_ID}-16000000")
    assert len(local) <= LOCAL_PART_MAX
    assert codec.message_id(local) == f"{SUBMISSION_ID}-16000000"


@given(message_ids)
def test_every_message_id_round_trips(message_id: str) -> None:
    assert CODEC.message_id(CODEC.local_part(message_id)) == message_id


@given(submission_ids)
def test_every_submission_id_round_trips_through_the_reference(submission_id: str) -> None:
    assert CODEC.submission_id(CODEC.reference(submission_id)) == submission_id


@given(hex_ids)
def test_an_upper_cased_local_part_is_accepted(message_id: str) -> None:
    local = CODEC.local_part(message_id)
    assert CODEC.message_id(local.upper()) == message_id
    assert CODEC.message_id(local.title()) == message_id


def test_an_upper_cased_reference_is_accepted() -> None:
    reference = CODEC.reference(SUBMISSION_ID)
    assert CODEC.submission_id(f" {reference.upper()} ") == SUBMISSION_ID


@given(hex_ids | text_ids, st.data())
def test_every_single_character_alteration_is_refused(message_id: str, data: st.DataObject) -> None:
    local = CODEC.local_part(message_id)
    position = data.draw(st.integers(0, len(local) - 1))
    replacement = data.draw(
        st.sampled_from(sorted(set(BASE32 + "-b+=._0189") - {local[position].lower()}))
    )
    altered = local[:position] + replacement + local[position + 1 :]
    assert CODEC.message_id(altered) is None


@given(st.data())
def test_every_single_character_alteration_of_a_reference_is_refused(data: st.DataObject) -> None:
    reference = CODEC.reference(SUBMISSION_ID)
    position = data.draw(st.integers(0, len(reference) - 1))
    replacement = data.draw(st.sampled_from(sorted(set(BASE32) - {reference[position]})))
    altered = reference[:position] + replacement + reference[position + 1 :]
    assert CODEC.submission_id(altered) is None


@pytest.mark.parametrize("cut", [1, 2, 5, 8, 20])
def test_a_truncated_or_extended_token_is_refused(cut: int) -> None:
    local = CODEC.local_part(MESSAGE_ID)
    assert CODEC.message_id(local[:-cut]) is None
    assert CODEC.message_id(local + "a" * cut) is None


def test_a_token_made_with_another_secret_is_refused() -> None:
    forger = ReturnPathCodec({"a": derive_key(secrets.token_bytes(32), "a")}, "a")
    assert CODEC.message_id(forger.local_part(MESSAGE_ID)) is None
    assert CODEC.submission_id(forger.reference(SUBMISSION_ID)) is None


def test_a_token_of_an_unknown_key_id_is_refused() -> None:
    other = ReturnPathCodec({"z": derive_key(SECRET, "z")}, "z")
    assert CODEC.message_id(other.local_part(MESSAGE_ID)) is None


def test_a_reference_is_no_return_path_and_a_return_path_no_reference() -> None:
    reference = CODEC.reference(SUBMISSION_ID)
    local = CODEC.local_part(MESSAGE_ID)
    assert CODEC.message_id("b-" + reference) is None
    assert CODEC.submission_id(local.removeprefix("b-")) is None


@pytest.mark.parametrize(
    "local",
    ["", "b-", "b-a", "postmaster", "b-!!!!", "b-" + "a" * 62, "bounces+x=y", "b-é", "b-1"],
)
def test_what_is_no_token_is_refused(local: str) -> None:
    assert CODEC.message_id(local) is None
    assert CODEC.submission_id(local) is None


def test_rotation_the_current_key_signs_an_accepted_key_verifies_a_retired_one_not() -> None:
    before = ReturnPathCodec({"a": KEYS["a"]}, "a")
    old_local = before.local_part(MESSAGE_ID)
    rotated = ReturnPathCodec(KEYS, "b")
    assert rotated.message_id(old_local) == MESSAGE_ID, "a token of an accepted key id"
    new_local = rotated.local_part(MESSAGE_ID)
    assert new_local != old_local
    assert rotated.message_id(new_local) == MESSAGE_ID
    retired = ReturnPathCodec({"b": KEYS["b"]}, "b")
    assert retired.message_id(old_local) is None, "a retired key id is not trusted"
    assert retired.message_id(new_local) == MESSAGE_ID


def test_the_key_ids_of_a_codec_are_checked() -> None:
    with pytest.raises(ValueError, match="current key id"):
        ReturnPathCodec({"a": KEYS["a"]}, "b")
    with pytest.raises(ValueError, match="key id 'A'"):
        ReturnPathCodec({"A": KEYS["a"]}, "A")


def test_a_message_id_too_long_for_a_local_part_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        CODEC.local_part("x" * 60)


def test_the_codec_from_settings_derives_each_key_from_the_engine_secret() -> None:
    settings = parse_settings(
        {"bounce": {"token_key_id": "k2", "accepted_key_ids": ["k1"], "return_path_prefix": "rp"}}
    )
    codec = codec_from_settings(settings, SECRET)
    old = ReturnPathCodec({"k1": derive_key(SECRET, "k1")}, "k1")
    assert codec.message_id(old.local_part(MESSAGE_ID)) == MESSAGE_ID
    assert codec.local_part(MESSAGE_ID) == ReturnPathCodec(
        {"k2": derive_key(SECRET, "k2")}, "k2"
    ).local_part(MESSAGE_ID)
    assert codec.return_path_domain("News.Acme.test") == "rp.news.acme.test"
    other = codec_from_settings(settings, bytes(32))
    assert other.message_id(codec.local_part(MESSAGE_ID)) is None


def test_defaults_bounces_and_key_a() -> None:
    codec = codec_from_settings(parse_settings({}), SECRET)
    assert codec.return_path_domain("acme.test") == "bounces.acme.test"
    assert codec.local_part(MESSAGE_ID) == CODEC.local_part(MESSAGE_ID)
    assert return_path_domain("bounces", "acme.test.") == "bounces.acme.test"
    assert REFERENCE_HEADER == "X-Penguin-Ref"


def test_the_codec_shows_no_key() -> None:
    assert KEYS["a"].hex() not in repr(CODEC)
    assert repr(CODEC) == "ReturnPathCodec(TokenKeys(current='a', key_ids=['a']))"
