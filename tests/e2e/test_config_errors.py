"""A config mistake is one line naming the file, the key and what was expected.

``penguin config check FILE`` and ``penguin run --config FILE`` alike exit 1
with ``config error: FILE: KEY: PROBLEM`` on stderr and no traceback, both for
a file that does not validate and for one whose paths, certificates or
database cannot be used.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import PENGUIN, write_config

pytestmark = pytest.mark.slow


def appended(text: str) -> Callable[[Path], Path]:
    """A case: the e2e config with ``text`` added at the end."""

    def build(tmp_path: Path) -> Path:
        config = write_config(tmp_path)
        config.write_text(config.read_text() + text)
        return config

    return build


def replaced(old: str, new: str) -> Callable[[Path], Path]:
    """A case: the e2e config with ``old`` replaced by ``new``."""

    def build(tmp_path: Path) -> Path:
        config = write_config(tmp_path)
        config.write_text(config.read_text().replace(old, new))
        return config

    return build


def in_submission(text: str) -> Callable[[Path], Path]:
    """A case: the e2e config with ``text`` added to ``[submission]``."""
    return lambda tmp_path: write_config(tmp_path, extra=text)


def in_bounce(text: str) -> Callable[[Path], Path]:
    """A case: the e2e config with ``text`` added to ``[bounce]``."""
    return lambda tmp_path: write_config(tmp_path, bounce=text)


def not_utf8(tmp_path: Path) -> Path:
    config = tmp_path / "penguin.toml"
    config.write_bytes(b'[engine]\nhostname = "mta\xff.example"\n')
    return config


def a_directory(tmp_path: Path) -> Path:
    return tmp_path


def deeply_nested(tmp_path: Path) -> Path:
    config = tmp_path / "penguin.toml"
    config.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    return config


def data_dir_is_a_file(tmp_path: Path) -> Path:
    config = write_config(tmp_path)
    (tmp_path / "var").write_text("")
    return config


def secret_file_is_a_directory(tmp_path: Path) -> Path:
    (tmp_path / "secret").mkdir()
    return write_config(tmp_path, engine=f'secret_file = "{tmp_path / "secret"}"')


def unreachable_postgres(tmp_path: Path) -> Path:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return write_config(tmp_path, f"postgresql://penguin:s3cret@127.0.0.1:{port}/penguin")


CASES: list[tuple[str, Callable[[Path], Path], str, str]] = [
    ("not_utf8", not_utf8, "-", "expected UTF-8 text"),
    ("a_directory", a_directory, "-", "expected a regular file"),
    ("deeply_nested", deeply_nested, "-", "nested too deeply"),
    (
        "nan",
        appended("[retry]\nfirst_retry_seconds = nan\n"),
        "retry.first_retry_seconds",
        "finite",
    ),
    (
        "idle_nan",
        in_submission("idle_timeout_seconds = nan"),
        "submission.idle_timeout_seconds",
        "finite",
    ),
    (
        "hostname",
        replaced('"mta.penguin.test"', '"mta penguin.test"'),
        "engine.hostname",
        "host name",
    ),
    (
        "no_sources",
        appended("[pools.default]\nsources = []\n"),
        "pools.default.sources",
        "at least one",
    ),
    (
        "no_certificate",
        in_submission('tls_cert = "/nonexistent.pem"\ntls_key = "/nonexistent.key"'),
        "submission.tls_cert",
        "cannot read the certificate /nonexistent.pem",
    ),
    (
        "soft_window",
        in_bounce('soft_window = "a week"'),
        "bounce.soft_window",
        "a week",
    ),
    (
        "tenant_soft_window",
        appended('[tenants.acme]\nsoft_window = "soon"\n'),
        "tenants.acme.soft_window",
        "soon",
    ),
    (
        "bounce_rate",
        in_bounce('client_message_rate = "fast"'),
        "bounce.client_message_rate",
        "fast",
    ),
    ("data_dir_is_a_file", data_dir_is_a_file, "engine.data_dir", "is not one"),
    ("secret_is_a_directory", secret_file_is_a_directory, "engine.secret_file", "is a directory"),
    ("unreachable_postgres", unreachable_postgres, "database.url", "postgresql://penguin:***@"),
]


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize(
    ("build", "key", "problem"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_config_mistake_is_one_line(
    tmp_path: Path, build: Callable[[Path], Path], key: str, problem: str, command: str
) -> None:
    config = build(tmp_path)
    args = (
        ["config", "check", str(config)] if command == "check" else ["run", "--config", str(config)]
    )
    done = subprocess.run([*PENGUIN, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith(f"config error: {config}: {key}: "), done.stderr
    assert problem in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "s3cret" not in done.stderr


def test_several_workers_check_before_they_start(tmp_path: Path) -> None:
    config = secret_file_is_a_directory(tmp_path)
    config.write_text(config.read_text().replace("[engine]\n", "[engine]\nprocesses = 2\n"))
    done = subprocess.run(
        [*PENGUIN, "run", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr == (
        f"config error: {config}: engine.secret_file: expected a file, "
        f"but {tmp_path / 'secret'} is a directory\n"
    )
