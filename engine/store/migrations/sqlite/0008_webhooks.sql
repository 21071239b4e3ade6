-- Webhooks: a tenant's endpoints, each posted the record types it wants, and
-- the outbox of their deliveries (one row per POST, retried until delivered or
-- failed). The dispatcher follows the record log by seq from webhook_cursor
-- (one writer at a time: records commit in seq order) and queues deliveries in
-- the transaction that moves the cursor, which starts at the end of the log.
-- records_tenant serves a tenant's record
-- listing (GET /v1/records).

CREATE INDEX records_tenant ON records (tenant_id, seq);

CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    tenant_id INTEGER NOT NULL REFERENCES tenants (id),
    url TEXT NOT NULL,
    record_types TEXT NOT NULL,
    format TEXT NOT NULL,
    batch_size INTEGER NOT NULL,
    enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    secret_sealed BLOB NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX webhooks_tenant ON webhooks (tenant_id, created_at);

CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    tenant_id INTEGER NOT NULL REFERENCES tenants (id),
    payload TEXT NOT NULL,
    record_count INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    lease_token TEXT,
    lease_expires REAL,
    last_status INTEGER,
    last_error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (webhook_id, id);
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (updated_at)
    WHERE state <> 'pending';

CREATE TABLE webhook_cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    txid INTEGER NOT NULL,
    seq INTEGER NOT NULL
);
INSERT INTO webhook_cursor (id, txid, seq) SELECT 1, 0, coalesce(max(seq), 0) FROM records;
