//! Where log lines go: a bounded queue drained by one thread that writes to stderr. The MCP
//! client owns the other end of stderr; a client that never reads it would otherwise block
//! whichever runtime thread logged once the pipe is full (~64 KB), freezing the server, and
//! one that closed it would make tracing's own error report (`eprintln!`) panic. Here logging
//! never waits: when the queue is full a line is dropped and counted, and the count is
//! written once stderr takes lines again. Write errors are ignored. A regular file cannot
//! stall a writer, so when stderr is one, lines are written at once, in order with the work
//! (whoever reads the file sees a line as soon as the call that logged it has answered).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

/// Lines held while stderr is not draining; beyond that they are dropped.
const QUEUE_LINES: usize = 4096;

enum Item {
    Line(Vec<u8>),
    /// Answered once every line queued before it was written.
    Flush(SyncSender<()>),
}

#[derive(Clone)]
pub struct StderrLog {
    /// `None` when stderr is a regular file: written directly.
    queue: Option<Queue>,
}

#[derive(Clone)]
struct Queue {
    tx: SyncSender<Item>,
    dropped: Arc<AtomicU64>,
}

impl StderrLog {
    /// Start the writer thread, unless stderr is a regular file.
    pub fn start() -> StderrLog {
        if stderr_is_a_file() {
            return StderrLog { queue: None };
        }
        let (tx, rx) = sync_channel(QUEUE_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        // why: without the thread (the OS refused one) every line is dropped and counted;
        // logging must not stop the server from starting.
        let _ = std::thread::Builder::new()
            .name("stderr-log".into())
            .spawn(move || drain(rx, &counter));
        StderrLog {
            queue: Some(Queue { tx, dropped }),
        }
    }

    /// Wait (at most `limit`) until the lines logged so far are written, so the last lines
    /// before exit are not lost.
    pub fn flush(&self, limit: Duration) {
        let Some(queue) = &self.queue else {
            return;
        };
        let deadline = Instant::now() + limit;
        let (done_tx, done_rx) = sync_channel(1);
        let mut item = Item::Flush(done_tx);
        loop {
            match queue.tx.try_send(item) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    item = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return,
            }
        }
        // why: a timeout only means stderr is stuck; exiting anyway is the point.
        let _ = done_rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

fn stderr_is_a_file() -> bool {
    use std::os::fd::AsFd;
    std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata())
        .is_ok_and(|m| m.file_type().is_file())
}

fn drain(rx: Receiver<Item>, dropped: &AtomicU64) {
    let mut err = std::io::stderr();
    while let Ok(item) = rx.recv() {
        let n = dropped.swap(0, Ordering::Relaxed);
        if n > 0 {
            let _ = writeln!(
                err,
                "boocoder: {n} log line(s) dropped (stderr was not being read)"
            );
        }
        match item {
            Item::Line(line) => {
                let _ = err.write_all(&line);
            }
            Item::Flush(done) => {
                let _ = err.flush();
                let _ = done.send(());
            }
        }
    }
}

/// One formatted event; tracing's fmt layer writes each event in one `write_all` and drops
/// the writer after it.
pub struct LineWriter<'a> {
    log: &'a StderrLog,
    buf: Vec<u8>,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter<'_> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.buf);
        match &self.log.queue {
            None => {
                let _ = std::io::stderr().write_all(&line);
            }
            Some(q) => {
                if q.tx.try_send(Item::Line(line)).is_err() {
                    q.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrLog {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter {
            log: self,
            buf: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let (tx, _rx) = sync_channel(2);
        let dropped = Arc::new(AtomicU64::new(0));
        let log = StderrLog {
            queue: Some(Queue {
                tx,
                dropped: dropped.clone(),
            }),
        };
        for _ in 0..5 {
            let mut w = tracing_subscriber::fmt::MakeWriter::make_writer(&log);
            w.write_all(b"line\n").unwrap();
        }
        assert_eq!(dropped.load(Ordering::Relaxed), 3);
    }
}
