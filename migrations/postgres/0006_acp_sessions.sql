-- The ACP session each agent of a boocoder session last had, so an agent started after a
-- restart (or on another node sharing the database) can `session/load` the conversation.
CREATE TABLE acp_sessions (
    session_id   TEXT NOT NULL,
    provider_id  TEXT NOT NULL,
    acp_session  TEXT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (session_id, provider_id)
);
