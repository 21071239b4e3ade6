"""Environment checks: what a valid config names is there and usable.

``config.loader`` validates the file alone; these checks look at the machine
the way ``penguin run`` is about to use it, creating and changing nothing:

- ``engine.data_dir``: a writable directory, or one that can be made;
- the engine secret (``engine.secret_file``): a valid secret file, or a path
  where the first start can create one;
- the store: the SQLite file (or a directory to make it in), or a PostgreSQL
  server that accepts a connection within ``DATABASE_TIMEOUT_SECONDS``;
- the JSON-lines record log, when it is enabled;
- the submission certificate and key (``submission.tls_cert``/``tls_key``, or
  the self-signed pair under ``<data_dir>/tls/`` once it exists): readable,
  a PEM certificate, and a key that belongs to it;
- the operator's bounce rules (``delivery.bounce_rules_file``);
- the bounce intake's windows and client rates (``[bounce]``, ``[tenants.NAME]``);
- the tenants' rate quotas (``tenants.NAME.rate_quota``): throttle specs;
- the operator token (``admin.operator_token_file``): a regular file, not
  readable by others, holding a token; and the API keys' rate
  (``admin.key_rate``), a throttle spec;
- the traffic shaping files (``scheduler.shaping_files``) and backoff rules
  (``scheduler.backoff_files``): a problem in one is a ``ConfigError`` naming
  that file and its key.

Each problem is a ``ConfigError`` naming the config file, the key and what
was expected; a database URL appears without its password. ``penguin config
check`` and ``penguin run`` both call :func:`check_environment` before
anything starts. This module must not import ``prometheus_client``: it runs
before the metrics of several workers are set up.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import stat
from collections.abc import Callable
from pathlib import Path

import asyncpg
from cryptography import x509

from bounce_in.actions import Policy, tenant_policies
from config import ConfigError, Settings, redacted_url, sqlite_path
from engine.delivery.bounce_classify import Rule, RuleFileError, load_rules
from engine.limits.throttle import ThrottleSpec
from engine.scheduler.backoff import BackoffPolicy
from engine.scheduler.shaping import Shaping
from engine.scheduler.tenant_settings import config_quota_problem
from engine.sealing import SecretFileError, load_or_create_secret, secret_path
from engine.smtp.tls_cert import server_context

DATABASE_TIMEOUT_SECONDS = 5.0
SQLITE_HEADER = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite database file (sqlite.org/fileformat.html §1.3)."""


async def check_environment(
    settings: Settings,
    config_file: str,
    *,
    submission: bool = True,
    database_timeout: float = DATABASE_TIMEOUT_SECONDS,
) -> None:
    """Raise a ``ConfigError`` for the first thing ``settings`` names that cannot be used;
    the TLS files are looked at only for ``submission``."""

    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(config_file, key, problem)

    problem = _directory_problem(Path(settings.engine.data_dir))
    if problem:
        raise fail("engine.data_dir", problem)
    problem = _secret_problem(secret_path(settings.engine))
    if problem:
        raise fail("engine.secret_file", problem)
    url = settings.database_url()
    path = sqlite_path(url)
    if path is not None:
        problem = _sqlite_problem(Path(path))
    else:
        problem = await _postgres_problem(url, database_timeout)
    if problem:
        raise fail("database.url", problem)
    record_log = settings.record_log_path()
    problem = _file_problem(Path(record_log)) if record_log else None
    if problem:
        raise fail("records.json_log", problem)
    if submission:
        _check_tls(settings, config_file)
    operator_rules(settings, config_file)
    bounce_policies(settings, config_file)
    bounce_client_rates(settings, config_file)
    quota_problem = config_quota_problem(settings)
    if quota_problem:
        raise fail(*quota_problem)
    operator_token(settings, config_file)
    throttle_spec(settings.admin.key_rate, config_file, "admin.key_rate")
    Shaping.load(settings.scheduler.shaping_files)
    BackoffPolicy.from_settings(settings)


def operator_rules(settings: Settings, config_file: str) -> list[Rule]:
    """The rules of ``delivery.bounce_rules_file`` (none when it is empty)."""
    path = settings.delivery.bounce_rules_file
    if not path:
        return []
    try:
        return load_rules(Path(path))
    except (OSError, RuleFileError) as exc:
        raise ConfigError(config_file, "delivery.bounce_rules_file", str(exc)) from exc


def bounce_policies(settings: Settings, config_file: str) -> Callable[[str], Policy]:
    """Each tenant's soft-bounce policy by tenant name (``bounce_in.actions.tenant_policies``)."""
    try:
        Policy.from_settings(settings.bounce)
    except ValueError as exc:
        raise ConfigError(config_file, "bounce.soft_window", str(exc)) from exc
    try:
        return tenant_policies(settings)
    except ValueError as exc:
        key, _, problem = str(exc).partition(": ")
        raise ConfigError(config_file, key, problem) from exc


