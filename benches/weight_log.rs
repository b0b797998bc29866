//! Weight log benchmark: the real `WeightLog` writer (`actors::weight_log`, the shipped
//! `[weight_log]` config) against a real database, SQLite (a file) and/or PostgreSQL (a fresh
//! database on the local server), under two loads:
//!
//! - **normal**: 10,000 cabinets at the closed-door cadence (a reading per cabinet every 90 s,
//!   111 rows/s) plus 1,000 doors open at the 300 ms cadence (3,333 rows/s): ≈ 3,444 rows/s;
//! - **max**: rows recorded as fast as the writer takes them (the generator keeps two batches
//!   waiting and records more as soon as the queue shrinks), to find the ceiling.
//!
//! ```sh
//! cargo bench --bench weight_log -- --db both --seconds 60      # what BENCHMARKS.md reports
//! cargo bench --bench weight_log -- --db sqlite --seconds 20 --max-seconds 5
//! ```
//!
//! Rows look like the real ones: sn `CAB-01234`, 16 channels of raw counts, 16 lanes of grams,
//! `device_ts`; open-door rows carry their session's id (each door's session lasts 30 s: 22 s
//! `open`, then 8 s `after_close`). CPU is measured as:
//! - PostgreSQL server: utime + stime of every process whose comm starts with `postgres`, from
//!   `/proc/<pid>/stat`, after − before, over wall time;
//! - writer (this process): getrusage(RUSAGE_SELF) after − before, minus the same generator run
//!   alone (rows built and discarded) for the same time (normal) or the same number of rows (max).
//!   For SQLite this is the database's CPU too: SQLite runs inside the writer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::{Connection, PgConnection, RunQueryDsl};
use heft::actors::weight_log::{BATCH_TRACE_TARGET, WeightLog};
use heft::config::WeightLogConfig;
use heft::db::Db;
use heft::db::weight_log::NewWeightRow;
use heft::domain::weight::ReadingKind;
use heft::metrics::Metrics;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, filter};

#[derive(Debug, Clone)]
struct Args {
    db: String,
    seconds: u64,
    max_seconds: u64,
    warmup_s: u64,
    cabinets: usize,
    open_doors: usize,
    pg: String,
}

fn parse_args() -> Args {
    let mut a = Args {
        db: "both".into(),
        seconds: 60,
        max_seconds: 10,
        warmup_s: 5,
        cabinets: 10_000,
        open_doors: 1_000,
        pg: "postgres://postgres@127.0.0.1:5432".into(),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--db" => a.db = value,
            "--seconds" => a.seconds = value.parse().expect("--seconds N"),
            "--max-seconds" => a.max_seconds = value.parse().expect("--max-seconds N"),
            "--warmup-s" => a.warmup_s = value.parse().expect("--warmup-s N"),
            "--cabinets" => a.cabinets = value.parse().expect("--cabinets N"),
            "--open-doors" => a.open_doors = value.parse().expect("--open-doors N"),
            "--pg" => a.pg = value,
            // `cargo bench` passes --bench; ignore what we do not know.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    assert!(matches!(a.db.as_str(), "sqlite" | "postgres" | "both"), "--db sqlite|postgres|both");
    assert!(a.seconds > a.warmup_s, "--seconds must exceed --warmup-s ({})", a.warmup_s);
    assert!(a.open_doors <= a.cabinets, "--open-doors at most --cabinets");
    a
}

fn main() {
    let args = parse_args();
    let batches = Arc::new(Mutex::new(Vec::new()));
    tracing_subscriber::registry()
        .with(
            BatchCollector(batches.clone())
                .with_filter(filter::Targets::new().with_target(BATCH_TRACE_TARGET, tracing::Level::DEBUG)),
        )
        .with(tracing_subscriber::fmt::layer().with_filter(filter::LevelFilter::WARN))
        .init();
    // Two workers, as the server runs on this 2-core box; SQLite/libpq work runs on the blocking
    // pool, as in the server.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(orchestrate(args, batches));
}

// ---------------------------------------------------------------------------------------------
// Per-batch figures, from the writer's debug event (exact, unlike the histogram's buckets)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Batch {
    rows: u64,
    write_us: u64,
    /// When the writer reported it (just after commit).
    at: Instant,
}

