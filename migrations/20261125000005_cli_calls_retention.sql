-- Old CLI calls are pruned by age.
CREATE INDEX cli_calls_created_at ON cli_calls (created_at);
