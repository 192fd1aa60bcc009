-- Reading an environment by name also considers deleted ones (to answer DELETED), which the
-- partial unique index on live names cannot serve.
CREATE INDEX environments_by_name ON environments (tenant_id, name, created_at DESC);
