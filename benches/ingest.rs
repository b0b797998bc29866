//! Ingest benchmark: many simulated cabinets, over real MQTT on loopback, against
//! (a) `heft serve` (the release binary, embedded profile, in its own process) and
//! (b) bare rumqttd with a local-link reader that only counts (the same router limits; no auth,
//!     no signature checks, no actors), also in its own process,
//! under two loads: the normal cadence, and every cabinet streaming as fast as `--max-every-ms`.
//!
//! ```sh
//! cargo bench --bench ingest                                  # 10,000 cabinets, both targets
//! cargo bench --bench ingest -- --cabinets 2000 --measure-s 20 --only heft --load normal
//! ```
//! Reported per run: cabinets held, frames/s ingested, p50/p99 publish→handled latency, server RSS
//! (before and after the fleet connected, and per cabinet), server CPU. Results go in BENCHMARKS.md.

mod common;

use common::{free_port, raise_fd_limit};

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use heft::device::frame::Cadence;
use heft::metrics::LATENCY_BUCKETS;
use heft::provision::Credentials;
use heft::sim::{self, Behaviour, SimStats};

#[derive(Debug, Clone)]
struct Args {
    cabinets: usize,
    open_doors: usize,
    max_every_ms: u64,
    warmup_s: u64,
    measure_s: u64,
    ramp_per_s: u64,
    only: Option<String>,
    load: Option<String>,
    role_bare: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        cabinets: 10_000,
        open_doors: 1_000,
        max_every_ms: 200,
        warmup_s: 10,
        measure_s: 30,
        ramp_per_s: 500,
        only: None,
        load: None,
        role_bare: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--cabinets" => a.cabinets = value.parse().expect("--cabinets N"),
            "--open-doors" => a.open_doors = value.parse().expect("--open-doors N"),
            "--max-every-ms" => a.max_every_ms = value.parse().expect("--max-every-ms N"),
            "--warmup-s" => a.warmup_s = value.parse().expect("--warmup-s N"),
            "--measure-s" => a.measure_s = value.parse().expect("--measure-s N"),
            "--ramp-per-s" => a.ramp_per_s = value.parse().expect("--ramp-per-s N"),
            "--only" => a.only = Some(value),
            "--load" => a.load = Some(value),
            "--role-bare" => a.role_bare = Some(value),
            // `cargo bench` passes --bench; ignore what we do not know.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

fn main() {
    let args = parse_args();
    raise_fd_limit();
    if let Some(listen) = &args.role_bare {
        bare::run(listen);
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(orchestrate(args));
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Heft,
    Bare,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Load {
    Normal,
    Max,
}

#[derive(Debug)]
struct RunResult {
    target: Target,
    load: Load,
    held: u64,
    offered_per_s: f64,
    ingested_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    rss_before_mib: f64,
    rss_after_mib: f64,
    cpu_cores: f64,
    /// Heft: weight log rows written per second, mean rows per batch, rows dropped (all run),
    /// rows still queued at the end of the measurement.
    weight_rows_per_s: f64,
    weight_batch_mean: f64,
    weight_dropped: u64,
    weight_queue_end: u64,
}

async fn orchestrate(args: Args) {
    let mut results = Vec::new();
    let targets: Vec<Target> = match args.only.as_deref() {
        Some("heft") => vec![Target::Heft],
        Some("bare") => vec![Target::Bare],
        _ => vec![Target::Bare, Target::Heft],
    };
    for target in targets {
        let loads = match args.load.as_deref() {
            Some("normal") => vec![Load::Normal],
            Some("max") => vec![Load::Max],
            _ => vec![Load::Normal, Load::Max],
        };
        for load in loads {
            let r = run(&args, target, load).await;
            println!("{r:?}");
            results.push(r);
        }
    }
    println!();
    println!(
        "| target | load | cabinets held | offered frames/s | ingested frames/s | p50 ms | p99 ms | server RSS before → after (MiB) | RSS per cabinet (KB) | server CPU (cores) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &results {
        let per_cab_kb = (r.rss_after_mib - r.rss_before_mib) * 1024.0 / r.held.max(1) as f64;
        println!(
            "| {:?} | {:?} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.0} → {:.0} | {:.1} | {:.2} |",
            r.target,
            r.load,
            r.held,
            r.offered_per_s,
            r.ingested_per_s,
            r.p50_ms,
            r.p99_ms,
            r.rss_before_mib,
            r.rss_after_mib,
            per_cab_kb,
            r.cpu_cores
        );
    }
    println!();
    println!("| Heft load | weight log rows/s written | rows per batch (mean) | dropped | queued at end |");
    println!("|---|---|---|---|---|");
    for r in results.iter().filter(|r| r.target == Target::Heft) {
        println!(
            "| {:?} | {:.0} | {:.0} | {} | {} |",
            r.load, r.weight_rows_per_s, r.weight_batch_mean, r.weight_dropped, r.weight_queue_end
        );
    }
    let find = |t, l| results.iter().find(|r| r.target == t && r.load == l);
    if let (Some(h), Some(b)) = (find(Target::Heft, Load::Max), find(Target::Bare, Load::Max)) {
        println!();
        println!("Heft / bare rumqttd, frames/s at max load: {:.2}", h.ingested_per_s / b.ingested_per_s.max(1.0));
    }
    if let (Some(h), Some(b)) = (find(Target::Heft, Load::Normal), find(Target::Bare, Load::Normal)) {
        let kb = |r: &RunResult| (r.rss_after_mib - r.rss_before_mib) * 1024.0 / r.held.max(1) as f64;
        println!(
            "Memory per connected cabinet: rumqttd {:.1} KB, Heft's own {:.1} KB (Heft total {:.1} KB)",
            kb(b),
            kb(h) - kb(b),
            kb(h)
        );
    }
}

/// The server under test, in its own process.
struct Server {
    child: Child,
    mqtt: String,
    http: Option<String>,
    /// Bare broker: its reader's counters, updated from its stdout.
    bare: Option<Arc<BareCounters>>,
    _dir: tempfile::TempDir,
}

#[derive(Default)]
struct BareCounters {
    received: AtomicU64,
    buckets: std::sync::Mutex<Vec<u64>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_heft(dir: tempfile::TempDir, cabinets: usize) -> (Server, Vec<Credentials>) {
    use base64::Engine;
    let seal = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let db_url = format!("sqlite://{}", dir.path().join("heft.db").display());
    let (mqtt_port, http_port) = (free_port(), free_port());
    let env = [
        ("HEFT__DATABASE__URL", db_url.clone()),
        ("HEFT__SECURITY__SEAL_KEY", seal.clone()),
        ("HEFT__MQTT__LISTEN", format!("127.0.0.1:{mqtt_port}")),
        ("HEFT__HTTP__LISTEN", format!("127.0.0.1:{http_port}")),
        ("HEFT__LOG__FILTER", "warn".to_string()),
    ];
    let config_path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml");
    let mut config = heft::config::Config::from_toml_and_env(
        &std::fs::read_to_string(config_path).expect("config.toml"),
        std::path::Path::new(config_path),
        env.iter().map(|(k, v)| (k.to_string(), v.clone())),
    )
    .expect("config");
    config.database.pool_size = 2;
    let db = heft::app::open_database(&config).await.expect("database");
    let seal_key = heft::secrets::SealKey::from_base64(&seal).expect("seal");
    let creds: Vec<Credentials> = db
        .write(move |c| {
            (0..cabinets)
                .map(|i| heft::provision::provision(c, &seal_key, &format!("BENCH-{i:05}"), "bench", false))
                .collect::<Result<Vec<_>, heft::provision::ProvisionError>>()
        })
        .await
        .expect("provision");
    drop(db);
    let child = Command::new(env!("CARGO_BIN_EXE_heft"))
        .args(["--config", config_path, "serve"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn heft serve");
    let http = format!("http://127.0.0.1:{http_port}");
    let server =
        Server { child, mqtt: format!("127.0.0.1:{mqtt_port}"), http: Some(http.clone()), bare: None, _dir: dir };
    wait_until("heft answers /healthz", Duration::from_secs(30), || async {
        reqwest::get(format!("{http}/healthz")).await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    (server, creds)
}

fn start_bare(dir: tempfile::TempDir, cabinets: usize) -> (Server, Vec<Credentials>) {
    let port = free_port();
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .args(["--role-bare", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn bare broker");
    let counters = Arc::new(BareCounters::default());
    let stdout = child.stdout.take().expect("stdout");
    let c = counters.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            c.received.store(v["received"].as_u64().unwrap_or(0), Ordering::Relaxed);
            if let Some(b) = v["buckets"].as_array() {
                *c.buckets.lock().expect("lock") = b.iter().map(|x| x.as_u64().unwrap_or(0)).collect();
            }
        }
    });
    // The bare broker has no auth and no database: any credentials do.
    let creds = (0..cabinets)
        .map(|i| Credentials {
            sn: format!("BENCH-{i:05}"),
            token: "x".into(),
            frame_key: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into(),
        })
        .collect();
    (Server { child, mqtt: format!("127.0.0.1:{port}"), http: None, bare: Some(counters), _dir: dir }, creds)
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Counters of the server at one moment.
#[derive(Debug, Clone, Default)]
struct Sample {
    frames: u64,
    buckets: Vec<u64>,
    cpu_ticks: u64,
    rss_kib: u64,
    held: u64,
    /// Heft only: the weight log writer's counters.
    weight: WeightLogSample,
}

#[derive(Debug, Default, Clone, Copy)]
struct WeightLogSample {
    rows: u64,
    batches: u64,
    dropped: u64,
    queue: u64,
}

async fn sample(s: &Server) -> Sample {
    let pid = s.child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let cpu_ticks = fields.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    if let Some(bare) = &s.bare {
        return Sample {
            frames: bare.received.load(Ordering::Relaxed),
            buckets: bare.buckets.lock().expect("lock").clone(),
            cpu_ticks,
            rss_kib,
            held: 0,
            weight: WeightLogSample::default(),
        };
    }
    let text = match &s.http {
        Some(http) => reqwest::get(format!("{http}/metrics")).await.expect("metrics").text().await.expect("text"),
        None => String::new(),
    };
    let mut frames = 0u64;
    let mut held = 0u64;
    let mut buckets = vec![0u64; LATENCY_BUCKETS.len()];
    let mut weight = WeightLogSample::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else { continue };
        let v: f64 = value.parse().unwrap_or(0.0);
        match key {
            "heft_weight_log_rows_total" => weight.rows = v as u64,
            "heft_weight_log_batches_total" => weight.batches = v as u64,
            "heft_weight_log_dropped_total" => weight.dropped = v as u64,
            "heft_weight_log_queue_rows" => weight.queue = v as u64,
            _ => {}
        }
        if key.starts_with("heft_frames_total{") {
            frames += v as u64;
        } else if key == "heft_cabinets_connected" {
            held = v as u64;
        } else if let Some(rest) = key.strip_prefix("heft_frame_latency_seconds_bucket{le=\"") {
            let le: f64 = rest.trim_end_matches("\"}").parse().unwrap_or(f64::INFINITY);
            if let Some(i) = LATENCY_BUCKETS.iter().position(|b| (*b - le).abs() < 1e-12) {
                buckets[i] = v as u64;
            }
        }
    }
    Sample { frames, buckets, cpu_ticks, rss_kib, held, weight }
}

/// Quantile from cumulative histogram deltas, interpolating linearly inside the bucket.
fn quantile(before: &[u64], after: &[u64], q: f64) -> f64 {
    let counts: Vec<u64> =
        after.iter().zip(before.iter().chain(std::iter::repeat(&0))).map(|(a, b)| a.saturating_sub(*b)).collect();
    let Some(&total) = counts.last() else { return f64::NAN };
    if total == 0 {
        return f64::NAN;
    }
    let rank = q * total as f64;
    let mut lower_bound = 0.0;
    let mut lower_count = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if c as f64 >= rank {
            let width = LATENCY_BUCKETS[i] - lower_bound;
            let inside = (rank - lower_count as f64) / (c - lower_count).max(1) as f64;
            return (lower_bound + width * inside) * 1000.0;
        }
        lower_bound = LATENCY_BUCKETS[i];
        lower_count = c;
    }
    f64::INFINITY
}

async fn run(args: &Args, target: Target, load: Load) -> RunResult {
    eprintln!("== {target:?}, {load:?} load, {} cabinets", args.cabinets);
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, creds) = match target {
        Target::Heft => start_heft(dir, args.cabinets).await,
        Target::Bare => start_bare(dir, args.cabinets),
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_fleet = sample(&server).await;
    let defaults = Cadence {
        heartbeat_s: 30,
        closed_weight_s: 90,
        open_weight_ms: 300,
        after_close_weight_ms: 300,
        after_close_s: 8,
    };
    // Max load: every door open; the fleet connects at the normal cadence and goes fast only
    // once all are connected (a connection storm under saturation measures something else).
    let (open_doors, fast_ms) = match load {
        Load::Normal => (args.open_doors, None),
        Load::Max => (args.cabinets, Some(args.max_every_ms)),
    };
    let offered_per_s = args.cabinets as f64 / 30.0
        + (args.cabinets - open_doors.min(args.cabinets)) as f64 / 90.0
        + open_doors as f64 * 1000.0 / fast_ms.unwrap_or(300) as f64;
    // While connecting, open doors stream at the closed-door period.
    let (set_rate, weight_every_ms) = tokio::sync::watch::channel(if fast_ms.is_some() { 90_000 } else { 0 });
    let stats = Arc::new(SimStats::default());
    let broker = server.mqtt.clone();
    let without_login = (target == Target::Bare).then_some(defaults);
    let rate = weight_every_ms.clone();
    let behaviour = move |i: usize| Behaviour {
        broker: broker.clone(),
        keep_alive: heft::sim::KEEP_ALIVE,
        drop_heartbeats: 0.0,
        bad_signatures: 0.0,
        disconnect_after: None,
        door_open: i < open_doors,
        lanes: 8,
        weight_every_ms: rate.clone(),
        without_login: without_login.clone(),
    };
    let tasks = sim::spawn_fleet(creds, behaviour, stats.clone(), args.ramp_per_s).await;
    let n = args.cabinets as u64;
    let ramp_start = Instant::now();
    let mut last_report = Instant::now();
    wait_until("fleet connected", Duration::from_secs(300), || {
        let stats = stats.clone();
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            let l = stats.line(ramp_start.elapsed(), 0.0);
            eprintln!(
                "   t={:.0}s connected={} logged_in={} connect_failures={} refused={}",
                l.elapsed_s, l.connected, l.logged_in, l.connect_failures, l.logins_refused
            );
        }
        async move { stats.connected.load(Ordering::Relaxed) >= n }
    })
    .await;
    eprintln!("   fleet connected in {:.1} s", ramp_start.elapsed().as_secs_f64());
    if target == Target::Heft {
        wait_until("fleet logged in", Duration::from_secs(120), || async { sample(&server).await.held >= n }).await;
    }
    if let Some(ms) = fast_ms {
        let _ = set_rate.send(ms);
    }
    tokio::time::sleep(Duration::from_secs(args.warmup_s)).await;
    let start = sample(&server).await;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.measure_s)).await;
    let end = sample(&server).await;
    let secs = t0.elapsed().as_secs_f64();
    let held = match target {
        Target::Heft => end.held,
        Target::Bare => stats.connected.load(Ordering::Relaxed),
    };
    let failures = stats.connect_failures.load(Ordering::Relaxed);
    if failures > 0 {
        eprintln!("   {failures} connection attempts failed (retried)");
    }
    for t in tasks {
        t.abort();
    }
    let ticks_per_s = 100.0; // USER_HZ on Linux
    RunResult {
        target,
        load,
        held,
        offered_per_s,
        ingested_per_s: (end.frames - start.frames) as f64 / secs,
        p50_ms: quantile(&start.buckets, &end.buckets, 0.5),
        p99_ms: quantile(&start.buckets, &end.buckets, 0.99),
        rss_before_mib: before_fleet.rss_kib as f64 / 1024.0,
        rss_after_mib: end.rss_kib as f64 / 1024.0,
        cpu_cores: (end.cpu_ticks - start.cpu_ticks) as f64 / ticks_per_s / secs,
        weight_rows_per_s: (end.weight.rows - start.weight.rows) as f64 / secs,
        weight_batch_mean: (end.weight.rows - start.weight.rows) as f64
            / (end.weight.batches - start.weight.batches).max(1) as f64,
        weight_dropped: end.weight.dropped,
        weight_queue_end: end.weight.queue,
    }
}

/// The baseline: rumqttd with the same router limits as Heft's config and a local-link reader
/// that counts frames and takes their latency from `ts` the same way Heft does. Nothing else.
mod bare {
    use super::*;
    use rumqttd::{Broker, Config, ConnectionSettings, Notification, RouterConfig, ServerSettings};

    pub fn run(listen: &str) {
        let cfg = heft::config::Config::from_toml_and_env(
            include_str!("../config.toml"),
            std::path::Path::new("config.toml"),
            // HEFT__MQTT__* set for a run apply to both servers.
            std::env::vars(),
        )
        .expect("config");
        let m = &cfg.mqtt;
        let server = ServerSettings {
            name: "bare".into(),
            listen: listen.parse().expect("listen"),
            tls: None,
            next_connection_delay_ms: m.next_connection_delay_ms,
            connections: ConnectionSettings {
                connection_timeout_ms: m.connection_timeout_ms,
                max_payload_size: m.max_packet_bytes,
                max_inflight_count: m.max_inflight_count,
                auth: None,
                external_auth: None,
                dynamic_filters: true,
            },
        };
        let config = Config {
            router: RouterConfig {
                max_connections: m.max_connections + 1,
                max_outgoing_packet_count: m.max_outgoing_packet_count,
                max_segment_size: m.max_segment_size,
                max_segment_count: m.max_segment_count,
                ..Default::default()
            },
            v4: Some(HashMap::from([("1".to_string(), server)])),
            ..Default::default()
        };
        let mut broker = Broker::new(config);
        let (mut tx, mut rx) = broker.link("bare-reader").expect("link");
        tx.subscribe("#").expect("subscribe");
        std::thread::spawn(move || {
            let _ = broker.start();
        });
        let mut received = 0u64;
        let mut buckets = vec![0u64; LATENCY_BUCKETS.len()];
        let mut last_print = Instant::now();
        loop {
            match rx.recv_deadline(Instant::now() + Duration::from_millis(500)) {
                Ok(Some(Notification::Forward(f))) => {
                    if f.publish.topic.ends_with(b"/down/login_ack") {
                        continue; // our own answer, echoed back by the subscription
                    }
                    received += 1;
                    // Answer a login on the cabinet's down topic, as Heft does, so rumqttd holds
                    // the same topics (and their logs) in both runs.
                    if let Some(prefix) = f.publish.topic.strip_suffix(b"/up/login") {
                        let mut topic = prefix.to_vec();
                        topic.extend_from_slice(b"/down/login_ack");
                        let _ = tx.try_publish(topic, LOGIN_ACK.as_bytes().to_vec());
                    }
                    if let Some(ts) = find_ts(&f.publish.payload) {
                        let age_us = chrono::Utc::now().timestamp_micros() - ts * 1000 - 500;
                        let age_s = age_us.max(0) as f64 / 1e6;
                        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
                            if age_s <= *b {
                                buckets[i] += 1;
                            }
                        }
                    }
                }
                Ok(Some(Notification::Unschedule)) => {
                    let _ = rx.ready();
                }
                _ => {}
            }
            if last_print.elapsed() >= Duration::from_millis(500) {
                last_print = Instant::now();
                println!("{}", serde_json::json!({"received": received, "buckets": buckets}));
            }
        }
    }

    /// About the size of Heft's signed login_ack.
    const LOGIN_ACK: &str = r#"{"m":{"boot":1,"seq":1764000000000,"ok":true,"server_time_ms":1764000000000,"cadence":{"heartbeat_s":30,"closed_weight_s":90,"open_weight_ms":300,"after_close_weight_ms":300,"after_close_s":8}},"s":"gsZa2CXvXMEdXqlL+zaDY8RbdpjdBhOBackLC5D+xjA="}"#;

    /// The `"ts":` integer of a frame, found by a byte scan (no JSON parsing: the baseline does
    /// no processing beyond what the measurement needs).
    fn find_ts(payload: &[u8]) -> Option<i64> {
        let pat = b"\"ts\":";
        let at = payload.windows(pat.len()).position(|w| w == pat)? + pat.len();
        let digits: Vec<u8> = payload[at..].iter().copied().take_while(u8::is_ascii_digit).collect();
        std::str::from_utf8(&digits).ok()?.parse().ok()
    }
}
