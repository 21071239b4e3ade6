-- Tenants, their domains, SMTP users and suppressions; the spool (bodies,
-- messages) and the log records. Times are POSIX seconds (double precision).
-- Tenant-owned tables carry row-level security for the role penguin_tenant.

CREATE TABLE tenants (
    id bigserial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    created_at double precision NOT NULL
);

CREATE TABLE sending_domains (
    id bigserial PRIMARY KEY,
    tenant_id bigint NOT NULL REFERENCES tenants (id),
    name text NOT NULL UNIQUE,
    selector text NOT NULL,
    algorithm text NOT NULL,
    private_key_sealed bytea NOT NULL,
    public_key_b64 text NOT NULL,
    created_at double precision NOT NULL
);
CREATE INDEX sending_domains_tenant ON sending_domains (tenant_id);

CREATE TABLE smtp_users (
    id bigserial PRIMARY KEY,
    tenant_id bigint NOT NULL REFERENCES tenants (id),
    username text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    created_at double precision NOT NULL
);

CREATE TABLE suppressions (
    tenant_id bigint NOT NULL REFERENCES tenants (id),
    address text NOT NULL CHECK (address = lower(address)),
    reason text NOT NULL,
    created_at double precision NOT NULL,
    PRIMARY KEY (tenant_id, address)
);

CREATE TABLE bodies (
    id text PRIMARY KEY,
    tenant_id bigint NOT NULL REFERENCES tenants (id),
    data bytea NOT NULL,
    created_at double precision NOT NULL
);

CREATE TABLE messages (
    id text PRIMARY KEY,
    submission_id text NOT NULL REFERENCES bodies (id),
    tenant_id bigint NOT NULL REFERENCES tenants (id),
    queue text NOT NULL,
    campaign text NOT NULL,
    sender text NOT NULL,
    recipient text NOT NULL,
    domain text NOT NULL,
    state text NOT NULL,
    due_at double precision NOT NULL,
    created_at double precision NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    lease_owner text,
    lease_expires double precision,
    last_error text
);
CREATE INDEX messages_claim ON messages (state, due_at);
CREATE INDEX messages_lease ON messages (lease_expires) WHERE state = 'leased';
CREATE INDEX messages_submission ON messages (submission_id);
CREATE INDEX messages_tenant ON messages (tenant_id, created_at);

CREATE TABLE records (
    seq bigserial PRIMARY KEY,
    tenant_id bigint,
    message_id text,
    type text NOT NULL,
    timestamp double precision NOT NULL,
    data jsonb NOT NULL
);
CREATE INDEX records_message ON records (message_id, seq);

-- Roles are cluster-wide: another database may create it at the same moment.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'penguin_tenant') THEN
        BEGIN
            CREATE ROLE penguin_tenant NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       AND NOT pg_has_role(current_user, 'penguin_tenant', 'MEMBER') THEN
        EXECUTE format('GRANT penguin_tenant TO %I', current_user);
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO penguin_tenant', current_schema());
    EXECUTE format(
        'GRANT USAGE ON ALL SEQUENCES IN SCHEMA %I TO penguin_tenant', current_schema()
    );
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE
    ON sending_domains, smtp_users, suppressions, bodies, messages, records
    TO penguin_tenant;

ALTER TABLE sending_domains ENABLE ROW LEVEL SECURITY;
ALTER TABLE smtp_users ENABLE ROW LEVEL SECURITY;
ALTER TABLE suppressions ENABLE ROW LEVEL SECURITY;
ALTER TABLE bodies ENABLE ROW LEVEL SECURITY;
ALTER TABLE messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE records ENABLE ROW LEVEL SECURITY;

-- NULLIF: once set in a session, an unset custom setting reads as '' not NULL.
CREATE POLICY tenant_isolation ON sending_domains TO penguin_tenant
    USING (tenant_id = NULLIF(current_setting('penguin.tenant_id', true), '')::bigint);
CREATE POLICY tenant_isolation ON smtp_users TO penguin_tenant
    USING (tenant_id = NULLIF(current_setting('penguin.tenant_id', true), '')::bigint);
CREATE POLICY tenant_isolation ON suppressions TO penguin_tenant
    USING (tenant_id = NULLIF(current_setting('penguin.tenant_id', true), '')::bigint);
CREATE POLICY tenant_isolation ON bodies TO penguin_tenant
    USING (tenant_id = NULLIF(current_setting('penguin.tenant_id', true), '')::bigint);
CREATE POLICY tenant_isolation ON messages TO penguin_tenant
    USING (tenant_id = NULLIF(current_setting('penguin.tenant_id', true), '')::bigint);
CREATE POLICY tenant_isolation ON records TO penguin_tenant
    USING (tenant_id = NULLIF(current_setting('penguin.tenant_id', true), '')::bigint);