type Batches = Arc<Mutex<Vec<Batch>>>;

struct BatchCollector(Batches);

impl<S: tracing::Subscriber> Layer<S> for BatchCollector {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut b = Batch { rows: 0, write_us: 0, at: Instant::now() };
        event.record(&mut b);
        self.0.lock().expect("batches").push(b);
    }
}

impl tracing::field::Visit for Batch {
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        match field.name() {
            "rows" => self.rows = value,
            "write_us" => self.write_us = value,
            _ => {}
        }
    }

    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

// ---------------------------------------------------------------------------------------------
// Row generator
// ---------------------------------------------------------------------------------------------

const CHANNELS: usize = 16;
const VARIANTS: usize = 4096;

/// Prebuilt parts of rows, so the generator costs little next to the writer (and is measured
/// alone and subtracted anyway).
struct Generator {
    sns: Vec<String>,
    counts: Vec<String>,
    grams: Vec<String>,
    cabinets: usize,
    open_doors: usize,
    closed_sent: u64,
    open_sent: u64,
}

impl Generator {
    fn new(cabinets: usize, open_doors: usize) -> Generator {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        let lanes: Vec<String> =
            (0..CHANNELS).map(|i| format!("{}{}", (b'A' + (i / 4) as u8) as char, i % 4 + 1)).collect();
        let counts = (0..VARIANTS)
            .map(|_| {
                // 24-bit ADC counts: zero offset near 8,388,608 plus the load.
                let c: Vec<String> =
                    (0..CHANNELS).map(|_| (8_388_608 + rng.gen_range(-50_000i64..400_000)).to_string()).collect();
                format!("[{}]", c.join(","))
            })
            .collect();
        let grams = (0..VARIANTS)
            .map(|_| {
                let g: Vec<String> = lanes
                    .iter()
                    .map(|l| format!("\"{l}\":{:.1}", f64::from(rng.gen_range(0u32..40_000)) / 10.0))
                    .collect();
                format!("{{{}}}", g.join(","))
            })
            .collect();
        Generator {
            sns: (0..cabinets).map(|i| format!("CAB-{i:05}")).collect(),
            counts,
            grams,
            cabinets,
            open_doors,
            closed_sent: 0,
            open_sent: 0,
        }
    }

    fn build(&self, k: u64, cabinet: usize, session: Option<(i64, ReadingKind)>) -> NewWeightRow {
        let v = (k as usize).wrapping_mul(2_654_435_761) % VARIANTS;
        let now = chrono::Utc::now();
        NewWeightRow {
            sn: self.sns[cabinet].clone(),
            session_id: session.map(|s| s.0),
            kind: session.map_or(ReadingKind::Closed, |s| s.1),
            recorded_at: now.naive_utc(),
            device_ts: Some(now.timestamp_millis() - 40),
            counts: self.counts[v].clone(),
            grams: Some(self.grams[v].clone()),
        }
    }

    /// Rows due by `elapsed` at the normal cadence, each handed to `sink`; returns how many.
    fn due(&mut self, elapsed: Duration, sink: &mut impl FnMut(NewWeightRow)) -> u64 {
        let ms = elapsed.as_millis() as u64;
        let closed_due = ms * self.cabinets as u64 / 90_000;
        let open_due = ms * self.open_doors as u64 / 300;
        let before = self.closed_sent + self.open_sent;
        while self.closed_sent < closed_due {
            let k = self.closed_sent;
            let row = self.build(k, (k % self.cabinets as u64) as usize, None);
            sink(row);
            self.closed_sent += 1;
        }
        while self.open_sent < open_due {
            let k = self.open_sent;
            let door = (k % self.open_doors as u64) as usize;
            let row = self.build(k, door, Some(self.session_of(door, ms)));
            sink(row);
            self.open_sent += 1;
        }
        self.closed_sent + self.open_sent - before
    }

    /// Each door's sessions last 30 s: 22 s open, then 8 s of after-close readings.
    fn session_of(&self, door: usize, ms: u64) -> (i64, ReadingKind) {
        let cycle = ms / 30_000;
        let id = 1 + (cycle * self.open_doors as u64 + door as u64) as i64;
        (id, if ms % 30_000 < 22_000 { ReadingKind::Open } else { ReadingKind::AfterClose })
    }

