-- Campaigns: a tenant's template sent to a recipient list. The name is the
-- campaign of the queue campaign:tenant@domain, unique per tenant. A
-- recipient row is pending until expansion accepts its message (queued, with
-- the message's id) or skips it (suppressed, invalid, failed, with why).

CREATE TABLE campaigns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id INTEGER NOT NULL REFERENCES tenants (id),
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    template TEXT NOT NULL,
    tracking_domain TEXT,
    pool TEXT,
    priority TEXT,
    send_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX campaigns_state ON campaigns (state);

CREATE TABLE campaign_recipients (
    campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
    tenant_id INTEGER NOT NULL REFERENCES tenants (id),
    row_no INTEGER NOT NULL,
    address TEXT NOT NULL,
    variables TEXT NOT NULL,
    status TEXT NOT NULL,
    message_id TEXT,
    reason TEXT,
    PRIMARY KEY (campaign_id, row_no)
);
CREATE INDEX campaign_recipients_pending ON campaign_recipients (campaign_id, row_no)
    WHERE status = 'pending';
