-- Which control-plane replica holds each cell's tunnel, and where the other replicas relay
-- that cell's Airflow requests to (docs/security.md, "The cell tunnel"). A replica writes its
-- row when the tunnel comes up (replacing any other replica's), touches it while the tunnel
-- lives and removes it when it ends; `generation` tells one tunnel of a replica from its next,
-- so a late write of an ended tunnel changes nothing. A row not touched for a while is taken
-- for a replica that died.
CREATE TABLE cell_tunnels (
    cell_id    uuid PRIMARY KEY REFERENCES cells (id) ON DELETE CASCADE,
    replica    uuid NOT NULL,
    generation bigint NOT NULL,
    relay      text NOT NULL,
    seen_at    timestamptz NOT NULL DEFAULT now()
);
