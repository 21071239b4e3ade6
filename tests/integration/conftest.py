"""Fixtures of the integration tests: the admin API's (``api_support``)."""

from tests.integration.api_support import (
    api_app,
    api_backend,
    api_client,
    api_clock,
    api_database_url,
    api_services,
    api_store,
)

__all__ = [
    "api_app",
    "api_backend",
    "api_client",
    "api_clock",
    "api_database_url",
    "api_services",
    "api_store",
]
