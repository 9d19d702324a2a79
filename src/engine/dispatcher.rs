//! The claim loop: woken at once when a task is queued or a turn ends, with a slow poll as a
//! safety net. The store's claim guarantees one turn per session; a semaphore caps how many
//! sessions run at once on this node.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::Inner;

pub(super) async fn run(inner: Arc<Inner>) {
    let permits = Arc::new(Semaphore::new(inner.config.max_concurrent.max(1)));
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = inner.shutdown.cancelled() => break,
        };
        if inner.shutdown.is_cancelled() {
            break;
        }
        match inner
            .store
            .claim_next(&inner.config.node_id, &inner.config.host)
            .await
        {
            Ok(Some(claimed)) => {
                let token = inner.register_running(claimed.id());
                let inner2 = inner.clone();
                inner.tracker.spawn(async move {
                    super::run::execute(&inner2, claimed, token).await;
                    drop(permit);
                    // A finished turn may unblock its session's next turn.
                    inner2.wake.notify_one();
                });
            }
            Ok(None) => {
                drop(permit);
                idle(&inner).await;
            }
            Err(e) => {
                drop(permit);
                tracing::warn!(error = %e, "claiming a task failed; retrying after the poll interval");
                idle(&inner).await;
            }
        }
    }
    tracing::debug!("dispatcher stopped");
}

async fn idle(inner: &Inner) {
    tokio::select! {
        _ = inner.wake.notified() => {}
        _ = tokio::time::sleep(inner.config.poll_interval) => {}
        _ = inner.shutdown.cancelled() => {}
    }
}
