-- AWS-style access keys of a tenant, for the MWAA-compatible API (Signature V4). Unlike a
-- token, the secret must be known to check a signature: it is kept sealed with the control
-- plane's master key (bound to the key's id), never in clear.
CREATE TABLE access_keys (
    id                 uuid PRIMARY KEY,
    tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name               text NOT NULL,
    role               text NOT NULL CHECK (role IN ('viewer', 'editor', 'admin')),
    access_key_id      text NOT NULL UNIQUE,
    secret_sealed      bytea NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    last_used_at       timestamptz,
    revoked_at         timestamptz
);
CREATE INDEX access_keys_tenant ON access_keys (tenant_id);

-- What an environment created through the MWAA-compatible API was given that Hangar has no use
-- for (ExecutionRoleArn, NetworkConfiguration, SourceBucketArn, …): kept verbatim and given back.
CREATE TABLE mwaa_fields (
    environment_id uuid PRIMARY KEY REFERENCES environments (id) ON DELETE CASCADE,
    fields         jsonb NOT NULL DEFAULT '{}'
);
