-- An environment asked to hibernate: its cell's agent stops all its processes once no task is
-- queued or running (its database, files and secrets kept), until a wake request or a use of it
-- through Hangar clears the flag.
ALTER TABLE environments ADD COLUMN hibernate BOOLEAN NOT NULL DEFAULT false;
