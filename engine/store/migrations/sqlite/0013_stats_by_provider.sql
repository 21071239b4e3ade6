-- Stats rollups by provider: stat_counts and stat_bounces summed over campaign and
-- sending domain, kept by the stats service in the same transaction as those. A query
-- that neither groups nor filters by campaign or domain reads these: by provider and
-- hour it reads one row per provider and hour instead of one per campaign, domain,
-- provider and hour. Filled here from the rollup counted so far.

CREATE TABLE stat_provider_counts (
    tenant_id INTEGER NOT NULL,
    span INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
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
    PRIMARY KEY (tenant_id, span, bucket, provider)
) WITHOUT ROWID;

CREATE TABLE stat_provider_bounces (
    tenant_id INTEGER NOT NULL,
    span INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    provider TEXT NOT NULL,
    category TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, span, bucket, provider, category)
) WITHOUT ROWID;

INSERT INTO stat_provider_counts (tenant_id, span, bucket, provider,
    sent, delivered, deferred, bounced, expired, complained, unsubscribed, opens, opens_unique, opens_human, opens_human_unique, clicks, clicks_unique, clicks_human, clicks_human_unique)
SELECT tenant_id, span, bucket, provider,
    sum(sent), sum(delivered), sum(deferred), sum(bounced), sum(expired), sum(complained), sum(unsubscribed), sum(opens), sum(opens_unique), sum(opens_human), sum(opens_human_unique), sum(clicks), sum(clicks_unique), sum(clicks_human), sum(clicks_human_unique)
FROM stat_counts GROUP BY tenant_id, span, bucket, provider;

INSERT INTO stat_provider_bounces (tenant_id, span, bucket, provider, category, count)
SELECT tenant_id, span, bucket, provider, category, sum(count)
FROM stat_bounces GROUP BY tenant_id, span, bucket, provider, category;
