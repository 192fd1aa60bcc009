-- Prepared ("warm") environments: a cell keeps `warm_pool` of them running, owned by the reserved
-- tenant below (its name is no valid tenant name, so no request can reach it), and a new
-- environment whose spec renders the same processes takes one over. Such an environment's
-- Airflow is served under a path named by its id (`airflow_path`), set while it was prepared.
ALTER TABLE cells ADD COLUMN warm_pool integer NOT NULL DEFAULT 0;
ALTER TABLE environments ADD COLUMN warm boolean NOT NULL DEFAULT false;
ALTER TABLE environments ADD COLUMN airflow_path text;
CREATE INDEX environments_warm ON environments (cell_id, created_at) WHERE warm AND phase <> 'DELETED';
INSERT INTO tenants (id, name, display_name)
VALUES ('00000000-0000-0000-0000-00000000a1a1', '.warm-pool', 'Prepared environments')
ON CONFLICT DO NOTHING;
