//! The weight log writer: actor handlers hand it readings ([`WeightLog::record`], which never
//! waits), and one tokio task writes them in batches, one transaction each.
//!
//! A batch is written when `weight_log.batch_rows` rows are waiting, or `weight_log.flush_ms`
//! after the oldest of them was recorded, whichever comes first. A failed write keeps its rows
//! and is retried with a doubling pause: rows are evidence of what was in a cabinet, so the only
//! place they are ever given up is the queue bound (`weight_log.queue_rows`), which keeps memory
//! bounded while the database is down; there they are dropped and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::config::WeightLogConfig;
use crate::db::Db;
use crate::db::weight_log::{NewWeightRow, insert_batch};
use crate::metrics::Metrics;

/// Longest pause between two attempts at a failed batch.
pub const MAX_RETRY: Duration = Duration::from_secs(30);

/// Least time between two "queue full" errors in the log; the counter has every drop.
const DROP_LOG_EVERY_MS: u64 = 60_000;

/// The target of the per-batch `debug` event (fields `rows`, `write_us`, `attempts`): turn it on
/// with `RUST_LOG=heft::weight_log::batch=debug`; the benchmark reads it for exact batch figures.
pub const BATCH_TRACE_TARGET: &str = "heft::weight_log::batch";

#[derive(Debug, thiserror::Error)]
pub enum WeightLogError {
    #[error("the weight log writer has stopped")]
    Stopped,
}

enum Msg {
    /// A reading and when it was recorded (the flush deadline counts from then).
    Row(NewWeightRow, Instant),
    /// Answer once every row sent before this is written.
    Flush(oneshot::Sender<()>),
    /// Write every row sent before this, answer, and end.
    Stop(oneshot::Sender<()>),
}

/// Handle to the writer; clones share it.
#[derive(Clone)]
pub struct WeightLog {
    // Unbounded, because the bound is on rows (`Shared::queued`), not messages: flush and stop
    // requests must get through a full queue.
    tx: mpsc::UnboundedSender<Msg>,
    shared: Arc<Shared>,
}

struct Shared {
    /// Rows recorded and not yet written: in the channel, in the batch being filled, or in the
    /// batch being written or retried. At most `limit`.
    queued: AtomicUsize,
    peak: AtomicUsize,
    limit: usize,
    metrics: Metrics,
    drop_log: RateLimit,
}

impl WeightLog {
    /// Spawn the writer on the current tokio runtime.
    pub fn start(db: Db, cfg: WeightLogConfig, metrics: &Metrics) -> WeightLog {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queued: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            limit: cfg.queue_rows,
            metrics: metrics.clone(),
            drop_log: RateLimit::new(DROP_LOG_EVERY_MS),
        });
        let writer =
            Writer { db, batch: Vec::with_capacity(cfg.batch_rows), oldest: None, cfg, shared: shared.clone() };
        tokio::spawn(writer.run(rx));
        WeightLog { tx, shared }
    }

    /// Queue a reading. Never blocks and never waits: when `queue_rows` rows are already
    /// waiting, the row is dropped and counted (`heft_weight_log_dropped_total`).
    pub fn record(&self, row: NewWeightRow) {
        let s = &self.shared;
        let before = s.queued.fetch_add(1, Ordering::Relaxed);
        if before >= s.limit {
            s.queued.fetch_sub(1, Ordering::Relaxed);
            self.dropped("queue full");
            return;
        }
        s.peak.fetch_max(before + 1, Ordering::Relaxed);
        s.metrics.weight_log_queue_rows.inc();
        if self.tx.send(Msg::Row(row, Instant::now())).is_err() {
            s.queued.fetch_sub(1, Ordering::Relaxed);
            s.metrics.weight_log_queue_rows.dec();
            self.dropped("writer stopped");
        }
    }

    /// Returns once every row recorded before the call is written (committed). While the database
    /// is down this waits through the retries; a caller that cannot wait that long bounds it with
    /// a timeout.
    pub async fn flush(&self) -> Result<(), WeightLogError> {
        let (ack, done) = oneshot::channel();
        self.tx.send(Msg::Flush(ack)).map_err(|_| WeightLogError::Stopped)?;
        done.await.map_err(|_| WeightLogError::Stopped)
    }

    /// Write what was recorded before the call and end the writer. Rows recorded afterwards are
    /// dropped and counted. Like [`flush`](Self::flush), waits through retries.
    pub async fn stop(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Stop(ack)).is_ok() {
            let _ = done.await;
        }
    }

    /// Rows recorded and not yet written.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// The most rows ever waiting at once since the writer started.
    pub fn peak_queued(&self) -> usize {
        self.shared.peak.load(Ordering::Relaxed)
    }

    fn dropped(&self, why: &'static str) {
        let m = &self.shared.metrics;
        m.weight_log_dropped.inc();
        if self.shared.drop_log.allow() {
            tracing::error!(
                why,
                queue_rows = self.shared.limit,
                dropped_total = m.weight_log_dropped.get(),
                "weight log: dropping readings"
            );
        }
    }
}

