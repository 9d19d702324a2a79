-- Per-task permission policy for ACP agents ('allow' | 'deny' | 'ask'); NULL = the provider's.
ALTER TABLE tasks ADD COLUMN permission TEXT CHECK (permission IN ('allow','deny','ask'));