    /// One open-door row, for the max load.
    fn next_open(&mut self) -> NewWeightRow {
        let k = self.open_sent;
        self.open_sent += 1;
        let door = (k % self.open_doors as u64) as usize;
        self.build(k, door, Some((1 + k as i64, ReadingKind::Open)))
    }
}

// ---------------------------------------------------------------------------------------------
// CPU
// ---------------------------------------------------------------------------------------------

fn process_cpu_s() -> f64 {
    // SAFETY: getrusage with a valid pointer to a zeroed local struct.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// utime + stime (clock ticks) of every process whose comm starts with "postgres", by pid.
fn postgres_ticks() -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        if !stat[open + 1..close].starts_with("postgres") {
            continue;
        }
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // After the comm: state is field 3 of stat(5), so utime (14) and stime (15) are 11 and 12.
        out.insert(pid, field(11) + field(12));
    }
    out
}

/// CPU seconds the postgres processes used between two samples (processes that started in
/// between count from zero; any that ended in between are missed, and none do: the pool keeps
/// its connections).
fn postgres_cpu_s(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let ticks: u64 = after.iter().map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0))).sum();
    ticks as f64 / hz
}

// ---------------------------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Load {
    Normal,
    Max,
}

#[derive(Debug)]
struct RunResult {
    backend: Backend,
    load: Load,
    offered_per_s: f64,
    written_per_s: f64,
    rows_written: u64,
    batch_mean: f64,
    batch_p50: u64,
    batch_max: u64,
    write_p50_ms: f64,
    write_p99_ms: f64,
    peak_queue: usize,
    dropped: u64,
    all_written: bool,
    db_cpu_pct: Option<f64>,
    writer_cpu_pct: f64,
}

/// Generator CPU when it runs alone: per second at the normal cadence, and per row at max speed.
struct Baseline {
    normal_cpu_per_s: f64,
    max_cpu_per_row: f64,
}

async fn orchestrate(args: Args, batches: Batches) {
    let cfg = shipped_weight_log_config();
    eprintln!("weight_log config: {cfg:?}");
    let baseline = baseline(&args).await;
    eprintln!(
        "generator alone: {:.1}% of a core at the normal cadence, {:.2} µs per row at max",
        baseline.normal_cpu_per_s * 100.0,
        baseline.max_cpu_per_row * 1e6
    );
    let backends = match args.db.as_str() {
        "sqlite" => vec![Backend::Sqlite],
        "postgres" => vec![Backend::Postgres],
        _ => vec![Backend::Sqlite, Backend::Postgres],
    };
    let mut results = Vec::new();
    for backend in backends {
        let target = BenchDb::create(backend, &args.pg);
        for load in [Load::Normal, Load::Max] {
            let r = run(&args, &cfg, &target, load, &baseline, &batches).await;
            eprintln!("{r:?}");
            results.push(r);
        }
    }
    println!();
    println!(
        "| backend | load | offered rows/s | written rows/s | rows written | batch rows mean / p50 / max | write ms p50 / p99 | peak queue | dropped | all written | DB CPU (% of a core) | writer CPU (% of a core) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &results {
        println!(
            "| {:?} | {:?} | {:.0} | {:.0} | {} | {:.0} / {} / {} | {:.1} / {:.1} | {} | {} | {} | {} | {:.1} |",
            r.backend,
            r.load,
            r.offered_per_s,
            r.written_per_s,
            r.rows_written,
            r.batch_mean,
            r.batch_p50,
            r.batch_max,
            r.write_p50_ms,
            r.write_p99_ms,
            r.peak_queue,
            r.dropped,
            if r.all_written { "yes" } else { "NO" },
            r.db_cpu_pct.map_or("(in writer)".to_string(), |c| format!("{c:.1}")),
            r.writer_cpu_pct
        );
    }
}

