//! The live view under load: `heft serve` in its own process (embedded profile), a fleet of
//! simulated cabinets over real MQTT with some of their doors held open (streaming weights at the
//! open-door cadence), and websocket dashboards, one of them deliberately slow (a 4 KiB receive
//! buffer, and it never reads).
//!
//! ```sh
//! cargo bench --bench live                                   # 10,000 cabinets, 1,000 open, 20 dashboards
//! cargo bench --bench live -- --cabinets 2000 --open 200 --dashboards 5 --measure-s 20
//! ```
//!
//! Reported: the node's CPU over the same window without and with the dashboards (the
//! difference is what the live view costs), how long the fleet snapshot takes to reach a
//! dashboard, the bytes per second each receives, how far behind the cabinet the lane charts are
//! (Heft's reading time to the dashboard, to add to the ingest latency of `benches/ingest.rs`),
//! the node's memory through the window, and what became of the slow dashboard.

mod common;

use common::{cpu_seconds, free_port};

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use heft::sim::stage::{Ports, Program, Stage, StageOptions};
use heft::sim::{self, Behaviour, SimStats};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const OPERATOR: &str = "bench-admin";
const PASSWORD: &str = "bench-password-1";

struct Args {
    cabinets: usize,
    open: usize,
    dashboards: usize,
    measure_s: u64,
}

