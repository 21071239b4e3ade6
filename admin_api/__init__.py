"""admin_api: the HTTP API for tenants and operators.

Owns the FastAPI application (OpenAPI), HTTP injection (``/v1/messages`` and
KumoMTA's ``/api/inject/v1``), campaigns and tenant-scoped API keys.
"""