/// `[weight_log]` as shipped, with any `HEFT__WEIGHT_LOG__*` overrides from the environment.
fn shipped_weight_log_config() -> WeightLogConfig {
    heft::config::Config::from_toml_and_env(
        include_str!("../config.toml"),
        std::path::Path::new("config.toml"),
        std::env::vars(),
    )
    .expect("config")
    .weight_log
}

async fn baseline(args: &Args) -> Baseline {
    eprintln!("== generator alone, {} s normal + {} s max", args.seconds, args.max_seconds);
    let mut generator = Generator::new(args.cabinets, args.open_doors);
    let mut discard = |row: NewWeightRow| drop(std::hint::black_box(row));
    let cpu0 = process_cpu_s();
    let t0 = Instant::now();
    drive_normal(&mut generator, Duration::from_secs(args.seconds), &mut discard).await;
    let normal_cpu_per_s = (process_cpu_s() - cpu0) / t0.elapsed().as_secs_f64();

    let cpu0 = process_cpu_s();
    let t0 = Instant::now();
    let mut rows = 0u64;
    while t0.elapsed() < Duration::from_secs(args.max_seconds) {
        for _ in 0..1000 {
            std::hint::black_box(generator.next_open());
        }
        rows += 1000;
        tokio::task::yield_now().await;
    }
    Baseline { normal_cpu_per_s, max_cpu_per_row: (process_cpu_s() - cpu0) / rows as f64 }
}

/// Record the normal cadence for `length`, every 10 ms what has come due.
async fn drive_normal(generator: &mut Generator, length: Duration, sink: &mut impl FnMut(NewWeightRow)) -> u64 {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = 0;
    loop {
        tick.tick().await;
        let elapsed = start.elapsed().min(length);
        sent += generator.due(elapsed, sink);
        if elapsed >= length {
            return sent;
        }
    }
}

/// The database under test; dropping it removes the PostgreSQL database (and the SQLite file).
struct BenchDb {
    backend: Backend,
    db: Db,
    _dir: tempfile::TempDir,
    pg: Option<(String, String)>,
}

impl BenchDb {
    fn create(backend: Backend, pg_base: &str) -> BenchDb {
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, pg) = match backend {
            Backend::Sqlite => (format!("sqlite://{}", dir.path().join("heft.db").display()), None),
            Backend::Postgres => {
                let name = format!("heft_bench_{:016x}", rand::random::<u64>());
                let admin_url = format!("{pg_base}/postgres");
                let mut admin = PgConnection::establish(&admin_url).expect("connect to PostgreSQL");
                diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut admin).expect("create database");
                (format!("{pg_base}/{name}"), Some((admin_url, name)))
            }
        };
        // The shipped pool size.
        let db = Db::open(&url, 8, Duration::from_secs(10)).expect("open database");
        db.migrate().expect("migrate");
        BenchDb { backend, db, _dir: dir, pg }
    }
}

impl Drop for BenchDb {
    fn drop(&mut self) {
        let Some((admin_url, name)) = &self.pg else { return };
        if let Ok(mut c) = PgConnection::establish(admin_url) {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c);
        }
    }
}

async fn table_rows(db: &Db) -> i64 {
    use diesel::QueryDsl;
    use heft::db::schema::weight_log::dsl::weight_log;
    db.run(|c| weight_log.count().get_result::<i64>(c).map_err(heft::db::DbError::from)).await.expect("count")
}

