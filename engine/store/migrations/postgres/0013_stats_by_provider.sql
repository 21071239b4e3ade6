-- Stats rollups by provider: stat_counts and stat_bounces summed over campaign and
-- sending domain, kept by the stats service in the same transaction as those. A query
-- that neither groups nor filters by campaign or domain reads these: by provider and
-- hour it reads one row per provider and hour instead of one per campaign, domain,
-- provider and hour. Filled here from the rollup counted so far.
-- Tenants read their own rows (row-level security, as the tenant tables of 0001).

CREATE TABLE stat_provider_counts (
    tenant_id bigint NOT NULL,
    span bigint NOT NULL,
    bucket bigint NOT NULL,
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
    PRIMARY KEY (tenant_id, span, bucket, provider)
);

CREATE TABLE stat_provider_bounces (
    tenant_id bigint NOT NULL,
    span bigint NOT NULL,
    bucket bigint NOT NULL,
    provider text NOT NULL,
    category text NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (tenant_id, span, bucket, provider, category)
);

INSERT INTO stat_provider_counts (tenant_id, span, bucket, provider,
    sent, delivered, deferred, bounced, expired, complained, unsubscribed, opens, opens_unique, opens_human, opens_human_unique, clicks, clicks_unique, clicks_human, clicks_human_unique)
SELECT tenant_id, span, bucket, provider,
    sum(sent)::bigint, sum(delivered)::bigint, sum(deferred)::bigint, sum(bounced)::bigint, sum(expired)::bigint, sum(complained)::bigint, sum(unsubscribed)::bigint, sum(opens)::bigint, sum(opens_unique)::bigint, sum(opens_human)::bigint, sum(opens_human_unique)::bigint, sum(clicks)::bigint, sum(clicks_unique)::bigint, sum(clicks_human)::bigint, sum(clicks_human_unique)::bigint
FROM stat_counts GROUP BY tenant_id, span, bucket, provider;

INSERT INTO stat_provider_bounces (tenant_id, span, bucket, provider, category, count)
SELECT tenant_id, span, bucket, provider, category, sum(count)::bigint
FROM stat_bounces GROUP BY tenant_id, span, bucket, provider, category;

GRANT SELECT ON stat_provider_counts, stat_provider_bounces TO penguin_tenant;

ALTER TABLE stat_provider_counts ENABLE ROW LEVEL SECURITY;
ALTER TABLE stat_provider_bounces ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON stat_provider_counts TO penguin_tenant
    USING (tenant_id = NULLIF(current_setting('penguin.tenant_id', true), '')::bigint);
CREATE POLICY tenant_isolation ON stat_provider_bounces TO penguin_tenant
    USING (tenant_id = NULLIF(current_setting('penguin.tenant_id', true), '')::bigint);
