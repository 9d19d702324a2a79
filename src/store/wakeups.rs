//! Wake-ups from other nodes over PostgreSQL LISTEN/NOTIFY. Notifications are lossy across
//! reconnects, so they only shorten waits: the dispatcher's poll stays the source of truth.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{CHANNEL_CANCEL, CHANNEL_TASKS, Db, Store};

/// Something another node did that this one may want to react to at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wakeup {
    /// The queue changed (a task was queued or finished).
    Queue,
    /// A cancel was requested for this task.
    Cancel(String),
}

impl Store {
    /// Start listening (PostgreSQL only; `None` on SQLite). The listener owns its own
    /// connection, outside the pool, and is dropped when `stop` fires, so closing the pool
    /// afterwards cannot hang on it.
    pub fn listen(&self, stop: CancellationToken) -> Option<mpsc::Receiver<Wakeup>> {
        let Db::Postgres { url, .. } = &self.db else {
            return None;
        };
        let url = url.clone();
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            let mut listener = match sqlx::postgres::PgListener::connect(&url).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection failed; relying on polling");
                    return;
                }
            };
            if let Err(e) = listener.listen_all([CHANNEL_TASKS, CHANNEL_CANCEL]).await {
                tracing::warn!(error = %e, "LISTEN failed; relying on polling");
                return;
            }
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    n = listener.recv() => match n {
                        Ok(n) => {
                            let w = if n.channel() == CHANNEL_CANCEL {
                                Wakeup::Cancel(n.payload().to_string())
                            } else {
                                Wakeup::Queue
                            };
                            if tx.send(w).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        }
                    },
                }
            }
            drop(listener);
        });
        Some(rx)
    }
}
