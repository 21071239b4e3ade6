-- Stats rollups: counters per tenant, time bucket, campaign, sending domain and
-- provider, kept from the record log by the stats service (engine.rollup); bounces
-- also by category. Each count is kept per hour (span 3600) and per day (span
-- 86400, so queries by day, campaign, domain or provider read 24 times fewer
-- rows); bucket is the POSIX second its hour or day starts. stat_cursor holds the
-- log position counted to (as webhook_cursor: txid and seq), changed in the same
-- transaction as the counters, and the lease of the one process that applies them.

CREATE TABLE stat_counts (
    tenant_id INTEGER NOT NULL,
    span INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    campaign TEXT NOT NULL,
    domain TEXT NOT NULL,
    provider TEXT NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0,
    delivered INTEGER NOT NULL DEFAULT 0,
    deferred INTEGER NOT NULL DEFAULT 0,
    bounced INTEGER NOT NULL DEFAULT 0,
    expired INTEGER NOT NULL DEFAULT 0,
    complained INTEGER NOT NULL DEFAULT 0,
    unsubscribed INTEGER NOT NULL DEFAULT 0,
    opens INTEGER NOT NULL DEFAULT 0,
    opens_unique INTEGER NOT NULL DEFAULT 0,
    opens_human INTEGER NOT NULL DEFAULT 0,
    opens_human_unique INTEGER NOT NULL DEFAULT 0,
    clicks INTEGER NOT NULL DEFAULT 0,
    clicks_unique INTEGER NOT NULL DEFAULT 0,
    clicks_human INTEGER NOT NULL DEFAULT 0,
    clicks_human_unique INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, span, bucket, campaign, domain, provider)
) WITHOUT ROWID;

CREATE TABLE stat_bounces (
    tenant_id INTEGER NOT NULL,
    span INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    campaign TEXT NOT NULL,
    domain TEXT NOT NULL,
    provider TEXT NOT NULL,
    category TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, span, bucket, campaign, domain, provider, category)
) WITHOUT ROWID;

CREATE TABLE stat_cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    txid INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    owner TEXT,
    lease_expires REAL
);
INSERT INTO stat_cursor (id, txid, seq) VALUES (1, 0, 0);
