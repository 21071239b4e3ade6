-- Each claim leases its messages under a token of its own: a settlement or a
-- renewal applies only with the token of the claim that holds the lease.

ALTER TABLE messages ADD COLUMN lease_token text;
CREATE INDEX messages_lease_token ON messages (lease_token) WHERE state = 'leased';
