-- Web login tokens already exchanged for a session, by the hash of the sealed token, until
-- they expire: each opens one session, whichever control-plane replica it reaches.
CREATE TABLE used_web_logins (
    hash       bytea PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
