-- Tenants' API keys: identified by a unique prefix, verified against the SHA-256
-- of their secret (the token itself is never stored); scopes as sorted,
-- space-separated words. A revoked key keeps its row with revoked_at set.

CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY,
    tenant_id INTEGER NOT NULL REFERENCES tenants (id),
    prefix TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    secret_hash BLOB NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);
