-- A task's budget: stopped when it ran this long or its agent reported this many tokens; a
-- budget also bounds the tasks delegated under it (checked when a child is submitted).
ALTER TABLE tasks ADD COLUMN max_tokens BIGINT;
ALTER TABLE tasks ADD COLUMN max_minutes BIGINT;
