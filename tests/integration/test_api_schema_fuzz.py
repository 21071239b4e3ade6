"""Schemathesis over the admin API's own OpenAPI document: every operation, fuzzed.

The app (``create_app`` on the services of ``api_support``) is served by uvicorn
on a port bound 0, in a thread with its own event loop (its spool runs there), on
a SQLite store only: the properties checked are the HTTP contract's, which does
not depend on the backend, and PostgreSQL would double the run's time. Each
operation gets ``MAX_EXAMPLES`` requests per pass, with data valid by the schema
and with data that is not: the operator routes (tag ``operators``) with the
operator token; the others with a key of ``FUZZED_TENANT`` holding every scope,
and (valid data) as the operator acting for that tenant. Each answer must be no
5xx, a documented status, of the documented content type, matching the documented
schema. POST /v1/messages gets a further pass whose messages come from the
tenant's sending domain to addresses that parse, so that the rest of the message
reaches composition and acceptance. No webhook exists, so POST
/v1/webhooks/{id}/test only answers 404: nothing is POSTed anywhere.

The operations are walked with hypothesis directly rather than schemathesis's
pytest plugin (``from_fixture``), which does not run on pytest 9.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
import uvicorn
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from admin_api.app import create_app
from config import Settings
from engine.clock import FakeClock
from engine.scheduler.tenant_settings import TenantSettingsBook
from engine.store import open_store
from tests.integration.api_support import (
    OPERATOR_TOKEN,
    as_operator,
    bearer,
    make_tenant_key,
    services_on,
)

MAX_EXAMPLES = 25
OPERATOR_TAG = "operators"
FUZZED_TENANT = "fuzzed-tenant-5e0c1a"
"""The tenant the requests act for; a name the fuzzer will not delete by chance."""
SENDING_DOMAIN = "fuzzed.example"
"""The tenant's sending domain: the sender of the messages sent with ``_deliverable``."""
SENDING = ("POST", "/v1/messages")
Operation = APIOperation[Any, Any, Any, Any]
STARTUP_DEADLINE = 30.0


class ServedApi:
    """The admin app on a SQLite store under ``data_dir``, served in a thread."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = 0
        self.tenant_key = ""
        self._ready = threading.Event()
        self._server: uvicorn.Server | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fuzzed-api", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServedApi:
        self._thread.start()
        if not self._ready.wait(STARTUP_DEADLINE):
            raise TimeoutError("the API did not start")
        if self._failure is not None:
            raise RuntimeError("the API did not start") from self._failure
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(STARTUP_DEADLINE)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        url = f"sqlite:{self.data_dir / 'penguin.db'}"
        store = open_store(url)
        await store.migrate()
        book = TenantSettingsBook(Settings())
        try:
            async with services_on(
                store, url, FakeClock(), book, self.data_dir / "var"
            ) as services:
                _, self.tenant_key = await make_tenant_key(services, FUZZED_TENANT)
                await services.provisioning.add_domain(FUZZED_TENANT, SENDING_DOMAIN)
                config = uvicorn.Config(create_app(services), log_level="warning", lifespan="off")
                self._server = uvicorn.Server(config)
                listening = socket.socket()
                listening.bind(("127.0.0.1", 0))
                listening.listen()  # connections wait in the backlog until uvicorn accepts
                self.port = listening.getsockname()[1]
                self._ready.set()
                await self._server.serve(sockets=[listening])
        finally:
            await store.close()


@pytest.fixture(scope="module")
def served_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApi]:
    with ServedApi(tmp_path_factory.mktemp("fuzzed-api")) as served:
        yield served


def test_every_operation_keeps_its_contract(served_api: ServedApi) -> None:
    schema = schemathesis.openapi.from_url(f"{served_api.base_url}/openapi.json")
    failures: list[str] = []
    for operation in schema.get_all_operations():
        if isinstance(operation, Err):
            failures.append(f"an operation the fuzzer cannot read: {operation.err()}")
            continue
        fuzzed = operation.ok()
        for caller, mode, headers in _callers(fuzzed, served_api):
            try:
                _fuzz(fuzzed, caller, mode, headers, served_api)
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{fuzzed.label} ({caller}, {mode.value} data): {exc}")
    assert not failures, "\n\n".join(failures)


def _callers(
    operation: Operation, served_api: ServedApi
) -> Iterator[tuple[str, GenerationMode, dict[str, str]]]:
    """Who calls ``operation``, with which data, sending which headers: the operator
    on its routes; elsewhere the tenant's key, and the operator acting for the tenant."""
    if OPERATOR_TAG in operation.definition.raw.get("tags", []):
        for mode in GenerationMode:
            yield "operator", mode, bearer(OPERATOR_TOKEN)
        return
    for mode in GenerationMode:
        yield "tenant key", mode, bearer(served_api.tenant_key)
    if (operation.method.upper(), operation.path) == SENDING:
        yield "tenant key, deliverable", GenerationMode.POSITIVE, bearer(served_api.tenant_key)
    yield "operator for the tenant", GenerationMode.POSITIVE, as_operator(FUZZED_TENANT)


def _fuzz(
    operation: Operation,
    caller: str,
    mode: GenerationMode,
    headers: dict[str, str],
    served_api: ServedApi,
) -> None:
    """``MAX_EXAMPLES`` requests to ``operation`` generated in ``mode`` (data valid
    by the schema, or not), sent with ``headers``, each answer checked."""
    cases = operation.as_strategy(mode)
    if "deliverable" in caller:
        cases = cases.map(_deliverable)

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(cases)
    def requests(case: schemathesis.Case[Operation]) -> None:
        case.call_and_validate(
            base_url=served_api.base_url,
            headers=headers,
            checks=[
                not_a_server_error,
                status_code_conformance,
                content_type_conformance,
                response_schema_conformance,
            ],
        )

    requests()


def _deliverable(case: schemathesis.Case[Operation]) -> schemathesis.Case[Operation]:
    """``case`` (a message) from the tenant's sending domain to addresses that parse,
    so that its other fields get past the envelope and are accepted or refused."""
    if isinstance(case.body, dict):
        case.body["from"] = f"sender@{SENDING_DOMAIN}"
        for field in ("to", "cc", "bcc", "reply_to"):
            addresses = case.body.get(field)
            if isinstance(addresses, list):
                case.body[field] = [
                    f"{field}{index}@example.net" for index in range(len(addresses))
                ]
        if "raw" not in case.body:
            if not case.body.get("to"):
                case.body["to"] = ["to@example.net"]
            if not case.body.get("text") and not case.body.get("html"):
                case.body["text"] = "Hello."
    return case


def test_a_body_that_cannot_be_parsed_is_invalid(served_api: ServedApi) -> None:
    # Found by the fuzzing: bytes that are not UTF-8 answered an undocumented 400.
    response = httpx.post(
        f"{served_api.base_url}/v1/api-keys",
        content=b"\xff\xfe{",
        headers={**bearer(served_api.tenant_key), "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json() == {
        "error": {"code": "invalid", "message": "the body cannot be parsed", "field": None}
    }
