-- Portal browser sessions, kept server-side so that signing out ends one at once and revoking
-- the token it was opened with ends all of them. The cookie carries a random secret; only its
-- SHA-256 is kept. Each session has its own CSRF token for its forms.
CREATE TABLE portal_sessions (
    secret_hash     bytea PRIMARY KEY,
    csrf_token      text NOT NULL,
    credential_kind text NOT NULL,
    credential_hash bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);
CREATE INDEX portal_sessions_expiry ON portal_sessions (expires_at);

-- One-time sign-in links (`hangar portal-login`): a link is used by deleting its row, so it
-- opens one session only, whichever control-plane replica serves it.
CREATE TABLE portal_login_links (
    secret_hash     bytea PRIMARY KEY,
    credential_kind text NOT NULL,
    credential_hash bytea NOT NULL,
    tenant          text,
    expires_at      timestamptz NOT NULL
);
