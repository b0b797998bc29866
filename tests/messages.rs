//! Messages that are never lost: the outbox, its relay and the consumers, in both profiles
//! (production: PostgreSQL, Redis and RabbitMQ).

mod common;
#[path = "messages/probe.rs"]
mod probe;

use std::sync::Arc;
use std::time::Duration;

use common::{Profile, TestServer, eventually};
use heft::actors::relay::RelayFault;
use heft::mq::topics::Payload;
use probe::{Effect, Probe, TOPIC};

async fn start(profile: Profile, extra: &[(&str, &str)], probe: &Arc<Probe>) -> Option<TestServer> {
    let storage = common::storage(profile)?;
    let config = common::config(&storage, common::free_port(), extra);
    let s = TestServer::start_with_handlers(storage, config, probe.handler()).await;
    probe.attach(&s.heft.services.db).await;
    Some(s)
}

async fn all_applied_once(s: &TestServer, ids: &[String]) {
    let db = s.heft.services.db.clone();
    let want = ids.len();
    eventually("every message applied and its row done", || {
        let db = db.clone();
        async move {
            let (pending, done, _) = probe::outbox_counts(&db).await;
            (probe::effects(&db).await.len() >= want && pending == 0 && done == want).then_some(())
        }
    })
    .await;
    let mut expected = ids.to_vec();
    expected.sort();
    assert_eq!(probe::effects(&db).await, expected, "each message took effect exactly once");
}

/// N messages, each written with a state change, are each applied exactly once.
async fn exactly_once(profile: Profile) {
    let probe = Probe::new(false);
    let Some(s) = start(profile, &[], &probe).await else { return };
    let ids = probe::send(&s.heft, 0, 40, false).await;
    all_applied_once(&s, &ids).await;
    let delivered = format!("heft_messages_delivered_total{{topic=\"{TOPIC}\"}}");
    assert_eq!(s.metric(&delivered).await, 40.0);
    s.stop().await;
}
both_profiles!(exactly_once_per_message, exactly_once);

/// The relay delivers a batch and dies before marking it; after a restart on the same storage
/// the rows are delivered again, and the consumer's dedupe keeps the effect to one.
async fn relay_dies_between_publish_and_mark(profile: Profile) {
    let probe = Probe::new(false);
    // Lease = 2 × confirm_timeout_ms (RabbitMQ) or handler_timeout_ms (in process): the claimed
    // rows are due again 2 s after the crash.
    let extra = [("HEFT__MESSAGES__CONFIRM_TIMEOUT_MS", "1000"), ("HEFT__MESSAGES__HANDLER_TIMEOUT_MS", "1000")];
    let Some(s) = start(profile, &extra, &probe).await else { return };
    s.heft.relay_fault(RelayFault::DieAfterPublish);
    // One transaction, so the relay's one fatal round takes all of them.
    let ids = probe::send(&s.heft, 0, 5, true).await;
    let db = s.heft.services.db.clone();
    eventually("the batch took effect before the relay died", || {
        let db = db.clone();
        async move { (probe::effects(&db).await.len() == 5).then_some(()) }
    })
    .await;
    let (pending, done, _) = probe::outbox_counts(&db).await;
    assert_eq!((pending, done), (5, 0), "the dead relay marked nothing done");

    let (storage, config) = s.stop().await;
    let s = TestServer::start_with_handlers(storage, config, probe.handler()).await;
    probe.attach(&s.heft.services.db).await;
    all_applied_once(&s, &ids).await;
    assert!(probe.duplicates() >= 5, "the redeliveries reached the consumer: {} duplicates", probe.duplicates());
    s.stop().await;
}
both_profiles!(relay_killed_between_publish_and_mark_done, relay_dies_between_publish_and_mark);

/// A message due in 2 s is not handled before then.
async fn delayed(profile: Profile) {
    let probe = Probe::new(false);
    let Some(s) = start(profile, &[], &probe).await else { return };
    // Whole milliseconds: what every store and header keeps exactly.
    let now = heft::db::now();
    let deliver_at =
        chrono::DateTime::from_timestamp_millis(now.and_utc().timestamp_millis() + 2000).expect("time").naive_utc();
    let id = s.heft.services.db.write(move |c| Effect::new(1).enqueue_at(c, Some(deliver_at))).await.expect("enqueue");
    s.heft.services.relay.wake();
    let handled_at = eventually("the delayed message is handled", || {
        let probe = probe.clone();
        let id = id.clone();
        async move { probe.handled.lock().expect("lock").iter().find(|(m, _)| *m == id).map(|(_, at)| *at) }
    })
    .await;
    assert!(handled_at >= deliver_at, "handled at {handled_at}, before its time {deliver_at}");
    s.stop().await;
}
both_profiles!(delayed_message_waits_for_its_time, delayed);

