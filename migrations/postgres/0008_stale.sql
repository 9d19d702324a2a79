-- Files of a pending change that no longer apply cleanly to the checkout, found after another
-- session's change was applied (JSON list); NULL when it applied cleanly then, or nobody looked.
ALTER TABLE pending_changes ADD COLUMN stale_files TEXT;
