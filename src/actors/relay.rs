//! The outbox relay: one tokio task that takes due outbox rows and delivers them — to this
//! node's handlers (embedded) or to RabbitMQ with publisher confirms — and marks each row done
//! only once delivered. On RabbitMQ it also runs this node's consumers.
//!
//! It looks every `messages.poll_ms`, and at once when woken ([`Relay::wake`], called after a
//! commit that enqueued). Rows are claimed with a lease (`db::outbox::due`), so a relay that
//! dies between delivering and marking leaves them to be delivered again, never lost; the
//! consumers' dedupe makes that harmless.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::Connection;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::MessagesConfig;
use crate::db::outbox::{self, OutboxRow};
use crate::db::{Db, DbError};
use crate::metrics::Metrics;
use crate::mq::rabbit::{self, Names, Publisher};
use crate::mq::{Consumers, Context, Message, MqError, Transport, backoff, embedded, record_dead, redact};

/// How often delivered rows older than `keep_done_s` are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// Shortest claim lease: rows claimed by a relay that died are due again after this at the
/// earliest (the lease is twice `confirm_timeout_ms`, so a live relay always finishes first).
const MIN_LEASE: Duration = Duration::from_secs(1);
/// Longest pause between two attempts to reach RabbitMQ.
const MAX_CONNECT_PAUSE: Duration = Duration::from_secs(10);

/// Fault injection for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayFault {
    /// Deliver the next batch (publish and confirm, or handle), then end without marking the
    /// rows done: what a crash between the two leaves behind.
    DieAfterPublish,
}

/// Handle to the relay; clones share it.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    wake: Notify,
    fault: Mutex<Option<RelayFault>>,
    stop: watch::Sender<bool>,
    tasks: tokio::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl Default for Relay {
    fn default() -> Self {
        Relay::new()
    }
}

impl Relay {
    /// A relay handle that delivers nothing until [`start`](Self::start)ed: whatever is woken
    /// before then is found by its first round.
    pub fn new() -> Relay {
        let (stop, _) = watch::channel(false);
        Relay {
            inner: Arc::new(Inner {
                wake: Notify::new(),
                fault: Mutex::new(None),
                stop,
                tasks: tokio::sync::Mutex::new(Vec::new()),
            }),
        }
    }

    /// Spawn the relay (and, on RabbitMQ, the consumers of `consumers`) on the current tokio
    /// runtime. Fails only on a `messages.url` of an unknown scheme: an unreachable RabbitMQ is
    /// retried in the background.
    pub fn start(&self, db: Db, cfg: MessagesConfig, metrics: Metrics, consumers: Consumers) -> Result<(), MqError> {
        let transport = Transport::parse(&cfg.url)?;
        let stop_rx = self.inner.stop.subscribe();
        let ctx = Arc::new(Context { db, cfg, metrics, consumers });
        let mut tasks = Vec::new();
        if let Transport::Rabbit { url } = &transport {
            tasks.push(tokio::spawn(rabbit::run_consumers(ctx.clone(), url.clone(), stop_rx.clone())));
        }
        let worker = Worker {
            ctx,
            transport,
            inner: self.inner.clone(),
            rabbit: None,
            next_connect: Instant::now(),
            connect_pause: Duration::ZERO,
        };
        tasks.push(tokio::spawn(worker.run(stop_rx)));
        if let Ok(mut t) = self.inner.tasks.try_lock() {
            *t = tasks;
        }
        Ok(())
    }

    /// Look for due rows now (call after committing a transaction that enqueued).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Test hook: see [`RelayFault`].
    pub fn inject(&self, fault: RelayFault) {
        if let Ok(mut f) = self.inner.fault.lock() {
            *f = Some(fault);
        }
        self.wake();
    }

    /// Finish the round under way, stop the consumers, and end.
    pub async fn stop(&self) {
        let _ = self.inner.stop.send(true);
        self.inner.wake.notify_one();
        let tasks = std::mem::take(&mut *self.inner.tasks.lock().await);
        for t in tasks {
            let _ = t.await;
        }
    }

    fn take_fault(&self) -> Option<RelayFault> {
        self.inner.fault.lock().ok().and_then(|mut f| f.take())
    }
}

/// What became of one row this round.
enum Outcome {
    Delivered,
    /// Counts as an attempt (a handler failed, RabbitMQ refused it).
    Failed(String),
    /// Does not count (RabbitMQ unreachable, no confirm in time): tried again shortly.
    NotSent(String),
}

#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("fault injected: relay died after delivering")]
    Died,
}

struct Worker {
    ctx: Arc<Context>,
    transport: Transport,
    inner: Arc<Inner>,
    rabbit: Option<(Connection, Publisher)>,
    next_connect: Instant,
    connect_pause: Duration,
}