/// A message whose handler always fails ends dead after max_attempts: alert, ops list, metric,
/// and (production) RabbitMQ's dead-letter queue.
async fn poison(profile: Profile) {
    let probe = Probe::new(true);
    let extra = [("HEFT__MESSAGES__MAX_ATTEMPTS", "3"), ("HEFT__MESSAGES__RETRY_BASE_MS", "50")];
    let Some(s) = start(profile, &extra, &probe).await else { return };
    let ids = probe::send(&s.heft, 0, 1, true).await;
    let id = ids[0].clone();
    let dead = eventually("the poison message is listed dead", || async {
        let body = s.get_ok("/ops/messages?status=dead").await;
        body["messages"].as_array().and_then(|m| m.iter().find(|m| m["id"] == id.as_str()).cloned())
    })
    .await;
    assert_eq!(dead["topic"], TOPIC);
    assert_eq!(dead["attempts"], 3);
    assert_eq!(probe.calls(), 3, "handled max_attempts times, no more");
    let alerts = s.alerts("code=message_dead").await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let text = alerts[0]["message"].as_str().unwrap_or_default();
    assert!(text.contains(&id) && text.contains(TOPIC), "alert names the message and topic: {text}");
    let metric = format!("heft_messages_dead_total{{topic=\"{TOPIC}\"}}");
    assert_eq!(s.metric(&metric).await, 1.0);
    if let Some((url, prefix)) = &s.storage.mq {
        let (url, queue) = (url.clone(), format!("{prefix}.dead"));
        eventually("the message sits in the dead-letter queue", || {
            let (url, queue) = (url.clone(), queue.clone());
            async move { (dead_letters(&url, &queue).await == 1).then_some(()) }
        })
        .await;
    }
    // Ops put it back: pending again, tried again (and, still poison, dead again).
    let (status, body) = s
        .call(heft::domain::operator::Role::Operator, reqwest::Method::POST, &format!("/ops/messages/{id}/retry"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    eventually("the retried message is handled again", || async { (probe.calls() > 3).then_some(()) }).await;
    let (status, _) =
        s.call(heft::domain::operator::Role::Operator, reqwest::Method::POST, "/ops/messages/nope/retry", None).await;
    assert_eq!(status, 404);
    let (status, _) = s
        .call(
            heft::domain::operator::Role::Restocker,
            reqwest::Method::POST,
            &format!("/ops/messages/{id}/retry"),
            None,
        )
        .await;
    assert_eq!(status, 403);
    s.stop().await;
}
both_profiles!(poison_message_ends_dead, poison);

/// Messages in a RabbitMQ queue, read with a passive declare.
async fn dead_letters(url: &str, queue: &str) -> u32 {
    let Ok(conn) = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await else { return 0 };
    let count = match conn.create_channel().await {
        Ok(ch) => {
            let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
            ch.queue_declare(queue.into(), passive, Default::default()).await.map_or(0, |q| q.message_count())
        }
        Err(_) => 0,
    };
    let _ = conn.close(200, "OK".into()).await;
    count
}

#[actix_rt::test]
async fn pending_messages_are_listed() {
    let probe = Probe::new(false);
    let Some(s) = start(Profile::Embedded, &[], &probe).await else { return };
    let later = heft::db::now() + chrono::Duration::hours(1);
    let id = s.heft.services.db.write(move |c| Effect::new(7).enqueue_at(c, Some(later))).await.expect("enqueue");
    let body = s.get_ok("/ops/messages?status=pending").await;
    let listed = body["messages"].as_array().expect("messages");
    assert!(listed.iter().any(|m| m["id"] == id.as_str() && m["payload"]["n"] == 7), "{body}");
    let (status, _) = s.get("/ops/messages?status=bogus").await;
    assert_eq!(status, 400);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(probe.calls(), 0, "not due for an hour");
    s.stop().await;
}

/// `heft_outbox_lag_seconds` is the wait of the oldest due message since it became deliverable
/// (written, due, and not backing off), not counting messages not yet due nor delivered ones.
/// No relay runs here, so nothing moves the rows.
#[test]
fn outbox_lag_is_the_oldest_due_wait() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("lag.db").display());
    let db = heft::db::Db::open(&url, 1, Duration::from_secs(10)).expect("open");
    db.migrate().expect("migrate");
    let mut c = db.write_conn().expect("connection");
    use heft::db::outbox;
    assert_eq!(outbox::lag(&mut c).expect("lag"), 0.0);
    let later = heft::db::now() + chrono::Duration::seconds(60);
    Effect::default().enqueue_at(&mut c, Some(later)).expect("enqueue");
    assert_eq!(outbox::lag(&mut c).expect("lag"), 0.0, "not due yet");
    let id = Effect::default().enqueue(&mut c).expect("enqueue");
    // A lower bound only: the sleep makes the wait at least this long.
    std::thread::sleep(Duration::from_millis(1100));
    let lag = outbox::lag(&mut c).expect("lag");
    assert!((1.0..30.0).contains(&lag), "lag {lag}");
    let row = outbox::find(&mut c, &id).expect("find").expect("row");
    outbox::mark_done(&mut c, &[row.id]).expect("done");
    assert_eq!(outbox::lag(&mut c).expect("lag"), 0.0, "delivered");
}
