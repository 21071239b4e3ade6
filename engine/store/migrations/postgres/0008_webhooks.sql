-- Webhooks: a tenant's endpoints, each posted the record types it wants, and
-- the outbox of their deliveries (one row per POST, retried until delivered or
-- failed). The dispatcher follows the record log from webhook_cursor and queues
-- deliveries in the transaction that moves the cursor.
--
-- records.txid is the writing transaction's id: the dispatcher reads only the
-- records of transactions older than every running one, by (txid, seq), so a
-- record committed late under a smaller seq is never skipped. Rows older than
-- this migration have none (no webhook existed to follow them). records_tenant
-- serves a tenant's record listing (GET /v1/records).

ALTER TABLE records ADD COLUMN txid bigint;
ALTER TABLE records ALTER COLUMN txid SET DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX records_txid ON records (txid, seq) WHERE txid IS NOT NULL;
CREATE INDEX records_tenant ON records (tenant_id, seq);

CREATE TABLE webhooks (
    id text PRIMARY KEY,
    tenant_id bigint NOT NULL REFERENCES tenants (id),
    url text NOT NULL,
    record_types text NOT NULL,
    format text NOT NULL,
    batch_size integer NOT NULL,
    enabled boolean NOT NULL,
    secret_sealed bytea NOT NULL,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL
);
CREATE INDEX webhooks_tenant ON webhooks (tenant_id, created_at);

CREATE TABLE webhook_deliveries (
    id bigserial PRIMARY KEY,
    webhook_id text NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    tenant_id bigint NOT NULL REFERENCES tenants (id),
    payload text NOT NULL,
    record_count integer NOT NULL,
    state text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    next_at double precision NOT NULL,
    lease_token text,
    lease_expires double precision,
    last_status integer,
    last_error text,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (webhook_id, id);
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (updated_at)
    WHERE state <> 'pending';

CREATE TABLE webhook_cursor (
    id integer PRIMARY KEY CHECK (id = 1),
    txid bigint NOT NULL,
    seq bigint NOT NULL
);
INSERT INTO webhook_cursor (id, txid, seq) VALUES (1, 0, 0);

GRANT SELECT, INSERT, UPDATE, DELETE ON webhooks, webhook_deliveries TO penguin_tenant;
GRANT USAGE ON SEQUENCE webhook_deliveries_id_seq TO penguin_tenant;

ALTER TABLE webhooks ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhooks TO penguin_tenant
    USING (tenant_id = NULLIF(current_setting('penguin.tenant_id', true), '')::bigint);
CREATE POLICY tenant_isolation ON webhook_deliveries TO penguin_tenant
    USING (tenant_id = NULLIF(current_setting('penguin.tenant_id', true), '')::bigint);
