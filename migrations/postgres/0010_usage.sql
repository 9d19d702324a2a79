-- Everything an agent reported a task consumed, as JSON (tokens by kind, cost, context);
-- NULL when it reported nothing. input_tokens/output_tokens stay for sums in SQL.
ALTER TABLE tasks ADD COLUMN usage TEXT;
-- A budget in US dollars, enforced on the cost the agent reports.
ALTER TABLE tasks ADD COLUMN max_cost_usd DOUBLE PRECISION;
