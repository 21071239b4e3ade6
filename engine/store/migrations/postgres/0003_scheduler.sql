-- The scheduler's tables: message priority and per-queue claim indexes, the
-- catalogue of scheduled queues (bump grows each time mail is added to one,
-- from the sequence queue_bump), suspensions, warmup day counts and the
-- engines' status reports.

ALTER TABLE messages ADD COLUMN priority integer NOT NULL DEFAULT 0;
CREATE INDEX messages_queue_priority ON messages (queue, priority DESC, due_at)
    WHERE state = 'queued';
CREATE INDEX messages_queue_due ON messages (queue, due_at) WHERE state = 'queued';

CREATE SEQUENCE queue_bump;
CREATE TABLE queues (
    name text PRIMARY KEY,
    tenant_id bigint NOT NULL,
    campaign text NOT NULL,
    domain text NOT NULL,
    bump bigint NOT NULL
);
CREATE INDEX queues_bump ON queues (bump);

CREATE TABLE suspensions (
    id bigserial PRIMARY KEY,
    scope text NOT NULL,
    target text NOT NULL,
    reason text NOT NULL,
    created_at double precision NOT NULL,
    until double precision NOT NULL,
    origin text NOT NULL
);
CREATE INDEX suspensions_until ON suspensions (until);
CREATE INDEX suspensions_target ON suspensions (scope, target);

CREATE TABLE warmup_days (
    source text NOT NULL,
    provider text NOT NULL,
    day integer NOT NULL,
    sent bigint NOT NULL DEFAULT 0,
    deferred bigint NOT NULL DEFAULT 0,
    complained bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (source, provider, day)
);
CREATE INDEX warmup_days_day ON warmup_days (day);

CREATE TABLE engine_status (
    owner text PRIMARY KEY,
    data text NOT NULL,
    updated_at double precision NOT NULL
);
