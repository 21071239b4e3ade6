-- Tenant settings an operator sets over the API or the CLI: the pool, the
-- priority and the quotas, each overriding the tenant's [tenants.NAME] table
-- of the config; NULL leaves the config's value in force.

CREATE TABLE tenant_settings (
    tenant_id INTEGER PRIMARY KEY REFERENCES tenants (id),
    pool TEXT,
    priority TEXT,
    daily_quota INTEGER,
    rate_quota TEXT,
    updated_at REAL NOT NULL
);
