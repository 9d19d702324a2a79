-- Times are INTEGER unix milliseconds everywhere (portable to PostgreSQL BIGINT).
CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    path        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE sessions (
    id             TEXT PRIMARY KEY,
    project_id     TEXT NOT NULL REFERENCES projects(id),
    provider       TEXT NOT NULL,
    worktree_path  TEXT,
    branch         TEXT,
    base_commit    TEXT,
    closed         INTEGER NOT NULL DEFAULT 0,
    -- The machine holding the worktree: follow-up turns and applies must run there.
    host           TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

CREATE TABLE tasks (
    id              TEXT PRIMARY KEY,
    project_id      TEXT NOT NULL REFERENCES projects(id),
    session_id      TEXT NOT NULL REFERENCES sessions(id),
    parent_task_id  TEXT REFERENCES tasks(id),
    prompt          TEXT NOT NULL,
    provider        TEXT NOT NULL,
    model           TEXT,
    mode            TEXT,
    state           TEXT NOT NULL CHECK (state IN ('pending','running','blocked','completed','failed','cancelled')),
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    ended_at        INTEGER,
    summary         TEXT,
    final_message   TEXT,
    error           TEXT,
    input_tokens    INTEGER NOT NULL DEFAULT 0,
    output_tokens   INTEGER NOT NULL DEFAULT 0,
    files           TEXT NOT NULL DEFAULT '[]',
    node_id         TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tasks_state_created ON tasks(state, created_at);
CREATE INDEX tasks_session ON tasks(session_id, created_at);
CREATE INDEX tasks_parent ON tasks(parent_task_id);
CREATE INDEX tasks_created ON tasks(created_at DESC, id DESC);

CREATE TABLE task_events (
    task_id  TEXT NOT NULL REFERENCES tasks(id),
    seq      INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    at       INTEGER NOT NULL,
    text     TEXT NOT NULL,
    data     TEXT,
    PRIMARY KEY (task_id, seq)
);

CREATE TABLE pending_changes (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id   TEXT NOT NULL REFERENCES sessions(id),
    task_id      TEXT NOT NULL REFERENCES tasks(id),
    base_commit  TEXT NOT NULL,
    patch        BLOB NOT NULL,
    files        TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending','applied','discarded')),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
-- At most one live pending change per session: a new turn replaces it.
CREATE UNIQUE INDEX pending_changes_one_live ON pending_changes(session_id) WHERE status = 'pending';

-- Live boocoder processes; a running task whose node stopped heartbeating is failed.
CREATE TABLE nodes (
    id            TEXT PRIMARY KEY,
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    heartbeat_at  INTEGER NOT NULL
);
