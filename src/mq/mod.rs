//! Messages that must not be lost: what a message is, who consumes it, and the two transports.
//!
//! A message is written to the outbox (`db::outbox::enqueue`) in the transaction of the change
//! that causes it; the relay (`actors::relay`) delivers it — to in-process handlers
//! ([`embedded`], `messages.url = "embedded://"`) or to RabbitMQ with publisher confirms
//! ([`rabbit`], `amqp://…`), whose consumers then call the same handlers. Delivery is at least
//! once; handlers make it exactly once in effect with `db::consumed::once`.

pub mod embedded;
pub mod live;
pub mod rabbit;
pub mod rpc;
pub mod topics;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDateTime;

use crate::config::MessagesConfig;
use crate::db::{Db, DbError};
use crate::domain::alert;
use crate::metrics::Metrics;

/// Longest pause between two attempts at one message, however many failed.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// One message, as a handler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// 32 hex digits; the key consumers dedupe on.
    pub id: String,
    pub topic: String,
    /// The payload as written: JSON text of the topic's [`Payload`](topics::Payload) struct.
    pub payload: String,
    /// Not handed to a handler before this (UTC).
    pub deliver_at: NaiveDateTime,
    /// Failed handlings so far.
    pub attempts: u32,
}

impl Message {
    pub fn from_row(row: &crate::db::outbox::OutboxRow) -> Message {
        Message {
            id: row.message_id.clone(),
            topic: row.topic.clone(),
            payload: row.payload.clone(),
            deliver_at: row.deliver_at,
            attempts: u32::try_from(row.attempts).unwrap_or(0),
        }
    }

    /// The payload as the topic's struct. A message of another topic, or one that does not read
    /// as its topic's payload, fails the handling (and so is retried, then dead for a person).
    pub fn decode<P: topics::Payload>(&self) -> Result<P, HandlerError> {
        if self.topic != P::TOPIC {
            return Err(HandlerError::Failed(format!("message {} is on {}, not {}", self.id, self.topic, P::TOPIC)));
        }
        serde_json::from_str(&self.payload)
            .map_err(|e| HandlerError::Failed(format!("{} message {} does not read: {e}", self.topic, self.id)))
    }
}

/// What the relay and the consumers share.
pub struct Context {
    pub db: Db,
    pub cfg: MessagesConfig,
    pub metrics: Metrics,
    pub consumers: Consumers,
}

