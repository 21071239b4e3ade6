-- Campaigns: a tenant's template sent to a recipient list. The name is the
-- campaign of the queue campaign:tenant@domain, unique per tenant. A
-- recipient row is pending until expansion accepts its message (queued, with
-- the message's id) or skips it (suppressed, invalid, failed, with why).
-- Row-level security for the role penguin_tenant, as the tenant tables of 0001.

CREATE TABLE campaigns (
    id bigserial PRIMARY KEY,
    tenant_id bigint NOT NULL REFERENCES tenants (id),
    name text NOT NULL,
    state text NOT NULL,
    template text NOT NULL,
    tracking_domain text,
    pool text,
    priority text,
    send_at double precision,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX campaigns_state ON campaigns (state);

CREATE TABLE campaign_recipients (
    campaign_id bigint NOT NULL REFERENCES campaigns (id),
    tenant_id bigint NOT NULL REFERENCES tenants (id),
    row_no bigint NOT NULL,
    address text NOT NULL,
    variables text NOT NULL,
    status text NOT NULL,
    message_id text,
    reason text,
    PRIMARY KEY (campaign_id, row_no)
);
CREATE INDEX campaign_recipients_pending ON campaign_recipients (campaign_id, row_no)
    WHERE status = 'pending';

GRANT SELECT, INSERT, UPDATE, DELETE ON campaigns, campaign_recipients TO penguin_tenant;
GRANT USAGE ON SEQUENCE campaigns_id_seq TO penguin_tenant;

ALTER TABLE campaigns ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON campaigns TO penguin_tenant
    USING (tenant_id = NULLIF(current_setting('penguin.tenant_id', true), '')::bigint);
ALTER TABLE campaign_recipients ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON campaign_recipients TO penguin_tenant
    USING (tenant_id = NULLIF(current_setting('penguin.tenant_id', true), '')::bigint);
