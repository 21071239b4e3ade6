-- Tracking domains: host names a tenant's links and open pixels are served on.
-- A name belongs to one tenant; a tenant has at most one default.

CREATE TABLE tracking_domains (
    id INTEGER PRIMARY KEY,
    tenant_id INTEGER NOT NULL REFERENCES tenants (id),
    name TEXT NOT NULL UNIQUE,
    is_default INTEGER NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1)),
    created_at REAL NOT NULL
);
CREATE INDEX tracking_domains_tenant ON tracking_domains (tenant_id);
CREATE UNIQUE INDEX tracking_domains_default ON tracking_domains (tenant_id) WHERE is_default;
