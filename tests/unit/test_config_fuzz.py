"""Fuzzing the config loader: a mutated file either loads or is a ``ConfigError``.

Two generators, each a bounded and reproducible number of cases: byte-level
mutations of real config files (through ``load_settings``, so reading,
decoding and TOML parsing are covered), and parsed documents whose keys come
from the schema and whose values are drawn from hostile ones (NaN, infinities,
huge integers, NUL, nested lists, wrong types) through ``parse_settings``.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import DEFAULT_CONFIG, ConfigError, Settings, load_settings
from config.loader import parse_settings

FUZZ = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SAMPLE = """\
[engine]
data_dir = "/srv/penguin"
hostname = "mta.example.com"
processes = 2
restart_delay_seconds = 0.5
[database]
url = "postgresql://penguin:secret@127.0.0.1:5432/penguin"
[dns]
nameservers = ["127.0.0.1:5353", "[::1]:53"]
[submission]
listen = ["127.0.0.1:2587", "[::1]:2587"]
tls_cert = "/etc/penguin/cert.pem"
tls_key = "/etc/penguin/key.pem"
[retry]
first_retry_seconds = 60
jitter = 0.5
[sources.ip2]
address = "192.0.2.7"
ehlo_hostname = "mta2.example.com"
[pools.main]
sources = ["default", "ip2"]
[scheduler]
shaping_files = ["shaping/corp.toml"]
"""
SEEDS = [DEFAULT_CONFIG.read_bytes(), SAMPLE.encode()]
INSERTS = [b"nan", b"inf", b"-inf", b"[[[[", b"]", b"\xff", b"\x00", b'"', b"=", b"\n[x]\n", b" "]


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "delete", "insert", "repeat"]))
        if action == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif action == "delete":
            del data[at : at + draw(st.integers(1, 40))]
        elif action == "insert":
            data[at:at] = draw(st.sampled_from(INSERTS) | st.binary(max_size=8))
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 200))]
    return bytes(data)


hostile_texts = st.text(max_size=20) | st.sampled_from(
    ["", " ", "\x00", "é", "a b", "127.0.0.1:0", "[::1]:99999", "::1", "sqlite:", "postgresql://"]
)
hostile_scalars = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    hostile_texts,
    st.datetimes().map(lambda d: d.replace(microsecond=0)),
    st.just(datetime.time(12, 0)),
)
hostile_values = st.recursive(
    hostile_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
TYPED_VALUES: dict[Any, st.SearchStrategy[Any]] = {
    float: st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-9, 1e300])
    | st.floats(allow_nan=True, allow_infinity=True),
    int: st.sampled_from([0, -1, 1, 2**63 - 1, -(2**63)]) | st.integers(-(10**6), 10**7),
    int | None: st.sampled_from([0, -1, 1, 2**63 - 1]) | st.integers(-(10**6), 10**7),
    bool: st.booleans(),
    bool | None: st.booleans(),
    str: hostile_texts,
    str | None: hostile_texts,
    list[str]: st.lists(hostile_texts, max_size=3),
    list[int]: st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3),
}


def _schema_keys(cls: type, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every key path of the schema with its type; named tables under a shipped and a new name."""
    hints = typing.get_type_hints(cls)
    keys: list[tuple[tuple[str, ...], Any]] = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            keys += _schema_keys(typing.cast(type, hint), (*prefix, f.name))
        elif "item" in f.metadata:
            for name in ("default", "new"):
                keys += _schema_keys(f.metadata["item"], (*prefix, f.name, name))
        else:
            keys.append(((*prefix, f.name), hint))
    return keys


KEYS = _schema_keys(Settings)


@st.composite
def hostile_documents(draw: st.DrawFn) -> dict[str, Any]:
    """One to three schema keys set to values mostly of their own type, else of any."""
    document: dict[str, Any] = {}
    for _ in range(draw(st.integers(1, 3))):
        path, hint = draw(st.sampled_from(KEYS))
        if draw(st.integers(0, 9)) == 0:
            path = path[: draw(st.integers(1, len(path)))]  # a table given a value
        value = draw(TYPED_VALUES[hint] if draw(st.integers(0, 3)) else hostile_values)
        table = document
        for part in path[:-1]:
            nested = table.setdefault(part, {})
            if not isinstance(nested, dict):
                break
            table = nested
        else:
            table[path[-1]] = value
    return document


@pytest.fixture(scope="module")
def fuzz_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "penguin.toml"


@FUZZ
@given(data=mutated_files())
def test_mutated_files_load_or_fail_with_a_config_error(fuzz_file: Path, data: bytes) -> None:
    fuzz_file.write_bytes(data)
    try:
        load_settings(fuzz_file)
    except ConfigError as exc:
        assert exc.file == str(fuzz_file)
        assert exc.key and exc.problem


@FUZZ
@given(document=hostile_documents())
def test_hostile_values_validate_or_fail_with_a_config_error(document: dict[str, Any]) -> None:
    try:
        loaded = parse_settings(document, "fuzz.toml")
    except ConfigError as exc:
        assert exc.file == "fuzz.toml"
        assert exc.key and exc.problem
    else:
        assert all(math.isfinite(number) for number in _numbers(dataclasses.asdict(loaded)))


def _numbers(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [n for item in value.values() for n in _numbers(item)]
    if isinstance(value, list):
        return [n for item in value for n in _numbers(item)]
    return [value] if isinstance(value, float) else []
