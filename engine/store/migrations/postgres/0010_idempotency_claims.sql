-- Idempotency keys are claimed before the acceptance: a request writes its key
-- as pending under a random claim token, the acceptance's transaction fills in
-- the response (by that token) and clears pending, a failed request deletes its
-- claim. Rows of 0009 are answered ones.

ALTER TABLE idempotency_keys ADD COLUMN claim_token text NOT NULL DEFAULT '';
ALTER TABLE idempotency_keys ADD COLUMN pending boolean NOT NULL DEFAULT false;
