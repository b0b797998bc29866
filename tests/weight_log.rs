//! The weight log: batch inserts and queries (`db::weight_log`) and the batching writer
//! (`actors::weight_log`), each test run against SQLite (a temp file) and PostgreSQL (a fresh
//! database at 127.0.0.1:5432, user `postgres`). When PostgreSQL is unreachable its half is
//! skipped with a loud line on stderr, except under `CI=true`, where it fails.

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use diesel::connection::InstrumentationEvent;
use diesel::prelude::*;
use heft::actors::weight_log::{WeightLog, WeightLogError};
use heft::config::WeightLogConfig;
use heft::db::weight_log::{self as wl, NewWeightRow, WeightLogRow};
use heft::db::{AnyConnection, Db, DbError};
use heft::domain::weight::ReadingKind;
use heft::metrics::Metrics;

const PG_HOST: &str = "127.0.0.1:5432";
const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres?connect_timeout=5";
/// Generous bound for "eventually": conditions are polled, so a slow machine only takes longer.
const EVENTUALLY: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A migrated database of its own; dropping it removes the PostgreSQL database.
struct TestDb {
    db: Db,
    _dir: tempfile::TempDir,
    pg_db: Option<String>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = &self.pg_db else { return };
        if let Ok(mut c) = PgConnection::establish(PG_ADMIN_URL) {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c);
        }
    }
}

fn pg_reachable() -> bool {
    static PROBE: OnceLock<bool> = OnceLock::new();
    *PROBE.get_or_init(|| {
        PG_HOST.parse::<SocketAddr>().is_ok_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
    })
}

/// `None` means skipped (PostgreSQL unreachable, outside CI).
fn test_db(backend: Backend) -> Option<TestDb> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, pg_db) = match backend {
        Backend::Sqlite => (format!("sqlite://{}", dir.path().join("heft.db").display()), None),
        Backend::Postgres => {
            if !pg_reachable() {
                let msg = format!("weight log PostgreSQL test needs PostgreSQL at {PG_HOST}");
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("{msg}: unreachable, and CI=true makes that a failure");
                }
                // libtest captures eprintln! of passing tests; the skip must be seen.
                let _ = writeln!(std::io::stderr(), "SKIPPED: {msg}: unreachable");
                return None;
            }
            let name = format!("heft_wl_{:016x}", rand::random::<u64>());
            let mut admin = PgConnection::establish(PG_ADMIN_URL).expect("connect to PostgreSQL as postgres");
            diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut admin).expect("create test database");
            (format!("postgres://postgres@{PG_HOST}/{name}"), Some(name))
        }
    };
    let t = TestDb { db: Db::open(&url, 4, Duration::from_secs(10)).expect("open database"), _dir: dir, pg_db };
    t.db.migrate().expect("migrate");
    Some(t)
}

/// Run an async test body against each backend.
macro_rules! both_backends {
    ($name:ident, $body:path) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(t) = test_db(Backend::Sqlite) {
                    $body(t).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(t) = test_db(Backend::Postgres) {
                    $body(t).await;
                }
            }
        }
    };
}

fn at(ms: i64) -> NaiveDateTime {
    chrono::DateTime::from_timestamp_millis(1_764_000_000_000 + ms).expect("time").naive_utc()
}

