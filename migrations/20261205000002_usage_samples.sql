-- The shared worker pools' use over time, for the platform page's charts: once a minute, each
-- cell's worker slots and the workers it held, and each tenant's workers (taking tasks or
-- draining). Any control-plane replica may take the minute's sample; the first one wins.
CREATE TABLE pool_samples (
    at           timestamptz NOT NULL,
    cell_id      uuid NOT NULL REFERENCES cells (id) ON DELETE CASCADE,
    worker_slots integer NOT NULL,
    workers      integer NOT NULL,
    PRIMARY KEY (cell_id, at)
);
CREATE INDEX pool_samples_at ON pool_samples (at);

CREATE TABLE tenant_worker_samples (
    at        timestamptz NOT NULL,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    workers   integer NOT NULL,
    PRIMARY KEY (tenant_id, at)
);
CREATE INDEX tenant_worker_samples_at ON tenant_worker_samples (at);
