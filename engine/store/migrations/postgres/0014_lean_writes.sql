-- Fewer bytes and index entries written per message.
--
-- A body of up to about 8 KB stays in its row as it came: a row over the default
-- threshold (about 2 KB, so most mail) was compressed and moved to the TOAST table,
-- each a compression attempt, a second row and an index entry more per message.
--
-- The claim index holds only the messages not yet finished: a settlement that
-- delivers, bounces or expires a message adds no entry to it.
--
-- Settlements and renewals find a leased message by its id (and check its token),
-- so the index of lease tokens goes: every message of a claim shared one token,
-- and a settlement that went through it read every message of its claim.
--
-- A record's data is kept as the JSON text written (json, not jsonb): the log is
-- written once per event and read back whole, which json stores and returns as it
-- is, where jsonb parsed it into its binary form and printed it again. The rare
-- filter on a field (a tenant's records by recipient) parses the rows it reads.
-- Changing the type rewrites the table and its indexes once.

ALTER TABLE bodies SET (toast_tuple_target = 8160);

DROP INDEX messages_claim;
CREATE INDEX messages_claim ON messages (state, due_at)
    WHERE state IN ('queued', 'leased', 'shunted');

DROP INDEX messages_lease_token;

ALTER TABLE records ALTER COLUMN data TYPE json USING data::json;
