-- A task's agent settings besides mode and model (`new_task`'s `options`), as a JSON object.
ALTER TABLE tasks ADD COLUMN options TEXT;
