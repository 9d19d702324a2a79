-- The last probe of each provider on each host, so a restart shows the snapshot at once.
-- `result` is the probe's JSON (status, version, models, modes, log …); the store does not
-- interpret it.
CREATE TABLE provider_probes (
    host         TEXT NOT NULL,
    provider_id  TEXT NOT NULL,
    result       TEXT NOT NULL,
    probed_at    INTEGER NOT NULL,
    PRIMARY KEY (host, provider_id)
);
