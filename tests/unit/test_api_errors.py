"""The API's error body: fields named as dotted paths, provisioning errors mapped."""

from __future__ import annotations

import pytest

from admin_api.errors import field_path, from_provisioning
from engine.provisioning import (
    AlreadyExists,
    Invalid,
    ProvisioningError,
    StoreFailed,
    TenantHasMail,
    Unknown,
)


@pytest.mark.parametrize(
    ("location", "field"),
    [
        (("body", "to", 1), "to[1]"),
        (("body", "attachments", 0, "content"), "attachments[0].content"),
        (("body", "headers", "X-Tag"), "headers.X-Tag"),
        (("body",), None),
        (("query", "limit"), "limit"),
        (("header", "Penguin-Tenant"), "Penguin-Tenant"),
        (("path", "prefix"), "prefix"),
        ((), None),
    ],
)
def test_a_location_is_a_dotted_path(location: tuple[int | str, ...], field: str | None) -> None:
    assert field_path(location) == field


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (Unknown("no tenant named 'x'"), 404, "not_found"),
        (AlreadyExists("tenant 'x' exists"), 409, "conflict"),
        (Invalid("bad"), 422, "invalid"),
        (TenantHasMail("busy", pending=1, forced=False), 409, "tenant_has_mail"),
        (StoreFailed("down"), 503, "unavailable"),
    ],
)
def test_provisioning_errors_map_in_one_place(
    error: ProvisioningError, status: int, code: str
) -> None:
    mapped = from_provisioning(error)
    assert (mapped.status, mapped.code, mapped.message) == (status, code, str(error))
