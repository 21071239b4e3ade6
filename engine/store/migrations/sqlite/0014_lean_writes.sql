-- Settlements and renewals find a leased message by its id (and check its token),
-- so the index of lease tokens goes: every message of a claim shared one token, and
-- a claim wrote one entry more per message.

DROP INDEX messages_lease_token;
