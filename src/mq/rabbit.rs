//! The RabbitMQ transport (production profile).
//!
//! Topology, all durable, names under `messages.prefix` (`{p}`):
//! - `{p}.messages` (direct): one queue `{p}.q.{topic}` per topic, bound by the topic, with
//!   `x-dead-letter-exchange = {p}.dead`; a consumer's `nack(requeue=false)` puts a message there.
//! - `{p}.dead` (fanout) → queue `{p}.dead`: messages given up on.
//! - per delay `d` in `messages.delays_ms`: `{p}.delay.{d}` (fanout) → queue `{p}.wait.{d}` with
//!   `x-message-ttl = d` and `x-dead-letter-exchange = {p}.messages`. Nobody consumes a wait
//!   queue: a message expires after `d` and goes back to `{p}.messages` under its routing key
//!   (its topic). One queue per delay, because RabbitMQ only expires the head of a queue.
//!
//! Every publish is persistent, mandatory and confirmed. Headers: `x-deliver-at` (Unix ms; not
//! handled before) and `x-attempts` (failed handlings so far).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind, PublisherConfirm};
use tokio::sync::watch;

use super::{Context, HandlerError, Message, MqError, backoff, record_dead, redact, topics};

/// A connection attempt that takes longer than this counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest pause between two reconnection attempts.
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(10);
const DELIVER_AT: &str = "x-deliver-at";
const ATTEMPTS: &str = "x-attempts";

/// Exchange and queue names under one prefix.
#[derive(Debug, Clone)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Names {
        Names { prefix: prefix.to_string() }
    }
    pub fn exchange(&self) -> String {
        format!("{}.messages", self.prefix)
    }
    pub fn queue(&self, topic: &str) -> String {
        format!("{}.q.{topic}", self.prefix)
    }
    pub fn dead(&self) -> String {
        format!("{}.dead", self.prefix)
    }
    pub fn delay_exchange(&self, delay_ms: u64) -> String {
        format!("{}.delay.{delay_ms}", self.prefix)
    }
    pub fn wait_queue(&self, delay_ms: u64) -> String {
        format!("{}.wait.{delay_ms}", self.prefix)
    }
}

/// Topics that get a queue: the known ones and every one a handler of this node names.
pub fn queued_topics(ctx: &Context) -> Vec<String> {
    let mut all: Vec<String> = topics::ALL.iter().map(|t| t.to_string()).collect();
    all.extend(ctx.consumers.topics());
    all.sort();
    all.dedup();
    all
}

pub async fn connect(url: &str) -> Result<Connection, MqError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url, ConnectionProperties::default())).await {
        Ok(conn) => Ok(conn?),
        Err(_) => Err(MqError::Timeout(CONNECT_TIMEOUT)),
    }
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() }
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() }
}