def bounce_client_rates(settings: Settings, config_file: str) -> tuple[ThrottleSpec, ThrottleSpec]:
    """The bounce listener's per-client connection and message rates."""
    bounce = settings.bounce
    return (
        throttle_spec(bounce.client_connection_rate, config_file, "bounce.client_connection_rate"),
        throttle_spec(bounce.client_message_rate, config_file, "bounce.client_message_rate"),
    )


def operator_token(settings: Settings, config_file: str) -> str | None:
    """The token in ``admin.operator_token_file`` (stripped); None when no file is set."""
    path = settings.admin.operator_token_file
    if not path:
        return None
    token, problem = _read_token(Path(path))
    if problem:
        raise ConfigError(config_file, "admin.operator_token_file", f"{path}: {problem}")
    return token


def _read_token(path: Path) -> tuple[str, str | None]:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            return "", "expected a regular file"
        if info.st_mode & stat.S_IROTH:
            return "", "readable by everyone; make it readable by the engine only (chmod 600)"
        token = path.read_text("utf-8").strip()
    except FileNotFoundError:
        return "", "file not found"
    except OSError as exc:
        return "", f"cannot read: {exc.strerror or exc}"
    except UnicodeDecodeError:
        return "", "expected UTF-8 text"
    if not token:
        return "", "expected a token, but the file is empty"
    return token, None


def throttle_spec(text: str, config_file: str, key: str) -> ThrottleSpec:
    """The throttle spec ``text`` of setting ``key``; a ``ConfigError`` when it is not one."""
    try:
        return ThrottleSpec.parse(text)
    except ValueError as exc:
        raise ConfigError(config_file, key, str(exc)) from exc


def tls_paths(settings: Settings) -> tuple[Path, Path]:
    """The submission certificate and key: the configured pair, else the self-signed
    pair under ``<data_dir>/tls/``."""
    sub = settings.submission
    if sub.tls_cert:
        return Path(sub.tls_cert), Path(sub.tls_key)
    tls_dir = Path(settings.engine.data_dir) / "tls"
    return tls_dir / "cert.pem", tls_dir / "key.pem"


def _directory_problem(path: Path) -> str | None:
    """Why ``path`` cannot be used as a writable directory, or be made as one."""
    existing = path
    while not existing.exists() and existing.parent != existing:  # one step up per turn
        existing = existing.parent
    if not existing.is_dir():
        return f"expected a directory, but {existing} is not one"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"expected a writable directory, but {existing} is not writable"
    return None


def _file_problem(path: Path) -> str | None:
    """Why the engine cannot open ``path`` for writing, or create it."""
    if path.is_dir():
        return f"expected a file, but {path} is a directory"
    if path.exists():
        if not path.is_file():
            return f"expected a regular file, but {path} is not one"
        if not os.access(path, os.R_OK | os.W_OK):
            return f"expected a file the engine can write, but {path} is not writable"
        return None
    return _directory_problem(path.parent)


def _secret_problem(path: Path) -> str | None:
    if path.is_dir():
        return f"expected a file, but {path} is a directory"
    if not path.exists():
        return _directory_problem(path.parent)
    try:
        load_or_create_secret(path)  # exists: only read and checked
    except SecretFileError as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    return None


def _sqlite_problem(path: Path) -> str | None:
    problem = _file_problem(path)
    if problem or not path.exists():
        return problem
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    if header and header != SQLITE_HEADER:
        return f"expected a SQLite database, but {path} is not one"
    return None


async def _postgres_problem(url: str, seconds: float) -> str | None:
    """Why no connection to the PostgreSQL server of ``url`` can be had within ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            connection = await asyncpg.connect(url, timeout=seconds)
            await connection.close()
    except TimeoutError:
        return f"cannot connect to {redacted_url(url)} within {seconds:g} s"
    except (OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return f"cannot connect to {redacted_url(url)}: {reason or type(exc).__name__}"
    return None


def _check_tls(settings: Settings, config_file: str) -> None:
    cert, key = tls_paths(settings)
    if settings.submission.tls_cert:
        cert_key, key_key = "submission.tls_cert", "submission.tls_key"
    else:
        cert_key = key_key = "engine.data_dir"
        if not cert.exists() and not key.exists():
            return  # made at the first start
        if not (cert.exists() and key.exists()):
            present, missing = (cert, key) if cert.exists() else (key, cert)
            problem = f"{present} exists but {missing} does not; provide both or neither"
            raise ConfigError(config_file, cert_key, problem)
    try:
        x509.load_pem_x509_certificates(cert.read_bytes())
    except OSError as exc:
        problem = f"cannot read the certificate {cert}: {exc.strerror or exc}"
        raise ConfigError(config_file, cert_key, problem) from None
    except ValueError:
        problem = f"expected a PEM certificate in {cert}"
        raise ConfigError(config_file, cert_key, problem) from None
    try:
        key.read_bytes()
        server_context(cert, key)
    except ssl.SSLError as exc:  # an OSError too: first
        problem = f"expected the PEM private key of {cert} in {key} ({exc.reason or exc})"
        raise ConfigError(config_file, key_key, problem) from None
    except OSError as exc:
        problem = f"cannot read the key {key}: {exc.strerror or exc}"
        raise ConfigError(config_file, key_key, problem) from None
