-- The live tail of the environments' component logs: lines agents send as they capture them
-- (POST /v1/cells/{cell}/log-lines), read by followers (GET …/logs?follow=true) and by reads of
-- the last minutes, and pruned after 15 minutes. The durable copy is in the platform bucket, so
-- the table is UNLOGGED: a crash of the database loses at most the tail, never a log.
CREATE UNLOGGED TABLE log_tail (
    id             bigserial PRIMARY KEY,
    environment_id uuid NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    component      text NOT NULL,
    file_offset    bigint NOT NULL,
    ts             timestamptz NOT NULL,
    level          text NOT NULL,
    message        text NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    -- A line sent twice (an agent restarted before it knew the first send arrived) is kept once.
    UNIQUE (environment_id, component, file_offset)
);
CREATE INDEX log_tail_by_environment ON log_tail (environment_id, id);
CREATE INDEX log_tail_received ON log_tail (received_at);
