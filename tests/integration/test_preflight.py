"""Environment checks against real files, certificates and PostgreSQL servers on loopback.

Each broken environment is a ``ConfigError`` naming the config file, the key
and the problem; a usable one passes without anything being created.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from config import ConfigError, Settings
from config.loader import parse_settings
from engine.runtime.preflight import check_environment, operator_token
from engine.sealing import load_or_create_secret
from engine.smtp.tls_cert import ensure_self_signed

CONFIG = "/etc/penguin/penguin.toml"


def settings_in(tmp_path: Path, **tables: dict[str, Any]) -> Settings:
    """Settings whose data directory is ``tmp_path/data``, with ``tables`` on top."""
    engine = {"data_dir": str(tmp_path / "data"), **tables.pop("engine", {})}
    return parse_settings({"engine": engine, **tables}, CONFIG)


def pair(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    ensure_self_signed(cert, key, "localhost")
    return cert, key


def data_dir_is_a_file(tmp: Path) -> Settings:
    (tmp / "data").write_text("")
    return settings_in(tmp)


def data_dir_under_a_file(tmp: Path) -> Settings:
    (tmp / "file").write_text("")
    return settings_in(tmp, engine={"data_dir": str(tmp / "file" / "data")})


def secret_file_is_a_directory(tmp: Path) -> Settings:
    (tmp / "secret").mkdir()
    return settings_in(tmp, engine={"secret_file": str(tmp / "secret")})


def secret_file_too_short(tmp: Path) -> Settings:
    (tmp / "secret").write_bytes(b"short")
    (tmp / "secret").chmod(0o600)
    return settings_in(tmp, engine={"secret_file": str(tmp / "secret")})


def sqlite_file_is_a_directory(tmp: Path) -> Settings:
    (tmp / "data" / "penguin.db").mkdir(parents=True)
    return settings_in(tmp)


def sqlite_file_is_not_a_database(tmp: Path) -> Settings:
    (tmp / "store.db").write_text("[engine]\n")
    return settings_in(tmp, database={"url": f"sqlite:{tmp / 'store.db'}"})


def record_log_is_a_directory(tmp: Path) -> Settings:
    (tmp / "data" / "records.jsonl").mkdir(parents=True)
    return settings_in(tmp)


def tls_cert_missing(tmp: Path) -> Settings:
    paths = {"tls_cert": str(tmp / "missing.pem"), "tls_key": str(tmp / "missing.key")}
    return settings_in(tmp, submission=paths)


def tls_cert_not_a_certificate(tmp: Path) -> Settings:
    _, key = pair(tmp)
    (tmp / "notes.pem").write_text("not a certificate\n")
    return settings_in(tmp, submission={"tls_cert": str(tmp / "notes.pem"), "tls_key": str(key)})


def tls_key_of_another_certificate(tmp: Path) -> Settings:
    cert, _ = pair(tmp / "one")
    _, other_key = pair(tmp / "two")
    return settings_in(tmp, submission={"tls_cert": str(cert), "tls_key": str(other_key)})


def self_signed_key_lost(tmp: Path) -> Settings:
    _, key = pair(tmp / "data" / "tls")
    key.unlink()
    return settings_in(tmp)


def bounce_rules_missing(tmp: Path) -> Settings:
    return settings_in(tmp, delivery={"bounce_rules_file": str(tmp / "rules.toml")})


def token_file(tmp: Path, content: str | None, mode: int = 0o600) -> Settings:
    path = tmp / "operator.token"
    if content is not None:
        path.write_text(content)
        path.chmod(mode)
    return settings_in(tmp, admin={"operator_token_file": str(path)})


def operator_token_missing(tmp: Path) -> Settings:
    return token_file(tmp, None)


def operator_token_empty(tmp: Path) -> Settings:
    return token_file(tmp, " \n")


def operator_token_world_readable(tmp: Path) -> Settings:
    return token_file(tmp, "s3cret-token\n", 0o644)


def key_rate_not_a_spec(tmp: Path) -> Settings:
    return settings_in(tmp, admin={"key_rate": "fast"})


def postgres_refusing(tmp: Path) -> Settings:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return settings_in(tmp, database={"url": f"postgresql://penguin:s3cret@127.0.0.1:{port}/x"})


BROKEN: list[tuple[Callable[[Path], Settings], str, str]] = [
    (data_dir_is_a_file, "engine.data_dir", "expected a directory, but {tmp}/data is not one"),
    (data_dir_under_a_file, "engine.data_dir", "{tmp}/file is not one"),
    (secret_file_is_a_directory, "engine.secret_file", "{tmp}/secret is a directory"),
    (secret_file_too_short, "engine.secret_file", "must be exactly 32 bytes"),
    (sqlite_file_is_a_directory, "database.url", "{tmp}/data/penguin.db is a directory"),
    (sqlite_file_is_not_a_database, "database.url", "expected a SQLite database"),
    (record_log_is_a_directory, "records.json_log", "{tmp}/data/records.jsonl is a directory"),
    (tls_cert_missing, "submission.tls_cert", "cannot read the certificate {tmp}/missing.pem"),
    (tls_cert_not_a_certificate, "submission.tls_cert", "expected a PEM certificate"),
    (tls_key_of_another_certificate, "submission.tls_key", "expected the PEM private key"),
    (self_signed_key_lost, "engine.data_dir", "key.pem does not; provide both or neither"),
    (bounce_rules_missing, "delivery.bounce_rules_file", "rules.toml"),
    (operator_token_missing, "admin.operator_token_file", "{tmp}/operator.token: file not found"),
    (operator_token_empty, "admin.operator_token_file", "{tmp}/operator.token: expected a token"),
    (operator_token_world_readable, "admin.operator_token_file", "readable by everyone"),
    (key_rate_not_a_spec, "admin.key_rate", "not a throttle spec"),
    (postgres_refusing, "database.url", "cannot connect to postgresql://penguin:***@127.0.0.1:"),
]


@pytest.mark.parametrize(("broken", "key", "problem"), BROKEN, ids=[b[0].__name__ for b in BROKEN])
async def test_a_broken_environment_names_file_key_and_problem(
    tmp_path: Path, broken: Callable[[Path], Settings], key: str, problem: str
) -> None:
    settings = broken(tmp_path)
    with pytest.raises(ConfigError) as err:
        await check_environment(settings, CONFIG)
    assert (err.value.file, err.value.key) == (CONFIG, key)
    assert problem.format(tmp=tmp_path) in err.value.problem
    assert "s3cret" not in str(err.value)


async def test_a_fresh_data_dir_passes_and_nothing_is_created(tmp_path: Path) -> None:
    await check_environment(settings_in(tmp_path), CONFIG)
    assert list(tmp_path.iterdir()) == []


async def test_a_used_data_dir_and_given_certificate_pass(tmp_path: Path) -> None:
    data = tmp_path / "data"
    pair(data / "tls")
    load_or_create_secret(data / "secret.key")
    cert, key = pair(tmp_path / "real")
    settings = settings_in(tmp_path, submission={"tls_cert": str(cert), "tls_key": str(key)})
    await check_environment(settings, CONFIG)


async def test_tls_files_are_not_looked_at_without_submission(tmp_path: Path) -> None:
    settings = tls_cert_missing(tmp_path)
    await check_environment(settings, CONFIG, submission=False)


async def test_a_silent_postgres_is_a_timeout(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        port = silent.getsockname()[1]
        url = f"postgresql://penguin:s3cret@127.0.0.1:{port}/x"
        settings = settings_in(tmp_path, database={"url": url})
        with pytest.raises(ConfigError) as err:
            await check_environment(settings, CONFIG, database_timeout=0.3)
    assert err.value.key == "database.url"
    assert (
        err.value.problem
        == f"cannot connect to postgresql://penguin:***@127.0.0.1:{port}/x within 0.3 s"
    )


@pytest.mark.postgres
async def test_a_reachable_postgres_passes(tmp_path: Path, postgres_url: str) -> None:
    await check_environment(settings_in(tmp_path, database={"url": postgres_url}), CONFIG)


@pytest.mark.postgres
async def test_a_missing_postgres_database_is_named(
    tmp_path: Path, postgres_admin_url: str
) -> None:
    url = postgres_admin_url.rsplit("/", 1)[0] + "/penguin_no_such_database"
    with pytest.raises(ConfigError) as err:
        await check_environment(settings_in(tmp_path, database={"url": url}), CONFIG)
    assert 'database "penguin_no_such_database" does not exist' in err.value.problem


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes every file")
async def test_an_unreadable_certificate_is_named(tmp_path: Path) -> None:
    settings = tls_key_of_another_certificate(tmp_path)
    Path(settings.submission.tls_cert).chmod(0)
    with pytest.raises(ConfigError) as err:
        await check_environment(settings, CONFIG)
    assert err.value.key == "submission.tls_cert"
    assert "Permission denied" in err.value.problem


def test_the_operator_token_is_the_files_content_stripped(tmp_path: Path) -> None:
    assert operator_token(token_file(tmp_path, "  tok-123\n"), CONFIG) == "tok-123"
    assert operator_token(settings_in(tmp_path), CONFIG) is None
