-- Stats rollups: counters per tenant, time bucket, campaign, sending domain and
-- provider, kept from the record log by the stats service (engine.rollup); bounces
-- also by category. Each count is kept per hour (span 3600) and per day (span
-- 86400, so queries by day, campaign, domain or provider read 24 times fewer
-- rows); bucket is the POSIX second its hour or day starts. stat_cursor holds the
-- log position counted to (as webhook_cursor: txid and seq), changed in the same
-- transaction as the counters, and the lease of the one process that applies them.
-- Tenants read their own rows (row-level security, as the tenant tables of 0001).

CREATE TABLE stat_counts (
    tenant_id bigint NOT NULL,
    span bigint NOT NULL,
    bucket bigint NOT NULL,
    campaign text NOT NULL,
    domain text NOT NULL,
    provider text NOT NULL,
    sent bigint NOT NULL DEFAULT 0,
    delivered bigint NOT NULL DEFAULT 0,
    deferred bigint NOT NULL DEFAULT 0,
    bounced bigint NOT NULL DEFAULT 0,
    expired bigint NOT NULL DEFAULT 0,
    complained bigint NOT NULL DEFAULT 0,
    unsubscribed bigint NOT NULL DEFAULT 0,
    opens bigint NOT NULL DEFAULT 0,
    opens_unique bigint NOT NULL DEFAULT 0,
    opens_human bigint NOT NULL DEFAULT 0,
    opens_human_unique bigint NOT NULL DEFAULT 0,
    clicks bigint NOT NULL DEFAULT 0,
    clicks_unique bigint NOT NULL DEFAULT 0,
    clicks_human bigint NOT NULL DEFAULT 0,
    clicks_human_unique bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, span, bucket, campaign, domain, provider)
);

CREATE TABLE stat_bounces (
    tenant_id bigint NOT NULL,
    span bigint NOT NULL,
    bucket bigint NOT NULL,
    campaign text NOT NULL,
    domain text NOT NULL,
    provider text NOT NULL,
    category text NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (tenant_id, span, bucket, campaign, domain, provider, category)
);

CREATE TABLE stat_cursor (
    id bigint PRIMARY KEY CHECK (id = 1),
    txid bigint NOT NULL,
    seq bigint NOT NULL,
    owner text,
    lease_expires double precision
);
INSERT INTO stat_cursor (id, txid, seq) VALUES (1, 0, 0);

GRANT SELECT ON stat_counts, stat_bounces TO penguin_tenant;

ALTER TABLE stat_counts ENABLE ROW LEVEL SECURITY;
ALTER TABLE stat_bounces ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON stat_counts TO penguin_tenant
    USING (tenant_id = NULLIF(current_setting('penguin.tenant_id', true), '')::bigint);
CREATE POLICY tenant_isolation ON stat_bounces TO penguin_tenant
    USING (tenant_id = NULLIF(current_setting('penguin.tenant_id', true), '')::bigint);