impl Context {
    /// Longest one message's handling may take.
    pub fn handler_limit(&self) -> Duration {
        Duration::from_millis(self.cfg.handler_timeout_ms)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth trying again later (the message is retried until `max_attempts`).
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for HandlerError {
    fn from(e: diesel::result::Error) -> Self {
        HandlerError::Db(DbError::Query(e))
    }
}

/// A consumer. Handling must be idempotent: write the effect and `db::consumed::once(name, id)`
/// in one write transaction, and skip the effect when `once` says it was already handled.
#[async_trait]
pub trait Handler: Send + Sync {
    /// Stable: the dedupe key in `consumed_messages`.
    fn name(&self) -> &str;
    fn topics(&self) -> Vec<String>;
    async fn handle(&self, msg: &Message) -> Result<(), HandlerError>;
}

/// The handlers of this node, by topic.
#[derive(Clone, Default)]
pub struct Consumers {
    by_topic: BTreeMap<String, Vec<Arc<dyn Handler>>>,
}

impl Consumers {
    pub fn new(handlers: Vec<Arc<dyn Handler>>) -> Consumers {
        let mut by_topic: BTreeMap<String, Vec<Arc<dyn Handler>>> = BTreeMap::new();
        for h in handlers {
            for topic in h.topics() {
                by_topic.entry(topic).or_default().push(h.clone());
            }
        }
        Consumers { by_topic }
    }

    pub fn for_topic(&self, topic: &str) -> &[Arc<dyn Handler>] {
        self.by_topic.get(topic).map_or(&[], Vec::as_slice)
    }

    /// Topics with at least one handler.
    pub fn topics(&self) -> Vec<String> {
        self.by_topic.keys().cloned().collect()
    }

    /// [`dispatch`](Self::dispatch), given at most `limit`: a handler stuck on a platform that
    /// does not answer fails the attempt (and is retried) instead of holding the message.
    pub async fn dispatch_within(&self, msg: &Message, limit: Duration) -> Result<(), HandlerError> {
        match tokio::time::timeout(limit, self.dispatch(msg)).await {
            Ok(result) => result,
            Err(_) => Err(HandlerError::Failed(format!("handling took longer than {} ms", limit.as_millis()))),
        }
    }

    /// Every handler of the message's topic, in order; the first error ends it (the message is
    /// retried as a whole, and handlers that already succeeded dedupe).
    pub async fn dispatch(&self, msg: &Message) -> Result<(), HandlerError> {
        let handlers = self.for_topic(&msg.topic);
        if handlers.is_empty() {
            return Err(HandlerError::Failed(format!("no consumer for topic {}", msg.topic)));
        }
        for h in handlers {
            h.handle(msg).await?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MqError {
    #[error("messages.url: unsupported scheme in {0} (embedded:// or amqp://)")]
    Url(String),
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("RabbitMQ did not answer within {0:?}")]
    Timeout(Duration),
    #[error("RabbitMQ refused the message ({0})")]
    Refused(&'static str),
    #[error("RabbitMQ connection closed")]
    Closed,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Where the relay delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Embedded,
    Rabbit { url: String },
}

impl Transport {
    pub fn parse(url: &str) -> Result<Transport, MqError> {
        if url.starts_with("embedded://") {
            Ok(Transport::Embedded)
        } else if url.starts_with("amqp://") || url.starts_with("amqps://") {
            Ok(Transport::Rabbit { url: url.to_string() })
        } else {
            Err(MqError::Url(redact(url)))
        }
    }
}

/// The URL with its password replaced, for logs.
pub fn redact(url: &str) -> String {
    crate::config::redact_url(url)
}

/// Pause before attempt `attempts + 1`, after `attempts` (≥ 1) failures:
/// `retry_base_ms · 2^(attempts-1)`, at most [`MAX_BACKOFF`].
pub fn backoff(cfg: &MessagesConfig, attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(30);
    let ms = cfg.retry_base_ms.saturating_mul(1u64 << exp);
    Duration::from_millis(ms).min(MAX_BACKOFF)
}

/// A message given up on: its outbox row dead (so ops see it in both profiles), the
/// `message_dead` alert, and the dead counter.
pub async fn record_dead(db: &Db, metrics: &Metrics, msg: &Message, attempts: u32, error: &str) -> Result<(), DbError> {
    let (id, spec) = (msg.id.clone(), alert::message_dead(&msg.id, &msg.topic, attempts, error));
    let (detail, stored_attempts) = (error.to_string(), i32::try_from(attempts).unwrap_or(i32::MAX));
    db.write(move |c| {
        crate::db::outbox::mark_dead(c, &id, stored_attempts, &detail)?;
        crate::db::alerts::raise(c, &spec, 1, crate::db::now())?;
        Ok::<_, DbError>(())
    })
    .await?;
    metrics.messages_dead.with_label_values(&[msg.topic.as_str()]).inc();
    tracing::error!(message_id = %msg.id, topic = %msg.topic, attempts, error, "message dead");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Stuck;

    #[async_trait]
    impl Handler for Stuck {
        fn name(&self) -> &str {
            "stuck"
        }
        fn topics(&self) -> Vec<String> {
            vec!["t".into()]
        }
        async fn handle(&self, _: &Message) -> Result<(), HandlerError> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_stuck_handler_fails_the_attempt() {
        let consumers = Consumers::new(vec![Arc::new(Stuck)]);
        let msg = Message {
            id: "m".into(),
            topic: "t".into(),
            payload: "null".into(),
            deliver_at: chrono::Utc::now().naive_utc(),
            attempts: 0,
        };
        let r = consumers.dispatch_within(&msg, Duration::from_millis(20)).await;
        assert!(matches!(r, Err(HandlerError::Failed(ref m)) if m.contains("longer than 20 ms")), "{r:?}");
    }

    #[test]
    fn redacts_the_password() {
        assert!(!redact("amqp://guest:secret@127.0.0.1:5672/%2f").contains("secret"));
    }

    #[test]
    fn transports_by_scheme() {
        assert_eq!(Transport::parse("embedded://").ok(), Some(Transport::Embedded));
        assert!(matches!(Transport::parse("amqp://h/%2f"), Ok(Transport::Rabbit { .. })));
        assert!(Transport::parse("kafka://x").is_err());
    }
}
