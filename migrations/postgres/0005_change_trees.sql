-- A pending change is applied from trees, not from its patch text: the tree (in the session's
-- worktree repository) holding the worktree's content when the change was queued. NULL for
-- changes queued before this column existed (their tree is rebuilt from the patch).
ALTER TABLE pending_changes ADD COLUMN tree TEXT;
