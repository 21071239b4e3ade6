-- Tenant settings an operator sets over the API or the CLI: the pool, the
-- priority and the quotas, each overriding the tenant's [tenants.NAME] table
-- of the config; NULL leaves the config's value in force. Tenants may read
-- their own row (row-level security, as the tenant tables of 0001), not change it.

CREATE TABLE tenant_settings (
    tenant_id bigint PRIMARY KEY REFERENCES tenants (id),
    pool text,
    priority text,
    daily_quota bigint,
    rate_quota text,
    updated_at double precision NOT NULL
);

GRANT SELECT ON tenant_settings TO penguin_tenant;

ALTER TABLE tenant_settings ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_settings TO penguin_tenant
    USING (tenant_id = NULLIF(current_setting('penguin.tenant_id', true), '')::bigint);