impl Worker {
    fn cfg(&self) -> &MessagesConfig {
        &self.ctx.cfg
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let relay = Relay { inner: self.inner.clone() };
        let poll = Duration::from_millis(self.cfg().poll_ms.max(1));
        let mut next_purge = Instant::now();
        loop {
            if *stop.borrow() {
                break;
            }
            // Rounds until less than a full batch was due: a backlog drains without waiting.
            loop {
                match self.round(&relay).await {
                    Ok(n) if n >= self.cfg().batch.max(1) => continue,
                    Ok(_) => break,
                    Err(RoundError::Died) => {
                        tracing::warn!("relay died (fault injected); rows stay claimed until their lease ends");
                        self.close().await;
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "relay round failed");
                        break;
                    }
                }
            }
            self.gauge_lag().await;
            if Instant::now() >= next_purge {
                next_purge = Instant::now() + PURGE_EVERY;
                self.purge().await;
            }
            tokio::select! {
                _ = stop.changed() => {}
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
        self.close().await;
    }

    async fn close(&mut self) {
        if let Some((conn, _)) = self.rabbit.take() {
            let _ = conn.close(200, "OK".into()).await;
        }
    }

    /// One batch: claim, deliver, mark. Returns the rows claimed.
    async fn round(&mut self, relay: &Relay) -> Result<usize, RoundError> {
        let publisher = match &self.transport {
            Transport::Embedded => None,
            Transport::Rabbit { url } => {
                let url = url.clone();
                match self.publisher(&url).await {
                    Some(p) => Some(p),
                    // Unreachable: leave the rows where they are until it answers.
                    None => return Ok(0),
                }
            }
        };
        // Long enough for a live relay to finish: RabbitMQ's confirms, or in process the handlers
        // (each bounded by handler_timeout_ms).
        let finish_ms = match publisher {
            Some(_) => self.cfg().confirm_timeout_ms,
            None => self.cfg().handler_timeout_ms,
        };
        let lease = Duration::from_millis(finish_ms.saturating_mul(2)).max(MIN_LEASE);
        let lease_until = crate::db::now() + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let batch = self.cfg().batch.max(1);
        // RabbitMQ holds a delayed message in a TTL wait queue, so it is published as soon as a
        // wait queue fits its delay; in process it waits in the outbox.
        let ahead_ms = match publisher {
            Some(_) => self.cfg().delays_ms.iter().copied().max().unwrap_or(0),
            None => 0,
        };
        let horizon = crate::db::now() + chrono::Duration::milliseconds(i64::try_from(ahead_ms).unwrap_or(0));
        let rows = self.ctx.db.write(move |c| outbox::due(c, batch, horizon, lease_until)).await?;
        let claimed = rows.len();
        if claimed == 0 {
            return Ok(0);
        }
        let results = match publisher {
            None => embedded::handle_batch(&self.ctx, rows)
                .await
                .into_iter()
                .map(|(row, r)| {
                    let outcome = match r {
                        embedded::Handled::Ok => Outcome::Delivered,
                        embedded::Handled::Failed(e) => Outcome::Failed(e),
                        embedded::Handled::DbDown(e) => Outcome::NotSent(e),
                    };
                    (row, outcome)
                })
                .collect(),
            Some(p) => self.publish(&p, rows).await,
        };
        if relay.take_fault() == Some(RelayFault::DieAfterPublish) {
            return Err(RoundError::Died);
        }
        self.settle(results).await?;
        Ok(claimed)
    }

    /// The RabbitMQ publisher, (re)connecting (and declaring the topology) when needed, with a
    /// doubling pause between failed attempts.
    async fn publisher(&mut self, url: &str) -> Option<Publisher> {
        if let Some((_, p)) = &self.rabbit {
            if p.connected() {
                return Some(p.clone());
            }
            tracing::warn!(url = %redact(url), "RabbitMQ publisher connection lost");
            self.close().await;
        }
        if Instant::now() < self.next_connect {
            return None;
        }
        let names = Names::new(&self.cfg().prefix);
        let opened = async {
            let conn = rabbit::connect(url).await?;
            let ch = conn.create_channel().await?;
            rabbit::declare(&ch, &names, &rabbit::queued_topics(&self.ctx), &self.cfg().delays_ms).await?;
            let _ = ch.close(200, "OK".into()).await;
            let p = Publisher::open(&conn, names.clone(), self.cfg().delays_ms.clone()).await?;
            Ok::<_, MqError>((conn, p))
        }
        .await;
        match opened {
            Ok((conn, p)) => {
                tracing::info!(url = %redact(url), "relay connected to RabbitMQ");
                self.connect_pause = Duration::ZERO;
                self.rabbit = Some((conn, p.clone()));
                Some(p)
            }
            Err(e) => {
                let base = Duration::from_millis(self.cfg().retry_base_ms.clamp(100, 1000));
                self.connect_pause = (self.connect_pause * 2).clamp(base, MAX_CONNECT_PAUSE);
                self.next_connect = Instant::now() + self.connect_pause;
                tracing::warn!(url = %redact(url), error = %e, pause_ms = self.connect_pause.as_millis() as u64, "RabbitMQ unreachable");
                None
            }
        }
    }

    /// Publish every row, then wait for the confirms (pipelined: one round trip per batch).
    async fn publish(&mut self, p: &Publisher, rows: Vec<OutboxRow>) -> Vec<(OutboxRow, Outcome)> {
        let mut results = Vec::with_capacity(rows.len());
        let mut pending = Vec::with_capacity(rows.len());
        let mut broken: Option<String> = None;
        for row in rows {
            if let Some(e) = &broken {
                results.push((row, Outcome::NotSent(e.clone())));
                continue;
            }
            let msg = Message::from_row(&row);
            match p.publish(&msg, rabbit::deliver_at_ms(row.deliver_at), 0).await {
                Ok(confirm) => pending.push((row, confirm)),
                Err(e) => {
                    broken = Some(e.to_string());
                    results.push((row, Outcome::NotSent(e.to_string())));
                }
            }
        }
        let deadline = Instant::now() + Duration::from_millis(self.cfg().confirm_timeout_ms);
        for (row, confirm) in pending {
            let left = deadline.saturating_duration_since(Instant::now());
            let outcome = match rabbit::confirmed(confirm, left).await {
                Ok(()) => Outcome::Delivered,
                Err(e @ MqError::Refused(_)) => Outcome::Failed(e.to_string()),
                Err(e) => Outcome::NotSent(e.to_string()),
            };
            results.push((row, outcome));
        }
        if broken.is_some() {
            self.close().await;
        }
        results
    }

    /// Mark what happened: done rows in one statement, retries with their backoff, dead ones
    /// with the alert.
    async fn settle(&self, results: Vec<(OutboxRow, Outcome)>) -> Result<(), DbError> {
        let cfg = self.cfg();
        let now = crate::db::now();
        let mut done = Vec::new();
        let mut retry: Vec<(i64, i32, chrono::NaiveDateTime, String)> = Vec::new();
        let mut dead: Vec<(Message, u32, String)> = Vec::new();
        for (row, outcome) in results {
            match outcome {
                Outcome::Delivered => {
                    if self.transport == Transport::Embedded {
                        self.ctx.metrics.messages_delivered.with_label_values(&[row.topic.as_str()]).inc();
                    }
                    done.push(row.id);
                }
                Outcome::NotSent(e) => {
                    let pause = Duration::from_millis(cfg.retry_base_ms);
                    retry.push((row.id, row.attempts, now + chrono::Duration::from_std(pause).unwrap_or_default(), e));
                }
                Outcome::Failed(e) => {
                    let attempts = u32::try_from(row.attempts).unwrap_or(0) + 1;
                    if attempts >= cfg.max_attempts {
                        let msg = Message::from_row(&row);
                        dead.push((msg, attempts, e));
                    } else {
                        self.ctx.metrics.messages_retried.with_label_values(&[row.topic.as_str()]).inc();
                        tracing::warn!(message_id = %row.message_id, topic = %row.topic, attempts, error = %e, "message failed; retrying");
                        let at = now + chrono::Duration::from_std(backoff(cfg, attempts)).unwrap_or_default();
                        retry.push((row.id, i32::try_from(attempts).unwrap_or(i32::MAX), at, e));
                    }
                }
            }
        }
        self.ctx
            .db
            .write(move |c| {
                outbox::mark_done(c, &done)?;
                for (id, attempts, at, error) in &retry {
                    outbox::mark_failed(c, *id, *attempts, *at, error)?;
                }
                Ok::<_, DbError>(())
            })
            .await?;
        for (msg, attempts, error) in dead {
            record_dead(&self.ctx.db, &self.ctx.metrics, &msg, attempts, &error).await?;
        }
        Ok(())
    }

    async fn gauge_lag(&self) {
        match self.ctx.db.run(outbox::lag).await {
            Ok(lag) => self.ctx.metrics.outbox_lag.set(lag),
            Err(e) => tracing::warn!(error = %e, "outbox lag not read"),
        }
    }

    async fn purge(&self) {
        let keep = chrono::Duration::seconds(i64::try_from(self.cfg().keep_done_s).unwrap_or(i64::MAX / 1000));
        let before = crate::db::now() - keep;
        match self.ctx.db.write(move |c| outbox::purge_done(c, before)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "delivered outbox rows purged"),
            Err(e) => tracing::warn!(error = %e, "outbox purge failed"),
        }
    }
}
