-- The native loop's conversation per session: one chat message (OpenAI JSON) per row, in
-- order, so a follow-up turn can send what came before.
CREATE TABLE native_messages (
    session_id  TEXT NOT NULL REFERENCES sessions(id),
    seq         BIGINT NOT NULL,
    task_id     TEXT NOT NULL REFERENCES tasks(id),
    message     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (session_id, seq)
);
