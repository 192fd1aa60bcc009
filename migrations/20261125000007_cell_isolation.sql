-- How a cell isolates its environments (users, cgroups, Landlock; tenants::api::CellIsolation),
-- as its agent reported it when it last registered. NULL: the agent reported nothing, which the
-- API shows as not isolated.
ALTER TABLE cells ADD COLUMN isolation jsonb;
