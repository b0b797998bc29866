//! A test consumer: its effect is a row in `test_effects`, written in one write transaction with
//! `consumed::once`, so the tests can count how often each message took effect. The table has no
//! unique key on purpose: an effect applied twice would show as two rows.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::NaiveDateTime;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use heft::db::{Db, DbError};
use heft::mq::topics::Payload;
use heft::mq::{Handler, HandlerError, Message};

pub const TOPIC: &str = Effect::TOPIC;

/// The probe's message: which one it is (`None` for messages the tests do not count).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Effect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<i64>,
}

impl Effect {
    pub fn new(n: i64) -> Effect {
        Effect { n: Some(n) }
    }
}

impl Payload for Effect {
    const TOPIC: &'static str = "test.effect";
}
pub const CONSUMER: &str = "test-probe";

diesel::table! {
    test_effects (message_id) {
        message_id -> Text,
        n -> Integer,
    }
}

diesel::table! {
    test_state (k) {
        k -> Text,
    }
}

#[derive(Default)]
pub struct Probe {
    db: Mutex<Option<Db>>,
    /// Every handling fails (a poison message).
    pub fail: bool,
    pub calls: AtomicUsize,
    /// Handlings `consumed::once` turned away.
    pub duplicates: AtomicUsize,
    /// First handlings: (message id, when the handler was called).
    pub handled: Mutex<Vec<(String, NaiveDateTime)>>,
}

impl Probe {
    pub fn new(fail: bool) -> Arc<Probe> {
        Arc::new(Probe { fail, ..Probe::default() })
    }

    pub fn handler(self: &Arc<Self>) -> Vec<Arc<dyn Handler>> {
        vec![Arc::new(ProbeHandler(self.clone()))]
    }

    /// Create the test tables on the server's database and start handling.
    pub async fn attach(&self, db: &Db) {
        db.write(|c| {
            c.batch_execute(
                "CREATE TABLE IF NOT EXISTS test_effects (message_id TEXT NOT NULL, n INTEGER NOT NULL); \
                 CREATE TABLE IF NOT EXISTS test_state (k TEXT PRIMARY KEY);",
            )?;
            Ok::<_, DbError>(())
        })
        .await
        .expect("create test tables");
        *self.db.lock().expect("lock") = Some(db.clone());
    }

    pub fn duplicates(&self) -> usize {
        self.duplicates.load(Ordering::SeqCst)
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

struct ProbeHandler(Arc<Probe>);

#[async_trait]
impl Handler for ProbeHandler {
    fn name(&self) -> &str {
        CONSUMER
    }

    fn topics(&self) -> Vec<String> {
        vec![TOPIC.to_string()]
    }

    async fn handle(&self, msg: &Message) -> Result<(), HandlerError> {
        let called_at = heft::db::now();
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        if self.0.fail {
            return Err(HandlerError::Failed("the probe always fails".into()));
        }
        let db = self.0.db.lock().expect("lock").clone();
        let Some(db) = db else { return Err(HandlerError::Failed("probe not attached yet".into())) };
        let effect: Effect = msg.decode()?;
        let (id, n) = (msg.id.clone(), effect.n.unwrap_or(-1) as i32);
        let first = db
            .write(move |c| {
                if !heft::db::consumed::once(c, CONSUMER, &id)? {
                    return Ok::<_, DbError>(false);
                }
                diesel::insert_into(test_effects::table)
                    .values((test_effects::message_id.eq(&id), test_effects::n.eq(n)))
                    .execute(c)?;
                Ok(true)
            })
            .await?;
        if first {
            self.0.handled.lock().expect("lock").push((msg.id.clone(), called_at));
        } else {
            self.0.duplicates.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// Write `count` messages (payload `{"n": first + i}`), each with a state change (a `test_state`
/// row), all in one transaction when `one_tx`, else one transaction each; wake the relay after
/// each commit. Returns the message ids.
pub async fn send(server: &heft::app::Heft, first: usize, count: usize, one_tx: bool) -> Vec<String> {
    let db = &server.services.db;
    let write = |range: std::ops::Range<usize>| {
        db.write(move |c| {
            let mut ids = Vec::new();
            for n in range {
                diesel::insert_into(test_state::table).values(test_state::k.eq(format!("k{n}"))).execute(c)?;
                ids.push(Effect::new(n as i64).enqueue(c)?);
            }
            Ok::<_, DbError>(ids)
        })
    };
    let mut ids = Vec::new();
    if one_tx {
        ids = write(first..first + count).await.expect("enqueue");
        server.services.relay.wake();
    } else {
        for n in first..first + count {
            ids.extend(write(n..n + 1).await.expect("enqueue"));
            server.services.relay.wake();
        }
    }
    ids
}

/// Message ids in `test_effects`, one entry per effect row (sorted).
pub async fn effects(db: &Db) -> Vec<String> {
    let mut ids: Vec<String> = db
        .run(|c| Ok::<_, DbError>(test_effects::table.select(test_effects::message_id).load::<String>(c)?))
        .await
        .expect("read effects");
    ids.sort();
    ids
}

/// (pending, done, dead) outbox rows.
pub async fn outbox_counts(db: &Db) -> (usize, usize, usize) {
    use heft::db::schema::outbox;
    let statuses: Vec<String> = db
        .run(|c| Ok::<_, DbError>(outbox::table.select(outbox::status).load::<String>(c)?))
        .await
        .expect("read outbox");
    let count = |s: &str| statuses.iter().filter(|x| x.as_str() == s).count();
    (count("pending"), count("done"), count("dead"))
}