async fn run(
    args: &Args,
    cfg: &WeightLogConfig,
    target: &BenchDb,
    load: Load,
    baseline: &Baseline,
    batches: &Batches,
) -> RunResult {
    let backend = target.backend;
    let length = Duration::from_secs(match load {
        Load::Normal => args.seconds,
        Load::Max => args.max_seconds,
    });
    // The written rate is taken after a warm-up (the first batch is written only flush_ms in).
    let warmup = match load {
        Load::Normal => Duration::from_secs(args.warmup_s),
        Load::Max => Duration::from_secs(1),
    };
    eprintln!("== {backend:?}, {load:?} load, {} s", length.as_secs());
    let metrics = Metrics::new().expect("metrics");
    let rows_before = table_rows(&target.db).await;
    let log = WeightLog::start(target.db.clone(), cfg.clone(), &metrics);
    let mut generator = Generator::new(args.cabinets, args.open_doors);
    batches.lock().expect("batches").clear();

    let pg0 = postgres_ticks();
    let cpu0 = process_cpu_s();
    let t0 = Instant::now();
    let recorded = match load {
        Load::Normal => {
            let sink_log = log.clone();
            drive_normal(&mut generator, length, &mut |row| sink_log.record(row)).await
        }
        Load::Max => {
            // Keep two full batches waiting: the writer always finds a full batch, and the
            // queue never nears its bound (nothing is dropped; this measures the writer).
            let high = 2 * cfg.batch_rows;
            let mut sent = 0u64;
            while t0.elapsed() < length {
                let room = high.saturating_sub(log.queued()).min(1000);
                if room == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                for _ in 0..room {
                    log.record(generator.next_open());
                }
                sent += room as u64;
                tokio::task::yield_now().await;
            }
            sent
        }
    };
    let t_end = Instant::now();
    let cpu1 = process_cpu_s();
    let pg1 = postgres_ticks();
    let dropped_end = metrics.weight_log_dropped.get();
    let run_batches = std::mem::take(&mut *batches.lock().expect("batches"));
    log.flush().await.expect("flush");
    log.stop().await;
    let in_table = (table_rows(&target.db).await - rows_before) as u64;

    let secs = t_end.duration_since(t0).as_secs_f64();
    // Offered: exact by construction (the generator records what is due by the clock).
    let offered_per_s = recorded as f64 / secs;
    // Written: from commit to commit, so whole batches are counted over the time they took
    // (counting rows over a fixed window would be off by up to a batch at each end).
    let steady: Vec<&Batch> = run_batches.iter().filter(|b| b.at >= t0 + warmup).collect();
    let written_per_s = match (steady.first(), steady.last()) {
        (Some(first), Some(last)) if steady.len() >= 2 => {
            steady[1..].iter().map(|b| b.rows).sum::<u64>() as f64 / last.at.duration_since(first.at).as_secs_f64()
        }
        _ => f64::NAN,
    };
    let generator_cpu = match load {
        Load::Normal => baseline.normal_cpu_per_s * secs,
        Load::Max => baseline.max_cpu_per_row * recorded as f64,
    };
    let writer_cpu_pct = (cpu1 - cpu0 - generator_cpu) / secs * 100.0;
    let db_cpu_pct = match backend {
        Backend::Postgres => Some(postgres_cpu_s(&pg0, &pg1) / secs * 100.0),
        Backend::Sqlite => None,
    };

    // How the write time moves as the table grows: p50 per 30 s of the run.
    let by_half_minute: Vec<String> = run_batches
        .chunk_by(|x, y| x.at.duration_since(t0).as_secs() / 30 == y.at.duration_since(t0).as_secs() / 30)
        .map(|chunk| {
            let mut l: Vec<u64> = chunk.iter().map(|b| b.write_us).collect();
            l.sort_unstable();
            format!("{:.0}", l[l.len() / 2] as f64 / 1000.0)
        })
        .collect();
    eprintln!("   write ms p50 per 30 s: {}", by_half_minute.join(" "));
    let mut sizes: Vec<u64> = run_batches.iter().map(|b| b.rows).collect();
    sizes.sort_unstable();
    let mut lat: Vec<u64> = run_batches.iter().map(|b| b.write_us).collect();
    lat.sort_unstable();
    let pick = |v: &[u64], q: f64| v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1))).copied();
    RunResult {
        backend,
        load,
        offered_per_s,
        written_per_s,
        rows_written: in_table,
        batch_mean: sizes.iter().sum::<u64>() as f64 / sizes.len().max(1) as f64,
        batch_p50: pick(&sizes, 0.5).unwrap_or(0),
        batch_max: sizes.last().copied().unwrap_or(0),
        write_p50_ms: pick(&lat, 0.5).unwrap_or(0) as f64 / 1000.0,
        write_p99_ms: pick(&lat, 0.99).unwrap_or(0) as f64 / 1000.0,
        peak_queue: log.peak_queued(),
        dropped: dropped_end,
        all_written: in_table == recorded - dropped_end,
        db_cpu_pct,
        writer_cpu_pct,
    }
}
