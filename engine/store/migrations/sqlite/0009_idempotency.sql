-- Idempotency keys of HTTP submissions: a tenant's key, the hash of the request
-- that first used it and the response it got (JSON text). Written in the
-- acceptance's transaction; rows older than a day are swept.

CREATE TABLE idempotency_keys (
    tenant_id INTEGER NOT NULL REFERENCES tenants (id),
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
