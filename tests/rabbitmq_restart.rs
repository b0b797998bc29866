//! RabbitMQ restarted while messages are being written: every message is still applied exactly
//! once. Production profile only, and its own test binary, so no other test sees the broker go.

mod common;
#[path = "messages/probe.rs"]
mod probe;

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Profile, RABBIT_HOST, TestServer};
use probe::Probe;

/// Restarting the broker and the clients reconnecting take seconds; allow far more.
const DEADLINE: Duration = Duration::from_secs(90);

fn rabbitmqctl(args: &[&str]) -> bool {
    std::process::Command::new("rabbitmqctl").args(args).output().is_ok_and(|o| o.status.success())
}

fn answers() -> bool {
    RABBIT_HOST.parse::<SocketAddr>().is_ok_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_ok())
}

#[actix_rt::test]
async fn messages_survive_a_rabbitmq_restart() {
    if !rabbitmqctl(&["status"]) {
        let msg = "the RabbitMQ restart test needs rabbitmqctl (and the right to run it)";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{msg}: missing, and CI=true makes that a failure");
        }
        let _ = writeln!(std::io::stderr(), "SKIPPED: {msg}");
        return;
    }
    let probe = Probe::new(false);
    let Some(storage) = common::storage(Profile::Production) else { return };
    let config = common::config(&storage, common::free_port(), &[("HEFT__MESSAGES__RETRY_BASE_MS", "200")]);
    let s = TestServer::start_with_handlers(storage, config, probe.handler()).await;
    probe.attach(&s.heft.services.db).await;
    let db = s.heft.services.db.clone();

    // Steady writing, one message per transaction, while the broker goes away and comes back.
    const TOTAL: usize = 150;
    let mut ids = Vec::new();
    let mut restarted = false;
    for n in 0..TOTAL {
        ids.extend(probe::send(&s.heft, n, 1, true).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
        if n == TOTAL / 3 {
            let stopped = tokio::task::spawn_blocking(|| rabbitmqctl(&["stop_app"])).await.unwrap_or(false);
            assert!(stopped, "rabbitmqctl stop_app");
            restarted = true;
        }
        if n == TOTAL / 2 {
            let started = tokio::task::spawn_blocking(|| rabbitmqctl(&["start_app"])).await.unwrap_or(false);
            assert!(started, "rabbitmqctl start_app");
            let since = Instant::now();
            while !answers() {
                assert!(since.elapsed() < DEADLINE, "RabbitMQ did not answer again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(restarted);

    let since = Instant::now();
    loop {
        let (pending, done, dead) = probe::outbox_counts(&db).await;
        let applied = probe::effects(&db).await.len();
        if pending == 0 && applied >= TOTAL {
            assert_eq!((done, dead), (TOTAL, 0));
            break;
        }
        assert!(
            since.elapsed() < DEADLINE,
            "after the restart: {applied}/{TOTAL} applied, {pending} pending, {done} done, {dead} dead"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(ids.len(), TOTAL);
    assert_eq!(probe::effects(&db).await, expected, "every message written took effect exactly once");
    s.stop().await;
}
