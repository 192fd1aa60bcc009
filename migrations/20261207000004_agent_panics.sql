-- Panics of a cell's agent's background loops since the agent started, as it last registered.
ALTER TABLE cells ADD COLUMN agent_panics BIGINT NOT NULL DEFAULT 0;
