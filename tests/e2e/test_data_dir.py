"""The store, the record log, the secret and the certificate all live in ``engine.data_dir``.

A config that sets ``data_dir`` and neither ``database.url`` nor
``records.json_log`` puts every file the engine writes under it, whatever
the working directory.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import PENGUIN, EngineProcess

pytestmark = pytest.mark.slow


def test_files_default_to_the_data_dir(tmp_path: Path, engine_factory: list[EngineProcess]) -> None:
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = tmp_path / "penguin.toml"
    config.write_text(
        f'[engine]\ndata_dir = "{data}"\nhostname = "mta.penguin.test"\n'
        '[submission]\nlisten = ["127.0.0.1:0"]\n[admin]\nlisten = "127.0.0.1:0"\n'
        '[tracking]\nlisten = "127.0.0.1:0"\n[bounce]\nlisten = ["127.0.0.1:0"]\n'
    )
    subprocess.run(
        [*PENGUIN, "tenant", "create", "acme", "--config", str(config)],
        cwd=elsewhere,
        check=True,
        capture_output=True,
        timeout=60,
    )
    engine = EngineProcess(config, cwd=elsewhere)
    engine_factory.append(engine)
    engine.start()
    assert engine.terminate() == 0

    written = {path.relative_to(data).as_posix() for path in data.rglob("*") if path.is_file()}
    expected = {"penguin.db", "records.jsonl", "secret.key", "tls/cert.pem", "tls/key.pem"}
    assert expected | {"tracking/journal"} <= written
    assert list(elsewhere.iterdir()) == []