struct Writer {
    db: Db,
    cfg: WeightLogConfig,
    /// The batch being filled; never more than `batch_rows`.
    batch: Vec<NewWeightRow>,
    /// When the oldest row of `batch` was recorded.
    oldest: Option<Instant>,
    shared: Arc<Shared>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let flush_after = Duration::from_millis(self.cfg.flush_ms);
        let mut inbox = Vec::with_capacity(self.cfg.batch_rows);
        loop {
            let deadline = self.oldest.map(|t| t + flush_after);
            // Take no more than fills the batch, so a batch never exceeds batch_rows and
            // everything else waits in the channel, where the queue bound counts it.
            let room = self.cfg.batch_rows - self.batch.len();
            let received = tokio::select! {
                n = rx.recv_many(&mut inbox, room) => n,
                () = sleep_until(deadline), if deadline.is_some() => {
                    self.write().await;
                    continue;
                }
            };
            if received == 0 {
                // Every handle is gone.
                self.write().await;
                return;
            }
            let mut msgs = inbox.drain(..);
            while let Some(msg) = msgs.next() {
                match msg {
                    Msg::Row(row, at) => {
                        self.oldest.get_or_insert(at);
                        self.batch.push(row);
                    }
                    Msg::Flush(ack) => {
                        // The channel is in order: what is in the batch now is all that was
                        // recorded before the flush and is unwritten.
                        self.write().await;
                        let _ = ack.send(());
                    }
                    Msg::Stop(ack) => {
                        self.write().await;
                        // Close before answering: once stop() returns, record() fails at once.
                        let rest: Vec<Msg> = msgs.collect();
                        self.discard_rest(rx, rest);
                        let _ = ack.send(());
                        return;
                    }
                }
            }
            if self.batch.len() >= self.cfg.batch_rows {
                self.write().await;
            }
        }
    }

    /// Write the batch, retrying until it is written.
    async fn write(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        self.oldest = None;
        let batch = Arc::new(std::mem::replace(&mut self.batch, Vec::with_capacity(self.cfg.batch_rows)));
        let m = &self.shared.metrics;
        let mut pause = Duration::from_millis(self.cfg.retry_ms);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let rows = batch.clone();
            let started = std::time::Instant::now();
            match self.db.write(move |c| insert_batch(c, &rows)).await {
                Ok(_) => {
                    let took = started.elapsed();
                    let n = batch.len();
                    m.weight_log_rows.inc_by(n as u64);
                    m.weight_log_batches.inc();
                    m.weight_log_batch_rows.observe(n as f64);
                    m.weight_log_write_seconds.observe(took.as_secs_f64());
                    m.weight_log_queue_rows.sub(n as i64);
                    self.shared.queued.fetch_sub(n, Ordering::Relaxed);
                    tracing::debug!(
                        target: BATCH_TRACE_TARGET,
                        rows = n,
                        write_us = took.as_micros() as u64,
                        attempts,
                        "weight log batch written"
                    );
                    return;
                }
                Err(e) => {
                    m.weight_log_write_errors.inc();
                    tracing::error!(
                        error = %e,
                        rows = batch.len(),
                        attempts,
                        retry_in_ms = pause.as_millis() as u64,
                        "weight log: batch write failed, will retry"
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_RETRY);
                }
            }
        }
    }

    /// After a stop: rows sent after it are dropped and counted, flushes after it fail.
    fn discard_rest(&self, mut rx: mpsc::UnboundedReceiver<Msg>, mut rest: Vec<Msg>) {
        rx.close();
        while let Ok(msg) = rx.try_recv() {
            rest.push(msg);
        }
        let rows = rest.iter().filter(|m| matches!(m, Msg::Row(..))).count();
        if rows > 0 {
            let m = &self.shared.metrics;
            m.weight_log_dropped.inc_by(rows as u64);
            m.weight_log_queue_rows.sub(rows as i64);
            self.shared.queued.fetch_sub(rows, Ordering::Relaxed);
            tracing::error!(rows, "weight log: rows recorded after stop were dropped");
        }
        // Dropping the remaining Flush/Stop senders answers their callers with `Stopped`.
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Allows an event at most once per period, without locking (`record` must never wait).
struct RateLimit {
    base: std::time::Instant,
    period_ms: u64,
    /// Milliseconds since `base` before which the next event is refused.
    next_ms: AtomicU64,
}

impl RateLimit {
    fn new(period_ms: u64) -> RateLimit {
        RateLimit { base: std::time::Instant::now(), period_ms, next_ms: AtomicU64::new(0) }
    }

    fn allow(&self) -> bool {
        self.allow_at(self.base.elapsed().as_millis() as u64)
    }

    fn allow_at(&self, now_ms: u64) -> bool {
        let next = self.next_ms.load(Ordering::Relaxed);
        // Of several callers at the same moment, only the one that moves the mark logs.
        now_ms >= next
            && self
                .next_ms
                .compare_exchange(next, now_ms + self.period_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_allows_once_per_period() {
        let r = RateLimit::new(60_000);
        assert!(r.allow_at(0));
        assert!(!r.allow_at(1));
        assert!(!r.allow_at(59_999));
        assert!(r.allow_at(60_000));
        assert!(!r.allow_at(60_001));
        assert!(r.allow_at(200_000));
    }
}
