//! Cached provider probes, per host (a probe says what *this* machine can run). The result is
//! opaque JSON text; the providers module owns its shape.

use super::{Db, Result, Store, on_pool};

impl Store {
    /// Every cached probe of `host`: (provider id, result JSON, probed at ms).
    pub async fn provider_probes(&self, host: &str) -> Result<Vec<(String, String, i64)>> {
        let rows: Vec<(String, String, i64)> = on_pool!(self, p => {
            sqlx::query_as(
                "SELECT provider_id, result, probed_at FROM provider_probes WHERE host = $1",
            )
            .bind(host)
            .fetch_all(p)
            .await?
        });
        Ok(rows)
    }

    /// Replace the cached probe of one provider on `host`.
    pub async fn save_provider_probe(
        &self,
        host: &str,
        provider_id: &str,
        result: &str,
        probed_at: i64,
    ) -> Result<()> {
        on_pool!(self, p => {
            sqlx::query(
                "INSERT INTO provider_probes (host, provider_id, result, probed_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (host, provider_id) DO UPDATE SET result = excluded.result, probed_at = excluded.probed_at",
            )
            .bind(host)
            .bind(provider_id)
            .bind(result)
            .bind(probed_at)
            .execute(p)
            .await?;
        });
        Ok(())
    }
}
