-- Hangar control plane: tenants, tokens, data-plane cells, environments, idempotency keys and
-- the audit log.

CREATE TABLE tenants (
    id           uuid PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    display_name text,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tokens (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         text NOT NULL,
    role         text NOT NULL CHECK (role IN ('viewer', 'editor', 'admin')),
    -- SHA-256 of the whole token: tokens are 190 bits of randomness, so a fast hash is enough.
    token_hash   bytea NOT NULL UNIQUE,
    prefix       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX tokens_tenant ON tokens (tenant_id, created_at);

CREATE TABLE cells (
    id               uuid PRIMARY KEY,
    name             text NOT NULL UNIQUE,
    runtime          text NOT NULL CHECK (runtime IN ('process', 'kubernetes')),
    token_hash       bytea NOT NULL UNIQUE,
    max_environments integer,
    worker_slots     integer,
    agent_version    text,
    registered_at    timestamptz,
    last_seen_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- Every change of an environment's desired state or placement takes the next number, so an
-- agent can ask for "what changed on my cell since N".
CREATE SEQUENCE environment_changes;

CREATE TABLE environments (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name             text NOT NULL,
    spec             jsonb NOT NULL,
    revision         bigint NOT NULL DEFAULT 1,
    phase            text NOT NULL,
    status_message   text,
    delete_requested boolean NOT NULL DEFAULT false,
    cell_id          uuid REFERENCES cells (id),
    change_seq       bigint NOT NULL DEFAULT nextval('environment_changes'),
    observed         jsonb,
    observed_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz
);
-- A name is taken while its environment lives; a deleted environment frees it.
CREATE UNIQUE INDEX environments_live_name ON environments (tenant_id, name) WHERE phase <> 'DELETED';
CREATE INDEX environments_by_cell ON environments (cell_id, change_seq);
CREATE INDEX environments_unplaced ON environments (created_at) WHERE cell_id IS NULL AND phase <> 'DELETED';

CREATE TABLE idempotency_keys (
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key            text NOT NULL,
    request_hash   bytea NOT NULL,
    environment_id uuid NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);

CREATE TABLE audit_log (
    id         bigserial PRIMARY KEY,
    tenant_id  uuid REFERENCES tenants (id) ON DELETE CASCADE,
    actor      text NOT NULL,
    action     text NOT NULL,
    target     text NOT NULL,
    request_id text,
    details    jsonb NOT NULL DEFAULT '{}'::jsonb,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);
