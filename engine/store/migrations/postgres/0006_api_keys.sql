-- Tenants' API keys: identified by a unique prefix, verified against the SHA-256
-- of their secret (the token itself is never stored); scopes as sorted,
-- space-separated words. A revoked key keeps its row with revoked_at set.
-- Row-level security for the role penguin_tenant, as the tenant tables of 0001.

CREATE TABLE api_keys (
    id bigserial PRIMARY KEY,
    tenant_id bigint NOT NULL REFERENCES tenants (id),
    prefix text NOT NULL UNIQUE,
    name text NOT NULL,
    scopes text NOT NULL,
    secret_hash bytea NOT NULL,
    created_at double precision NOT NULL,
    revoked_at double precision
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

GRANT SELECT, INSERT, UPDATE, DELETE ON api_keys TO penguin_tenant;
GRANT USAGE ON SEQUENCE api_keys_id_seq TO penguin_tenant;

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys TO penguin_tenant
    USING (tenant_id = NULLIF(current_setting('penguin.tenant_id', true), '')::bigint);
