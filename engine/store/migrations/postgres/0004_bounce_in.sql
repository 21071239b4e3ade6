-- Inbound bounces and complaints (bounce_in): each message the bounce listener
-- accepts, raw, until it is processed; 'unmatched' rows keep the ones nothing
-- could be attributed to, with the reason. soft_bounces counts the soft
-- failures per tenant and address for the suppression policy.

CREATE TABLE inbound (
    id text PRIMARY KEY,
    received_at double precision NOT NULL,
    peer text NOT NULL,
    mail_from text NOT NULL,
    rcpt_tos text NOT NULL,
    data bytea NOT NULL,
    state text NOT NULL,
    lease_expires double precision,
    reason text NOT NULL DEFAULT '',
    processed_at double precision
);
CREATE INDEX inbound_pending ON inbound (received_at) WHERE state = 'pending';
CREATE INDEX inbound_state ON inbound (state, received_at);

CREATE TABLE soft_bounces (
    inbound_id text NOT NULL,
    tenant_id bigint NOT NULL,
    address text NOT NULL CHECK (address = lower(address)),
    at double precision NOT NULL,
    PRIMARY KEY (inbound_id, address)
);
CREATE INDEX soft_bounces_address ON soft_bounces (tenant_id, address, at);
