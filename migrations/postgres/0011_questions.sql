-- Permission questions of ACP agents under the `ask` policy: open until decided, and decided
-- once (the first answer wins, by a conditional update), from any process or node.
CREATE TABLE permission_questions (
    request_id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    question TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    chosen TEXT,
    decided_by TEXT,
    decided_at BIGINT
);
CREATE INDEX permission_questions_task ON permission_questions (task_id, created_at);