fn parse_args() -> Args {
    let mut a = Args { cabinets: 10_000, open: 1_000, dashboards: 20, measure_s: 30 };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or_else(|| panic!("{arg} N"));
        match arg.as_str() {
            "--cabinets" => a.cabinets = value() as usize,
            "--open" => a.open = value() as usize,
            "--dashboards" => a.dashboards = value() as usize,
            "--measure-s" => a.measure_s = value(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn main() {
    common::raise_fd_limit();
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, run(args));
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn run(args: Args) {
    let dir = tempfile::tempdir().expect("temp dir");
    let stage = Stage::new(StageOptions {
        binary: env!("CARGO_BIN_EXE_heft").into(),
        config_file: concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml").into(),
        dir: dir.path().to_path_buf(),
        ports: Ports { mqtt: free_port(), http: free_port(), pay_sim: free_port() },
        services: None,
        pay_sim_state: false,
        extra: vec![("HEFT__MQTT__MAX_CONNECTIONS".into(), (args.cabinets + 100).to_string())],
    })
    .expect("stage");
    let config = &stage.config;
    let _platforms =
        heft::pay::sim::start(&config.pay_sim, &config.wechat, &config.alipay).await.expect("payment simulator");
    let creds = stage.provision("LIVE-", args.cabinets, sim::SIM_TYPE, (OPERATOR, PASSWORD)).await.expect("provision");
    let node = stage.spawn(Program::Node, true).expect("spawn heft serve");
    stage.node_up(Duration::from_secs(60)).await.expect("heft starts");
    let pid = node.pid().expect("the node runs");
    let stats = Arc::new(SimStats::default());
    let (_every, every_rx) = tokio::sync::watch::channel(0u64);
    let (broker, open) = (stage.broker(), args.open);
    let behaviour = move |i: usize| Behaviour {
        broker: broker.clone(),
        keep_alive: heft::sim::KEEP_ALIVE,
        drop_heartbeats: 0.0,
        bad_signatures: 0.0,
        disconnect_after: None,
        door_open: i < open,
        lanes: 16,
        weight_every_ms: every_rx.clone(),
        without_login: None,
    };
    let _fleet = sim::spawn_fleet(creds, behaviour, stats.clone(), 500).await;
    let connected = Instant::now();
    while stats.logged_in.load(Ordering::Relaxed) < args.cabinets as u64
        && connected.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("{} cabinets logged in, {} doors open; settling", stats.logged_in.load(Ordering::Relaxed), args.open);
    tokio::time::sleep(Duration::from_secs(10)).await;

    let window = Duration::from_secs(args.measure_s);
    let cpu0 = cpu_seconds(pid);
    tokio::time::sleep(window).await;
    let without = (cpu_seconds(pid) - cpu0) / window.as_secs_f64();

    let base = stage.http_base();
    let token = sign_in(&base).await;
    eprintln!("node CPU without dashboards measured; connecting the dashboards");
    let ws_url = format!("{}/ops/live", base.replace("http://", "ws://"));
    let mut readers = Vec::new();
    let mut snapshot_ms = Vec::new();
    let until = Instant::now() + window + Duration::from_secs(2);
    for d in 0..args.dashboards {
        let slow = d == 0;
        let (ws, ms) = dashboard(&ws_url, &token, &format!("LIVE-{d:05}"), slow).await;
        eprintln!("dashboard {d}: fleet snapshot in {ms:.0} ms");
        snapshot_ms.push(ms);
        readers.push(tokio::spawn(read(ws, slow, until)));
    }
    let rss0 = rss_mib(pid);
    let cpu0 = cpu_seconds(pid);
    let mut rss_max = rss0;
    let started = Instant::now();
    while started.elapsed() < window {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_max = rss_max.max(rss_mib(pid));
    }
    let with = (cpu_seconds(pid) - cpu0) / started.elapsed().as_secs_f64();
    let rss1 = rss_mib(pid);
    let seconds = started.elapsed().as_secs_f64();
    let metrics = reqwest::get(format!("{base}/metrics")).await.expect("metrics").text().await.unwrap_or_default();
    let mut readers_done = Vec::new();
    for r in readers {
        readers_done.push(r.await.expect("reader"));
    }
    report(&args, without, with, &snapshot_ms, seconds, (rss0, rss_max, rss1), &metrics);
    report_readers(&readers_done, seconds);
}

async fn sign_in(base: &str) -> String {
    let body = json!({"username": OPERATOR, "password": PASSWORD});
    let res: Value = reqwest::Client::new()
        .post(format!("{base}/ops/auth/login"))
        .json(&body)
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login body");
    res["token"].as_str().expect("token").to_string()
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A signed-in dashboard following the fleet, the alerts and one open cabinet; how long the
/// fleet snapshot took to arrive (ms).
async fn dashboard(url: &str, token: &str, sn: &str, slow: bool) -> (Ws, f64) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let req = url.into_client_request().expect("request");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    if slow {
        socket.set_recv_buffer_size(4096).expect("receive buffer");
    }
    let addr: std::net::SocketAddr =
        url.trim_start_matches("ws://").trim_end_matches("/ops/live").parse().expect("addr");
    let tcp = socket.connect(addr).await.expect("connect");
    let (mut ws, _) =
        tokio_tungstenite::client_async(req, tokio_tungstenite::MaybeTlsStream::Plain(tcp)).await.expect("upgrade");
    let send = |v: Value| Message::text(v.to_string());
    ws.send(send(json!({"type": "auth", "token": token}))).await.expect("auth");
    let asked = Instant::now();
    ws.send(send(json!({"type": "sub", "id": 1, "topic": "fleet"}))).await.expect("sub");
    loop {
        let t = match ws.next().await {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(_)) => continue,
            other => panic!("the socket closed before the snapshot: {other:?}"),
        };
        if t.as_str().starts_with(r#"{"type":"snapshot","sub":1"#) {
            break;
        }
    }
    let ms = asked.elapsed().as_secs_f64() * 1000.0;
    ws.send(send(json!({"type": "sub", "id": 2, "topic": "alerts"}))).await.expect("sub");
    ws.send(send(json!({"type": "sub", "id": 3, "topic": format!("cabinet/{sn}")}))).await.expect("sub");
    (ws, ms)
}

/// What one dashboard received.
#[derive(Debug, Default)]
struct Reader {
    bytes: u64,
    resyncs: u64,
    /// Lane weights: dashboard receive time − Heft's reading time, ms.
    lags: Vec<i64>,
    closed: Option<String>,
}

/// Read until `until`; the slow dashboard reads nothing until then, and then only what is left,
/// to see what the server did about it.
async fn read(mut ws: Ws, slow: bool, until: Instant) -> Reader {
    let mut r = Reader::default();
    if slow {
        tokio::time::sleep_until(until.into()).await;
    }
    loop {
        // The slow one reads what waited for it, for a few seconds at most.
        let end = if slow { until + Duration::from_secs(5) } else { until };
        let left = end.saturating_duration_since(Instant::now());
        let msg = match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(msg)) => msg,
            Ok(None) | Err(_) => break,
        };
        match msg {
            Ok(Message::Text(t)) => {
                r.bytes += t.len() as u64;
                let s = t.as_str();
                if s.contains(r#""kind":"weights""#) {
                    let at = s.split(r#""at_ms":"#).nth(1).and_then(|rest| rest.split([',', '}']).next());
                    if let Some(at) = at.and_then(|a| a.parse::<i64>().ok()) {
                        r.lags.push(now_ms() - at);
                    }
                } else if s.starts_with(r#"{"type":"resync""#) {
                    r.resyncs += 1;
                }
            }
            Ok(Message::Close(frame)) => {
                r.closed = frame.map(|f| format!("{} {}", u16::from(f.code), f.reason));
                break;
            }
            Ok(_) => {}
            Err(e) => {
                r.closed = Some(e.to_string());
                break;
            }
        }
    }
    r
}

fn report_readers(readers: &[Reader], seconds: f64) {
    let normal = &readers[1.min(readers.len())..];
    let rates: Vec<f64> = normal.iter().map(|r| r.bytes as f64 / 1024.0 / seconds).collect();
    let mut lags: Vec<i64> = normal.iter().flat_map(|r| r.lags.iter().copied()).collect();
    lags.sort_unstable();
    let q = |p: f64| lags.get(((lags.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0);
    println!(
        "each dashboard received {:.0} KiB/s (min {:.0}, max {:.0}); resyncs {}",
        median(&rates),
        rates.iter().cloned().fold(f64::INFINITY, f64::min),
        rates.iter().cloned().fold(0.0, f64::max),
        normal.iter().map(|r| r.resyncs).sum::<u64>()
    );
    println!(
        "lane weights, Heft's reading to the dashboard: p50 {} ms, p99 {} ms, max {} ms ({} deltas)",
        q(0.5),
        q(0.99),
        lags.last().copied().unwrap_or(0),
        lags.len()
    );
    if let Some(slow) = readers.first() {
        println!(
            "the slow dashboard: {} KiB taken late, {} resyncs, ended: {}",
            slow.bytes / 1024,
            slow.resyncs,
            slow.closed.as_deref().unwrap_or("still open")
        );
    }
}

fn report(
    args: &Args,
    without: f64,
    with: f64,
    snapshot_ms: &[f64],
    seconds: f64,
    (rss0, rss_max, rss1): (f64, f64, f64),
    metrics: &str,
) {
    let metric = |name: &str| -> f64 {
        metrics.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
    };
    println!(
        "live view: {} cabinets, {} doors open, {} dashboards (one slow)",
        args.cabinets, args.open, args.dashboards
    );
    println!("node CPU without dashboards: {:.1} % of one core", 100.0 * without);
    println!("node CPU with dashboards:    {:.1} % of one core", 100.0 * with);
    println!("the live view adds:          {:.1} % of one core", 100.0 * (with - without));
    println!(
        "fleet snapshot to the dashboard: first {:.0} ms (reads the fleet), then median {:.0} ms, max {:.0} ms",
        snapshot_ms[0],
        median(&snapshot_ms[1..]),
        snapshot_ms[1..].iter().cloned().fold(0.0, f64::max)
    );
    println!(
        "sent by the node: {:.0} KiB/s in all; closed for slowness: {}",
        metric("heft_live_sent_bytes_total") / 1024.0 / seconds,
        metric("heft_live_closed_total{reason=\"slow\"}")
    );
    println!("node RSS: {rss0:.0} MiB at the start, {rss_max:.0} MiB at most, {rss1:.0} MiB at the end");
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}
