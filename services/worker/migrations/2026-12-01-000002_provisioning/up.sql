-- Host agents launched for the scheduler's provisioning jobs. One row per
-- instance; a job delivered again finds its row and repeats nothing.
CREATE TABLE launched_agents (
    instance_id        UUID PRIMARY KEY,
    launch_request_id  UUID NOT NULL UNIQUE,
    region             TEXT NOT NULL,
    -- The machine it runs on: only a worker on that machine can signal it.
    host               TEXT NOT NULL,
    port               INT NOT NULL CHECK (port BETWEEN 1 AND 65535),
    pid                INT CHECK (pid > 0),
    -- The kernel's start time of the process (clock ticks since boot):
    -- with the pid it names one process, so a pid reused by another is
    -- never signalled or taken for the agent.
    process_start      BIGINT,
    state              TEXT NOT NULL CHECK (state IN ('starting', 'running', 'exited', 'failed', 'terminated')),
    detail             TEXT,
    launched_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    ended_at           TIMESTAMPTZ
);
-- A port is given to one live agent per machine at a time.
CREATE UNIQUE INDEX launched_agents_live_port ON launched_agents (host, port)
    WHERE state IN ('starting', 'running');
CREATE UNIQUE INDEX launched_agents_live_pid ON launched_agents (host, pid)
    WHERE state IN ('starting', 'running') AND pid IS NOT NULL;

-- Provisioning requests done (launch or terminate), by request id.
CREATE TABLE provisioning_done (
    request_id  UUID PRIMARY KEY,
    action      TEXT NOT NULL CHECK (action IN ('launch', 'terminate')),
    instance_id UUID NOT NULL,
    outcome     TEXT NOT NULL,
    done_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
