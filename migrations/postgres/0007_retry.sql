-- A retried task names the failed or cancelled task it runs again.
ALTER TABLE tasks ADD COLUMN retry_of TEXT;
