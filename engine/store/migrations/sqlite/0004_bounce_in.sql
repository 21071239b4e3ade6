-- Inbound bounces and complaints (bounce_in): each message the bounce listener
-- accepts, raw, until it is processed; 'unmatched' rows keep the ones nothing
-- could be attributed to, with the reason. soft_bounces counts the soft
-- failures per tenant and address for the suppression policy.

CREATE TABLE inbound (
    id TEXT PRIMARY KEY,
    received_at REAL NOT NULL,
    peer TEXT NOT NULL,
    mail_from TEXT NOT NULL,
    rcpt_tos TEXT NOT NULL,
    data BLOB NOT NULL,
    state TEXT NOT NULL,
    lease_expires REAL,
    reason TEXT NOT NULL DEFAULT '',
    processed_at REAL
);
CREATE INDEX inbound_pending ON inbound (received_at) WHERE state = 'pending';
CREATE INDEX inbound_state ON inbound (state, received_at);

CREATE TABLE soft_bounces (
    inbound_id TEXT NOT NULL,
    tenant_id INTEGER NOT NULL,
    address TEXT NOT NULL CHECK (address = lower(address)),
    at REAL NOT NULL,
    PRIMARY KEY (inbound_id, address)
) WITHOUT ROWID;
CREATE INDEX soft_bounces_address ON soft_bounces (tenant_id, address, at);
