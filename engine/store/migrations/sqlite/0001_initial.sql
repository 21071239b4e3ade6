-- Tenants, their domains, SMTP users and suppressions; the spool (bodies,
-- messages) and the log records. Times are POSIX seconds (REAL).

CREATE TABLE tenants (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);

CREATE TABLE sending_domains (
    id INTEGER PRIMARY KEY,
    tenant_id INTEGER NOT NULL REFERENCES tenants (id),
    name TEXT NOT NULL UNIQUE,
    selector TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    private_key_sealed BLOB NOT NULL,
    public_key_b64 TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX sending_domains_tenant ON sending_domains (tenant_id);

CREATE TABLE smtp_users (
    id INTEGER PRIMARY KEY,
    tenant_id INTEGER NOT NULL REFERENCES tenants (id),
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at REAL NOT NULL
);

CREATE TABLE suppressions (
    tenant_id INTEGER NOT NULL REFERENCES tenants (id),
    address TEXT NOT NULL CHECK (address = lower(address)),
    reason TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, address)
) WITHOUT ROWID;

CREATE TABLE bodies (
    id TEXT PRIMARY KEY,
    tenant_id INTEGER NOT NULL REFERENCES tenants (id),
    data BLOB NOT NULL,
    created_at REAL NOT NULL
);

CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    submission_id TEXT NOT NULL REFERENCES bodies (id),
    tenant_id INTEGER NOT NULL REFERENCES tenants (id),
    queue TEXT NOT NULL,
    campaign TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    domain TEXT NOT NULL,
    state TEXT NOT NULL,
    due_at REAL NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_expires REAL,
    last_error TEXT
);
CREATE INDEX messages_claim ON messages (state, due_at);
CREATE INDEX messages_lease ON messages (lease_expires) WHERE state = 'leased';
CREATE INDEX messages_submission ON messages (submission_id);
CREATE INDEX messages_tenant ON messages (tenant_id, created_at);

CREATE TABLE records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id INTEGER,
    message_id TEXT,
    type TEXT NOT NULL,
    timestamp REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX records_message ON records (message_id, seq);