/// Reading `i` of a cabinet; `i` also makes the counts unique, so order can be checked.
fn row(sn: &str, session_id: Option<i64>, kind: ReadingKind, i: i64) -> NewWeightRow {
    NewWeightRow {
        sn: sn.to_string(),
        session_id,
        kind,
        recorded_at: at(i * 300),
        device_ts: (i % 3 != 0).then_some(1_764_000_000_000 + i),
        counts: format!("[{},8388608,-12]", 8_000_000 + i),
        grams: (i % 2 == 0).then(|| format!(r#"{{"A1":{}.5,"A2":0.0}}"#, i)),
    }
}

fn same(stored: &WeightLogRow, new: &NewWeightRow) -> bool {
    stored.sn == new.sn
        && stored.session_id == new.session_id
        && stored.kind == new.kind
        && stored.recorded_at == new.recorded_at
        && stored.device_ts == new.device_ts
        && stored.counts == new.counts
        && stored.grams == new.grams
}

async fn count(db: &Db) -> i64 {
    use heft::db::schema::weight_log::dsl::weight_log;
    db.run(|c| weight_log.count().get_result::<i64>(c).map_err(DbError::from)).await.expect("count")
}

async fn session_rows(db: &Db, id: i64) -> Vec<WeightLogRow> {
    db.run(move |c| wl::for_session(c, id)).await.expect("for_session")
}

/// Make every insert into weight_log fail (the table is renamed away), or undo it.
async fn break_table(db: &Db, broken: bool) {
    let sql = if broken {
        "ALTER TABLE weight_log RENAME TO weight_log_away"
    } else {
        "ALTER TABLE weight_log_away RENAME TO weight_log"
    };
    db.write(move |c| diesel::sql_query(sql).execute(c).map_err(DbError::from)).await.expect("rename weight_log");
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < EVENTUALLY, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn cfg(batch_rows: usize, flush_ms: u64, queue_rows: usize, retry_ms: u64) -> WeightLogConfig {
    WeightLogConfig { batch_rows, flush_ms, queue_rows, retry_ms }
}

// ---------------------------------------------------------------------------------------------
// db::weight_log
// ---------------------------------------------------------------------------------------------

async fn insert_and_query(t: TestDb) {
    let mut rows = Vec::new();
    for i in 0..2500 {
        let (sn, session, kind) = match i % 5 {
            0 => ("CAB-00001", None, ReadingKind::Closed),
            1 | 2 => ("CAB-00002", Some(7), ReadingKind::Open),
            3 => ("CAB-00002", Some(7), ReadingKind::AfterClose),
            _ => ("CAB-00003", Some(8), ReadingKind::Snapshot),
        };
        rows.push(row(sn, session, kind, i));
    }
    let batch = rows.clone();
    let n = t.db.write(move |c| wl::insert_batch(c, &batch)).await.expect("insert");
    assert_eq!(n, 2500);
    assert_eq!(t.db.write(|c| wl::insert_batch(c, &[])).await.expect("empty insert"), 0);
    assert_eq!(count(&t.db).await, 2500);

    let seven = session_rows(&t.db, 7).await;
    let expected: Vec<&NewWeightRow> = rows.iter().filter(|r| r.session_id == Some(7)).collect();
    assert_eq!(seven.len(), expected.len());
    assert!(seven.windows(2).all(|w| w[0].id < w[1].id), "in id order");
    for (s, e) in seven.iter().zip(&expected) {
        assert!(same(s, e), "stored {s:?}, recorded {e:?}");
    }
    assert!(session_rows(&t.db, 9).await.is_empty());

    let recent = t.db.run(|c| wl::recent(c, "CAB-00001", 3)).await.expect("recent");
    let newest: Vec<&NewWeightRow> = rows.iter().rev().filter(|r| r.sn == "CAB-00001").take(3).collect();
    assert_eq!(recent.len(), 3);
    for (s, e) in recent.iter().zip(&newest) {
        assert!(same(s, e), "stored {s:?}, recorded {e:?}");
    }
    assert!(recent[0].session_id.is_none(), "NULL session stays NULL");
}
both_backends!(insert_and_query_rows, insert_and_query);

/// Counts the INSERT statements a connection runs.
fn count_inserts(conn: &mut AnyConnection, inserts: Arc<AtomicUsize>) {
    let probe = move |event: InstrumentationEvent<'_>| {
        if let InstrumentationEvent::StartQuery { query, .. } = event
            && query.to_string().trim_start().to_ascii_uppercase().starts_with("INSERT")
        {
            inserts.fetch_add(1, Ordering::Relaxed);
        }
    };
    heft::on_backend!(conn, |c| { c.set_instrumentation(probe) });
}

async fn one_statement_per_thousand(t: TestDb) {
    let inserts = Arc::new(AtomicUsize::new(0));
    let rows: Vec<NewWeightRow> = (0..2500).map(|i| row("CAB-00001", Some(1), ReadingKind::Open, i)).collect();
    let probe = inserts.clone();
    let mut conn = t.db.write_conn().expect("connection");
    count_inserts(&mut conn, probe);
    let n = wl::insert_batch(&mut conn, &rows).expect("insert");
    assert_eq!(n, 2500);
    // 1,000 + 1,000 + 500: multi-row statements, not one per row, on both backends.
    assert_eq!(inserts.load(Ordering::Relaxed), 3);
    // Instrumentation stays with the pooled connection; this one is not reused.
    drop(conn);
}
both_backends!(insert_batch_is_one_statement_per_thousand_rows, one_statement_per_thousand);

// ---------------------------------------------------------------------------------------------
// actors::weight_log
// ---------------------------------------------------------------------------------------------

async fn flush_writes_everything(t: TestDb) {
    let metrics = Metrics::new().expect("metrics");
    // Only size and flush() trigger writes here: the timer is far away.
    let log = WeightLog::start(t.db.clone(), cfg(100, 600_000, 10_000, 50), &metrics);
    let mut recorded = Vec::new();
    for i in 0..1050 {
        let (session, kind) = match i % 4 {
            0 => (None, ReadingKind::Closed),
            1 => (Some(11), ReadingKind::Open),
            2 => (Some(12), ReadingKind::Open),
            _ => (Some(11), ReadingKind::AfterClose),
        };
        let r = row("CAB-00042", session, kind, i);
        recorded.push(r.clone());
        log.record(r);
    }
    log.flush().await.expect("flush");
    assert_eq!(count(&t.db).await, 1050);
    for id in [11, 12] {
        let stored = session_rows(&t.db, id).await;
        let expected: Vec<&NewWeightRow> = recorded.iter().filter(|r| r.session_id == Some(id)).collect();
        assert_eq!(stored.len(), expected.len(), "session {id}");
        for (s, e) in stored.iter().zip(&expected) {
            assert!(same(s, e), "session {id}: stored {s:?}, recorded {e:?}");
        }
    }
    assert_eq!(metrics.weight_log_rows.get(), 1050);
    assert!(metrics.weight_log_batches.get() >= 11, "batches of at most 100 rows");
    assert_eq!(metrics.weight_log_batch_rows.get_sample_count(), metrics.weight_log_batches.get());
    assert_eq!(metrics.weight_log_queue_rows.get(), 0);
    assert_eq!(log.queued(), 0);
    assert_eq!(metrics.weight_log_dropped.get(), 0);

    // A flush with nothing pending answers at once; stop writes what is left.
    log.flush().await.expect("empty flush");
    log.record(row("CAB-00042", Some(13), ReadingKind::Open, 2000));
    log.stop().await;
    assert_eq!(count(&t.db).await, 1051);
    log.record(row("CAB-00042", Some(13), ReadingKind::Open, 2001));
    assert_eq!(metrics.weight_log_dropped.get(), 1, "a row after stop is dropped and counted");
    assert!(matches!(log.flush().await, Err(WeightLogError::Stopped)));
    assert_eq!(log.queued(), 0);
}
both_backends!(flush_writes_everything_with_sessions, flush_writes_everything);

async fn timer_writes(t: TestDb) {
    let metrics = Metrics::new().expect("metrics");
    let flush_ms = 300;
    let log = WeightLog::start(t.db.clone(), cfg(1000, flush_ms, 10_000, 50), &metrics);
    let recorded_at = Instant::now();
    for i in 0..5 {
        log.record(row("CAB-00007", Some(3), ReadingKind::Open, i));
    }
    let start = Instant::now();
    loop {
        let n = count(&t.db).await;
        // A count that returned before flush_ms was up must not see the batch yet.
        if recorded_at.elapsed() < Duration::from_millis(flush_ms) {
            assert_eq!(n, 0, "written before flush_ms");
        }
        if n == 5 {
            break;
        }
        assert_eq!(n, 0, "one batch, not a part of it");
        assert!(start.elapsed() < EVENTUALLY, "batch not written after flush_ms");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The writer counts a batch just after its commit, so the rows can be seen a moment before
    // the count; stopping waits for the writer to finish with it.
    log.stop().await;
    assert_eq!(metrics.weight_log_batches.get(), 1);
}
both_backends!(batch_written_after_flush_ms, timer_writes);

async fn size_writes(t: TestDb) {
    let metrics = Metrics::new().expect("metrics");
    let log = WeightLog::start(t.db.clone(), cfg(100, 600_000, 10_000, 50), &metrics);
    for i in 0..250 {
        log.record(row("CAB-00008", None, ReadingKind::Closed, i));
    }
    let db = t.db.clone();
    eventually("two full batches written", async || count(&db).await == 200).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(count(&t.db).await, 200, "the last 50 wait for the timer or a flush");
    assert_eq!(log.queued(), 50);
    log.flush().await.expect("flush");
    assert_eq!(count(&t.db).await, 250);
    log.stop().await;
}
both_backends!(batch_written_at_batch_rows, size_writes);

async fn overflow(t: TestDb) {
    let metrics = Metrics::new().expect("metrics");
    let log = WeightLog::start(t.db.clone(), cfg(5, 20, 10, 20), &metrics);
    // Nothing can be written, so exactly queue_rows rows are held and the rest dropped.
    break_table(&t.db, true).await;
    for i in 0..100 {
        log.record(row("CAB-00009", Some(1), ReadingKind::Open, i));
    }
    assert_eq!(metrics.weight_log_dropped.get(), 90);
    assert_eq!(log.queued(), 10);
    assert_eq!(log.peak_queued(), 10);
    assert_eq!(metrics.weight_log_queue_rows.get(), 10);
    let m = metrics.clone();
    eventually("a failed write", async || m.weight_log_write_errors.get() >= 1).await;
    break_table(&t.db, false).await;
    log.flush().await.expect("flush");
    // The first ten recorded are the ones kept.
    let stored = session_rows(&t.db, 1).await;
    let kept: Vec<String> = stored.iter().map(|r| r.counts.clone()).collect();
    let first: Vec<String> = (0..10).map(|i| row("CAB-00009", Some(1), ReadingKind::Open, i).counts).collect();
    assert_eq!(kept, first);
    assert_eq!(metrics.weight_log_dropped.get(), 90);
    assert_eq!(metrics.weight_log_queue_rows.get(), 0);
    log.stop().await;
}
both_backends!(queue_overflow_drops_and_counts, overflow);

async fn retry(t: TestDb) {
    let metrics = Metrics::new().expect("metrics");
    let log = WeightLog::start(t.db.clone(), cfg(50, 50, 10_000, 50), &metrics);
    let mut recorded = Vec::new();
    for i in 0..20 {
        recorded.push(row("CAB-00010", Some(5), ReadingKind::Open, i));
        log.record(recorded[recorded.len() - 1].clone());
    }
    log.flush().await.expect("flush");
    assert_eq!(count(&t.db).await, 20);

    break_table(&t.db, true).await;
    for i in 20..140 {
        recorded.push(row("CAB-00010", Some(5), ReadingKind::AfterClose, i));
        log.record(recorded[recorded.len() - 1].clone());
    }
    // 50, 100, 200 ms pauses: three failures, the writer still holding every row.
    let m = metrics.clone();
    eventually("three failed writes", async || m.weight_log_write_errors.get() >= 3).await;
    assert_eq!(log.queued(), 120);
    break_table(&t.db, false).await;
    log.flush().await.expect("flush after the database came back");

    let stored = session_rows(&t.db, 5).await;
    assert_eq!(stored.len(), 140, "nothing lost");
    for (s, e) in stored.iter().zip(&recorded) {
        assert!(same(s, e), "stored {s:?}, recorded {e:?}");
    }
    assert_eq!(metrics.weight_log_dropped.get(), 0);
    assert_eq!(metrics.weight_log_rows.get(), 140);
    assert_eq!(log.queued(), 0);
    log.stop().await;
}
both_backends!(write_error_retries_and_loses_nothing, retry);
