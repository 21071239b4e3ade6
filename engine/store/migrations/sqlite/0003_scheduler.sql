-- The scheduler's tables: message priority and per-queue claim indexes, the
-- catalogue of scheduled queues (bump grows each time mail is added to one),
-- suspensions, warmup day counts and the engines' status reports.

ALTER TABLE messages ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
CREATE INDEX messages_queue_priority ON messages (queue, priority DESC, due_at)
    WHERE state = 'queued';
CREATE INDEX messages_queue_due ON messages (queue, due_at) WHERE state = 'queued';

CREATE TABLE queues (
    name TEXT PRIMARY KEY,
    tenant_id INTEGER NOT NULL,
    campaign TEXT NOT NULL,
    domain TEXT NOT NULL,
    bump INTEGER NOT NULL
);
CREATE INDEX queues_bump ON queues (bump);

CREATE TABLE suspensions (
    id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at REAL NOT NULL,
    until REAL NOT NULL,
    origin TEXT NOT NULL
);
CREATE INDEX suspensions_until ON suspensions (until);
CREATE INDEX suspensions_target ON suspensions (scope, target);

CREATE TABLE warmup_days (
    source TEXT NOT NULL,
    provider TEXT NOT NULL,
    day INTEGER NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0,
    deferred INTEGER NOT NULL DEFAULT 0,
    complained INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (source, provider, day)
) WITHOUT ROWID;
CREATE INDEX warmup_days_day ON warmup_days (day);

CREATE TABLE engine_status (
    owner TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    updated_at REAL NOT NULL
);
