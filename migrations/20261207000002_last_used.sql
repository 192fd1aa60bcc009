-- When an environment's Airflow was last used through Hangar (its API or UI through the proxy,
-- InvokeRestApi, its CLI): an environment used within its idle window does not hibernate.
ALTER TABLE environments ADD COLUMN last_used_at TIMESTAMPTZ;