/// Declare the whole topology (idempotent; done on every (re)connection, as the broker may have
/// lost non-durable state or be a fresh node).
pub async fn declare(ch: &Channel, names: &Names, topics: &[String], delays_ms: &[u64]) -> Result<(), MqError> {
    let (exchange, dead) = (names.exchange(), names.dead());
    ch.exchange_declare(exchange.as_str().into(), ExchangeKind::Direct, durable_exchange(), FieldTable::default())
        .await?;
    ch.exchange_declare(dead.as_str().into(), ExchangeKind::Fanout, durable_exchange(), FieldTable::default()).await?;
    ch.queue_declare(dead.as_str().into(), durable_queue(), FieldTable::default()).await?;
    ch.queue_bind(
        dead.as_str().into(),
        dead.as_str().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    for topic in topics {
        let queue = names.queue(topic);
        let mut args = FieldTable::default();
        args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(dead.as_str().into()));
        ch.queue_declare(queue.as_str().into(), durable_queue(), args).await?;
        ch.queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            topic.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    for &d in delays_ms {
        let (delay, wait) = (names.delay_exchange(d), names.wait_queue(d));
        ch.exchange_declare(delay.as_str().into(), ExchangeKind::Fanout, durable_exchange(), FieldTable::default())
            .await?;
        let mut args = FieldTable::default();
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(i64::try_from(d).unwrap_or(i64::MAX)));
        args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(exchange.as_str().into()));
        ch.queue_declare(wait.as_str().into(), durable_queue(), args).await?;
        ch.queue_bind(
            wait.as_str().into(),
            delay.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    Ok(())
}

/// Delete everything [`declare`] made under `names` (a test or benchmark run's own prefix, when
/// it is done). Messages still queued are lost: never call it on a prefix in use.
pub async fn remove(url: &str, names: &Names, topics: &[String], delays_ms: &[u64]) -> Result<(), MqError> {
    let conn = connect(url).await?;
    let ch = conn.create_channel().await?;
    let mut queues: Vec<String> = topics.iter().map(|t| names.queue(t)).collect();
    queues.push(names.dead());
    queues.extend(delays_ms.iter().map(|&d| names.wait_queue(d)));
    for q in queues {
        ch.queue_delete(q.as_str().into(), Default::default()).await?;
    }
    let mut exchanges = vec![names.exchange(), names.dead()];
    exchanges.extend(delays_ms.iter().map(|&d| names.delay_exchange(d)));
    for e in exchanges {
        ch.exchange_delete(e.as_str().into(), Default::default()).await?;
    }
    let _ = conn.close(200, "OK".into()).await;
    Ok(())
}

/// The longest delay that does not overshoot `remaining_ms`; `None` when even the shortest does
/// (the message then goes straight to its queue and its consumer waits out the rest).
pub fn longest_fitting(delays_ms: &[u64], remaining_ms: i64) -> Option<u64> {
    let remaining = u64::try_from(remaining_ms).ok()?;
    delays_ms.iter().copied().filter(|&d| d > 0 && d <= remaining).max()
}

/// `deliver_at` as Unix ms, rounded up so a message is never handled before it.
pub fn deliver_at_ms(at: chrono::NaiveDateTime) -> i64 {
    let us = at.and_utc().timestamp_micros();
    us.div_euclid(1000) + i64::from(us.rem_euclid(1000) != 0)
}

fn header_i64(headers: Option<&FieldTable>, key: &str) -> Option<i64> {
    let v = headers?.inner().get(key)?;
    match v {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::Timestamp(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}

/// A confirm channel, used by the relay to publish from the outbox and by consumers to park
/// and retry.
#[derive(Clone)]
pub struct Publisher {
    ch: Channel,
    names: Names,
    delays_ms: Vec<u64>,
}

impl Publisher {
    pub async fn open(conn: &Connection, names: Names, delays_ms: Vec<u64>) -> Result<Publisher, MqError> {
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(Publisher { ch, names, delays_ms })
    }

    pub fn connected(&self) -> bool {
        self.ch.status().connected()
    }

    /// Publish `msg`, due at `due_ms` (Unix ms): to the longest wait queue that fits when that is
    /// later, else straight to its topic's queue. Returns the confirm to await.
    pub async fn publish(&self, msg: &Message, due_ms: i64, attempts: u32) -> Result<PublisherConfirm, MqError> {
        let remaining = due_ms - chrono::Utc::now().timestamp_millis();
        let exchange = match longest_fitting(&self.delays_ms, remaining) {
            Some(d) => self.names.delay_exchange(d),
            None => self.names.exchange(),
        };
        let mut headers = FieldTable::default();
        headers.insert(DELIVER_AT.into(), AMQPValue::LongLongInt(due_ms));
        headers.insert(ATTEMPTS.into(), AMQPValue::LongLongInt(i64::from(attempts)));
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(msg.id.as_str().into())
            .with_content_type("application/json".into())
            .with_headers(headers);
        let body = msg.payload.as_bytes();
        let opts = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
        Ok(self.ch.basic_publish(exchange.as_str().into(), msg.topic.as_str().into(), opts, body, props).await?)
    }
}

/// Wait for a publish's confirm: `Ok` only on an Ack of a routed message within `timeout`.
pub async fn confirmed(confirm: PublisherConfirm, timeout: Duration) -> Result<(), MqError> {
    match tokio::time::timeout(timeout, confirm).await {
        Err(_) => Err(MqError::Timeout(timeout)),
        Ok(Err(e)) => Err(e.into()),
        Ok(Ok(Confirmation::Ack(None))) => Ok(()),
        // Mandatory and unroutable: acked, but no queue has it.
        Ok(Ok(Confirmation::Ack(Some(_)))) => Err(MqError::Refused("no queue for its topic")),
        Ok(Ok(Confirmation::Nack(_))) => Err(MqError::Refused("nack")),
        Ok(Ok(Confirmation::NotRequested)) => Err(MqError::Refused("confirms not enabled")),
    }
}

/// Run this node's consumers until `stop` turns true: connect, declare, consume every topic that
/// has a handler; on connection loss reconnect with a doubling pause. Nothing when no handler.
pub async fn run_consumers(ctx: Arc<Context>, url: String, mut stop: watch::Receiver<bool>) {
    if ctx.consumers.topics().is_empty() {
        return;
    }
    let base = Duration::from_millis(ctx.cfg.retry_base_ms.clamp(100, 1000));
    let mut pause = base;
    loop {
        match consume(&ctx, &url, &mut stop, &mut pause, base).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, url = %redact(&url), pause_ms = pause.as_millis() as u64, "RabbitMQ consumers lost; reconnecting");
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        if *stop.borrow() {
            return;
        }
        pause = (pause * 2).min(MAX_RECONNECT_PAUSE);
    }
}

/// One connection's life; `Ok` when stopped, `Err` when the connection failed.
async fn consume(
    ctx: &Arc<Context>,
    url: &str,
    stop: &mut watch::Receiver<bool>,
    pause: &mut Duration,
    base: Duration,
) -> Result<(), MqError> {
    let conn = connect(url).await?;
    let names = Names::new(&ctx.cfg.prefix);
    let setup = conn.create_channel().await?;
    declare(&setup, &names, &queued_topics(ctx), &ctx.cfg.delays_ms).await?;
    let publisher = Publisher::open(&conn, names.clone(), ctx.cfg.delays_ms.clone()).await?;
    let mut streams = Vec::new();
    for topic in ctx.consumers.topics() {
        // A channel per queue, so one topic's prefetch window does not hold up another's.
        let ch = conn.create_channel().await?;
        ch.basic_qos(ctx.cfg.prefetch, BasicQosOptions::default()).await?;
        let consumer = ch
            .basic_consume(
                names.queue(&topic).as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        // A stream that ends (the broker cancelled this consumer) says so with a None, so the
        // topic is not silently left unconsumed while the others run.
        streams.push(consumer.map(Some).chain(futures_util::stream::once(async { None })).boxed());
    }
    tracing::info!(url = %redact(url), topics = streams.len(), "RabbitMQ consumers running");
    *pause = base;
    let broken = Arc::new(tokio::sync::Notify::new());
    let mut deliveries = futures_util::stream::select_all(streams);
    let result = loop {
        tokio::select! {
            _ = stop.changed() => {
                if *stop.borrow() {
                    break Ok(());
                }
            }
            // The publisher channel failed under a delivery: start over on a new connection.
            _ = broken.notified() => break Err(MqError::Closed),
            next = deliveries.next() => match next {
                // Handled beside the others: at most `prefetch` per topic are outstanding.
                Some(Some(Ok(delivery))) => {
                    tokio::spawn(on_delivery(ctx.clone(), publisher.clone(), broken.clone(), delivery));
                }
                Some(Some(Err(e))) => break Err(MqError::from(e)),
                Some(None) | None => break Err(MqError::Closed),
            },
        }
    };
    let _ = conn.close(200, "OK".into()).await;
    result
}

async fn on_delivery(
    ctx: Arc<Context>,
    publisher: Publisher,
    broken: Arc<tokio::sync::Notify>,
    d: lapin::message::Delivery,
) {
    let headers = d.properties.headers().as_ref();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let due_ms = header_i64(headers, DELIVER_AT).unwrap_or(now_ms);
    let attempts = header_i64(headers, ATTEMPTS).and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
    let msg = match decode(&d, due_ms, attempts) {
        Ok(msg) => msg,
        Err(reason) => {
            // Cannot be handled however often it is tried: straight to the dead queue.
            tracing::error!(reason, "undecodable message dead-lettered");
            let _ = d.nack(BasicNackOptions { requeue: false, ..BasicNackOptions::default() }).await;
            return;
        }
    };
    let remaining = due_ms - now_ms;
    if remaining > 0 {
        if longest_fitting(&ctx.cfg.delays_ms, remaining).is_some() {
            // Early (it came through a shorter wait queue): park it again.
            repost(&publisher, &broken, &ctx, &d, &msg, due_ms, attempts).await;
            return;
        }
        // Less than the shortest wait queue: wait it out here.
        tokio::time::sleep(Duration::from_millis(remaining.unsigned_abs())).await;
    }
    match ctx.consumers.dispatch_within(&msg, ctx.handler_limit()).await {
        Ok(()) => {
            ctx.metrics.messages_delivered.with_label_values(&[msg.topic.as_str()]).inc();
            let _ = d.ack(BasicAckOptions::default()).await;
        }
        Err(e) => {
            // Our database failing says nothing about the message: it is retried without
            // counting, however long the outage lasts.
            let failed = match e {
                HandlerError::Db(_) => attempts,
                HandlerError::Failed(_) => attempts + 1,
            };
            if failed < ctx.cfg.max_attempts {
                ctx.metrics.messages_retried.with_label_values(&[msg.topic.as_str()]).inc();
                tracing::warn!(message_id = %msg.id, topic = %msg.topic, attempts = failed, error = %e, "message failed; retrying");
                let due = chrono::Utc::now().timestamp_millis()
                    + i64::try_from(backoff(&ctx.cfg, failed.max(1)).as_millis()).unwrap_or(i64::MAX);
                repost(&publisher, &broken, &ctx, &d, &msg, due, failed).await;
            } else {
                // Recorded first (ops see it, an alert is raised), then to `{prefix}.dead` by the
                // queue's dead-letter exchange. Not recorded → back to the queue, after a pause.
                match record_dead(&ctx.db, &ctx.metrics, &msg, failed, &e.to_string()).await {
                    Ok(()) => {
                        let _ = d.nack(BasicNackOptions { requeue: false, ..BasicNackOptions::default() }).await;
                    }
                    Err(db) => {
                        tracing::error!(message_id = %msg.id, error = %db, "dead message not recorded; returned to its queue");
                        tokio::time::sleep(backoff(&ctx.cfg, 1)).await;
                        let _ = d.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await;
                    }
                }
            }
        }
    }
}

/// Publish `msg` again (due at `due_ms`, after `attempts` failures) and ack the delivery once
/// RabbitMQ confirmed the copy; if it did not, give the delivery back so nothing is lost.
async fn repost(
    publisher: &Publisher,
    broken: &tokio::sync::Notify,
    ctx: &Context,
    d: &lapin::message::Delivery,
    msg: &Message,
    due_ms: i64,
    attempts: u32,
) {
    let timeout = Duration::from_millis(ctx.cfg.confirm_timeout_ms);
    let sent = match publisher.publish(msg, due_ms, attempts).await {
        Ok(confirm) => confirmed(confirm, timeout).await,
        Err(e) => Err(e),
    };
    match sent {
        Ok(()) => {
            let _ = d.ack(BasicAckOptions::default()).await;
        }
        Err(e) => {
            tracing::warn!(message_id = %msg.id, error = %e, "message not re-published; returned to its queue");
            if !publisher.connected() {
                broken.notify_one();
            }
            // Not straight back: the same failure would loop at full speed.
            tokio::time::sleep(backoff(&ctx.cfg, 1)).await;
            let _ = d.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await;
        }
    }
}

fn decode(d: &lapin::message::Delivery, due_ms: i64, attempts: u32) -> Result<Message, String> {
    let id = d.properties.message_id().as_ref().map(|s| s.as_str().to_string()).ok_or("no message id")?;
    let payload = String::from_utf8(d.data.clone()).map_err(|e| format!("message {id}: payload is not UTF-8: {e}"))?;
    let deliver_at = chrono::DateTime::from_timestamp_millis(due_ms)
        .ok_or_else(|| format!("message {id}: bad {DELIVER_AT}"))?
        .naive_utc();
    Ok(Message { id, topic: d.routing_key.as_str().to_string(), payload, deliver_at, attempts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_longest_delay_that_fits() {
        let delays = [1000, 5000, 15000];
        assert_eq!(longest_fitting(&delays, 999), None);
        assert_eq!(longest_fitting(&delays, 1000), Some(1000));
        assert_eq!(longest_fitting(&delays, 14_999), Some(5000));
        assert_eq!(longest_fitting(&delays, 10_000_000), Some(15000));
        assert_eq!(longest_fitting(&delays, -5), None);
    }

    #[test]
    fn deliver_at_rounds_up_to_the_millisecond() {
        let t = chrono::DateTime::from_timestamp_micros(1_700_000_000_123_001).map(|t| t.naive_utc());
        assert_eq!(t.map(deliver_at_ms), Some(1_700_000_000_124));
        let t = chrono::DateTime::from_timestamp_micros(1_700_000_000_123_000).map(|t| t.naive_utc());
        assert_eq!(t.map(deliver_at_ms), Some(1_700_000_000_123));
    }
}
