-- Tracking domains: host names a tenant's links and open pixels are served on.
-- A name belongs to one tenant; a tenant has at most one default. Row-level
-- security for the role penguin_tenant, as the tenant tables of 0001.

CREATE TABLE tracking_domains (
    id bigserial PRIMARY KEY,
    tenant_id bigint NOT NULL REFERENCES tenants (id),
    name text NOT NULL UNIQUE,
    is_default boolean NOT NULL DEFAULT false,
    created_at double precision NOT NULL
);
CREATE INDEX tracking_domains_tenant ON tracking_domains (tenant_id);
CREATE UNIQUE INDEX tracking_domains_default ON tracking_domains (tenant_id) WHERE is_default;

GRANT SELECT, INSERT, UPDATE, DELETE ON tracking_domains TO penguin_tenant;
GRANT USAGE ON SEQUENCE tracking_domains_id_seq TO penguin_tenant;

ALTER TABLE tracking_domains ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tracking_domains TO penguin_tenant
    USING (tenant_id = NULLIF(current_setting('penguin.tenant_id', true), '')::bigint);
