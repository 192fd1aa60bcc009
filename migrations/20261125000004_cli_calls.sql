-- Airflow CLI commands a tenant runs in its environment (POST …/environments/{env}/cli): queued
-- for the environment's cell, claimed and run by its agent, answered with the result.
CREATE TABLE cli_calls (
    id             uuid PRIMARY KEY,
    environment_id uuid NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    cell_id        uuid NOT NULL REFERENCES cells (id) ON DELETE CASCADE,
    args           jsonb NOT NULL,
    timeout_secs   integer NOT NULL,
    state          text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'done')),
    result         jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    claimed_at     timestamptz,
    finished_at    timestamptz
);
CREATE INDEX cli_calls_pending ON cli_calls (cell_id, created_at) WHERE state = 'pending';
