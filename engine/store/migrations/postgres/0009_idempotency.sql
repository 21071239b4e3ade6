-- Idempotency keys of HTTP submissions: a tenant's key, the hash of the request
-- that first used it and the response it got (JSON text). Written in the
-- acceptance's transaction; rows older than a day are swept. Row-level
-- security for the role penguin_tenant, as the tenant tables of 0001.

CREATE TABLE idempotency_keys (
    tenant_id bigint NOT NULL REFERENCES tenants (id),
    key text NOT NULL,
    request_hash text NOT NULL,
    response text NOT NULL,
    created_at double precision NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO penguin_tenant;

ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON idempotency_keys TO penguin_tenant
    USING (tenant_id = NULLIF(current_setting('penguin.tenant_id', true), '')::bigint);
