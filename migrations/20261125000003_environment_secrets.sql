-- Each environment's generated secrets (Fernet key, JWT and API secrets, database, broker and
-- admin passwords), sealed with XChaCha20-Poly1305 under the control plane's master key and
-- bound to the environment's id. NULL only for environments created before this migration.
ALTER TABLE environments ADD COLUMN secrets bytea;
