//! `heft simulate`: a fleet of simulated cabinets that follow device protocol v1 over real MQTT
//! connections: log in, heartbeat and report weights at the cadence Heft gives them, reconnect
//! with backoff, and inject faults on request. It is the load generator of the benchmarks and a
//! demo for newcomers.

pub mod device;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;

use crate::config::Config;
use crate::device::frame::{Cadence, Header, LoginAck};
use crate::device::topic::{self, UpKind};
use crate::provision::{self, Credentials};
use device::{ConnectOptions, DeviceClient, DeviceClientError};

#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// How many cabinets to simulate.
    #[arg(long, default_value_t = 10)]
    pub cabinets: usize,
    /// Heft's MQTT listener.
    #[arg(long, default_value = "127.0.0.1:1884")]
    pub broker: String,
    /// Serial numbers are PREFIX plus a five-digit index.
    #[arg(long, default_value = "SIM-")]
    pub prefix: String,
    /// First index.
    #[arg(long, default_value_t = 1)]
    pub first: usize,
    /// JSON array of credentials (as `heft provision --json` prints). Without it the simulator
    /// provisions its cabinets in the configured database (new credentials for existing ones).
    #[arg(long)]
    pub credentials: Option<std::path::PathBuf>,
    /// Probability that a heartbeat is silently not sent.
    #[arg(long, default_value_t = 0.0)]
    pub drop_heartbeats: f64,
    /// Probability that a frame is signed with a wrong key.
    #[arg(long, default_value_t = 0.0)]
    pub bad_signatures: f64,
    /// Disconnect each cabinet after this many seconds (then it reconnects with backoff).
    #[arg(long)]
    pub disconnect_after: Option<u64>,
    /// This many cabinets stream weights at the open-door cadence (doors held open).
    #[arg(long, default_value_t = 0)]
    pub open_doors: usize,
    /// Open-door cabinets stream weights this often instead of the cadence's period.
    #[arg(long)]
    pub weight_every_ms: Option<u64>,
    /// Lanes per cabinet in weight frames.
    #[arg(long, default_value_t = 8)]
    pub lanes: usize,
    /// New connections per second while ramping up.
    #[arg(long, default_value_t = 400)]
    pub ramp_per_s: u64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Print a stats line this often.
    #[arg(long, default_value_t = 10)]
    pub stats_every_s: u64,
    /// Stats as JSON lines.
    #[arg(long)]
    pub json: bool,
}

/// Counters shared by every simulated cabinet.
#[derive(Debug, Default)]
pub struct SimStats {
    pub connected: AtomicU64,
    pub logged_in: AtomicU64,
    pub frames_sent: AtomicU64,
    pub heartbeats_sent: AtomicU64,
    pub heartbeats_dropped: AtomicU64,
    pub weights_sent: AtomicU64,
    pub bad_signatures_sent: AtomicU64,
    pub logins_refused: AtomicU64,
    pub relogin_requests: AtomicU64,
    pub reconnects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub down_rejected: AtomicU64,
}

#[derive(Debug, Serialize)]
pub struct StatsLine {
    pub elapsed_s: f64,
    pub connected: u64,
    pub logged_in: u64,
    pub frames_sent: u64,
    pub frames_per_s: f64,
    pub heartbeats_sent: u64,
    pub heartbeats_dropped: u64,
    pub weights_sent: u64,
    pub bad_signatures_sent: u64,
    pub logins_refused: u64,
    pub relogin_requests: u64,
    pub reconnects: u64,
    pub connect_failures: u64,
    pub down_rejected: u64,
}

impl SimStats {
    pub fn line(&self, elapsed: Duration, frames_per_s: f64) -> StatsLine {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsLine {
            elapsed_s: (elapsed.as_secs_f64() * 10.0).round() / 10.0,
            connected: g(&self.connected),
            logged_in: g(&self.logged_in),
            frames_sent: g(&self.frames_sent),
            frames_per_s: frames_per_s.round(),
            heartbeats_sent: g(&self.heartbeats_sent),
            heartbeats_dropped: g(&self.heartbeats_dropped),
            weights_sent: g(&self.weights_sent),
            bad_signatures_sent: g(&self.bad_signatures_sent),
            logins_refused: g(&self.logins_refused),
            relogin_requests: g(&self.relogin_requests),
            reconnects: g(&self.reconnects),
            connect_failures: g(&self.connect_failures),
            down_rejected: g(&self.down_rejected),
        }
    }
}

/// Behaviour of one simulated cabinet.
#[derive(Debug, Clone)]
pub struct Behaviour {
    pub broker: String,
    pub drop_heartbeats: f64,
    pub bad_signatures: f64,
    pub disconnect_after: Option<Duration>,
    pub door_open: bool,
    pub lanes: usize,
    /// Stream weights this often (ms) while the door is open, instead of the cadence's period;
    /// 0 follows the cadence. Shared and read every period, so a benchmark can raise the rate
    /// once the whole fleet is connected.
    pub weight_every_ms: tokio::sync::watch::Receiver<u64>,
    /// Send the login but do not wait for an answer; follow this cadence. For a bare broker that
    /// answers nothing (benchmarks).
    pub without_login: Option<Cadence>,
}

pub async fn run(args: SimArgs, config: Config) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.drop_heartbeats) || !(0.0..=1.0).contains(&args.bad_signatures) {
        anyhow::bail!("--drop-heartbeats and --bad-signatures are probabilities between 0 and 1");
    }
    let creds = match &args.credentials {
        Some(path) => {
            let all: Vec<Credentials> = serde_json::from_slice(&std::fs::read(path)?)?;
            if all.len() < args.cabinets {
                anyhow::bail!(
                    "{} holds {} credentials, fewer than --cabinets {}",
                    path.display(),
                    all.len(),
                    args.cabinets
                );
            }
            all.into_iter().take(args.cabinets).collect()
        }
        None => provision_fleet(&config, &args).await?,
    };
    let stats = Arc::new(SimStats::default());
    let started = Instant::now();
    let (_rate, weight_every_ms) = tokio::sync::watch::channel(args.weight_every_ms.unwrap_or(0));
    let behaviour = |i: usize| Behaviour {
        broker: args.broker.clone(),
        drop_heartbeats: args.drop_heartbeats,
        bad_signatures: args.bad_signatures,
        disconnect_after: args.disconnect_after.map(Duration::from_secs),
        door_open: i < args.open_doors,
        lanes: args.lanes,
        weight_every_ms: weight_every_ms.clone(),
        without_login: None,
    };
    let tasks = spawn_fleet(creds, behaviour, stats.clone(), args.ramp_per_s).await;
    let report = {
        let stats = stats.clone();
        let json = args.json;
        let every = Duration::from_secs(args.stats_every_s.max(1));
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            loop {
                tokio::time::sleep(every).await;
                let sent = stats.frames_sent.load(Ordering::Relaxed);
                let rate = (sent - last.1) as f64 / last.0.elapsed().as_secs_f64();
                last = (Instant::now(), sent);
                print_stats(&stats.line(started.elapsed(), rate), json);
            }
        })
    };
    match args.duration {
        Some(s) => tokio::time::sleep(Duration::from_secs(s).saturating_sub(started.elapsed())).await,
        None => tokio::signal::ctrl_c().await?,
    }
    report.abort();
    for t in tasks {
        t.abort();
    }
    let sent = stats.frames_sent.load(Ordering::Relaxed);
    print_stats(&stats.line(started.elapsed(), sent as f64 / started.elapsed().as_secs_f64()), args.json);
    Ok(())
}

fn print_stats(line: &StatsLine, json: bool) {
    if json {
        println!("{}", serde_json::to_string(line).unwrap_or_default());
    } else {
        println!(
            "t={:>6.1}s connected={} logged_in={} frames={} ({:.0}/s) heartbeats={} dropped={} weights={} bad_sig={} refused={} relogin={} reconnects={} connect_failures={}",
            line.elapsed_s,
            line.connected,
            line.logged_in,
            line.frames_sent,
            line.frames_per_s,
            line.heartbeats_sent,
            line.heartbeats_dropped,
            line.weights_sent,
            line.bad_signatures_sent,
            line.logins_refused,
            line.relogin_requests,
            line.reconnects,
            line.connect_failures
        );
    }
}

/// Start one task per cabinet, `ramp_per_s` new connections per second.
pub async fn spawn_fleet(
    creds: Vec<Credentials>,
    behaviour: impl Fn(usize) -> Behaviour,
    stats: Arc<SimStats>,
    ramp_per_s: u64,
) -> Vec<tokio::task::JoinHandle<()>> {
    let pace = Duration::from_secs_f64(1.0 / ramp_per_s.max(1) as f64);
    let mut tasks = Vec::with_capacity(creds.len());
    let mut next = tokio::time::Instant::now();
    for (i, c) in creds.into_iter().enumerate() {
        tasks.push(tokio::spawn(run_cabinet(c, behaviour(i), stats.clone())));
        next += pace;
        tokio::time::sleep_until(next).await;
    }
    tasks
}

/// Create (or re-key) the simulated cabinets in the configured database.
async fn provision_fleet(config: &Config, args: &SimArgs) -> anyhow::Result<Vec<Credentials>> {
    let db = crate::app::open_database(config).await?;
    let seal = crate::secrets::SealKey::load_or_create(&config.security.seal_key, &config.security.seal_key_file)?;
    let sns: Vec<String> = (args.first..args.first + args.cabinets).map(|i| format!("{}{i:05}", args.prefix)).collect();
    let creds = db
        .write(move |c| {
            sns.iter()
                .map(|sn| {
                    let exists = crate::db::cabinets::find(c, sn)?.is_some();
                    provision::provision(c, &seal, sn, "sim", exists)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    Ok(creds)
}

/// The first boot of a simulated cabinet: the clock, so it exceeds any boot an earlier run used.
fn first_boot() -> u64 {
    chrono::Utc::now().timestamp_millis().max(1) as u64
}

/// One simulated cabinet, forever: connect, log in, follow the cadence; on any failure back off
/// (1 s doubling to 60 s, with jitter) and start over with the next boot.
pub async fn run_cabinet(creds: Credentials, b: Behaviour, stats: Arc<SimStats>) {
    let mut boot = first_boot();
    let mut backoff = Duration::from_secs(1);
    let mut first = true;
    loop {
        if !first {
            stats.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        boot += 1;
        match session(&creds, &b, &stats, &mut boot).await {
            Ok(()) => backoff = Duration::from_secs(1),
            Err(e) => {
                tracing::debug!(sn = %creds.sn, error = %e, "simulated cabinet session ended");
            }
        }
        let jitter = rand::thread_rng().gen_range(0.5..1.5);
        tokio::time::sleep(backoff.mul_f64(jitter)).await;
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// One connection: returns Ok when it ended by plan (`--disconnect-after`).
async fn session(
    creds: &Credentials,
    b: &Behaviour,
    stats: &SimStats,
    boot: &mut u64,
) -> Result<(), DeviceClientError> {
    let mut dev = match DeviceClient::connect(&b.broker, creds, *boot, ConnectOptions::default()).await {
        Ok(d) => d,
        Err(e) => {
            stats.connect_failures.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
    };
    stats.connected.fetch_add(1, Ordering::Relaxed);
    let result = logged_in_session(&mut dev, b, stats, boot).await;
    stats.connected.fetch_sub(1, Ordering::Relaxed);
    dev.disconnect().await;
    result
}

async fn login(dev: &mut DeviceClient, stats: &SimStats, boot: &mut u64) -> Result<Cadence, DeviceClientError> {
    for _ in 0..5 {
        dev.boot = *boot;
        let ack: LoginAck = dev.login(Duration::from_secs(10)).await?;
        stats.frames_sent.fetch_add(1, Ordering::Relaxed);
        if let (true, Some(cadence)) = (ack.ok, ack.cadence) {
            return Ok(cadence);
        }
        // stale_boot: someone (an earlier run) used a higher boot; jump past it.
        stats.logins_refused.fetch_add(1, Ordering::Relaxed);
        *boot = (*boot).max(ack.last_boot.unwrap_or(ack.boot)) + 1;
    }
    Err(DeviceClientError::Connection("login refused five times".into()))
}

async fn logged_in_session(
    dev: &mut DeviceClient,
    b: &Behaviour,
    stats: &SimStats,
    boot: &mut u64,
) -> Result<(), DeviceClientError> {
    let mut cadence = match &b.without_login {
        Some(c) => {
            dev.boot = *boot;
            dev.send_login().await?;
            stats.frames_sent.fetch_add(1, Ordering::Relaxed);
            c.clone()
        }
        None => login(dev, stats, boot).await?,
    };
    stats.logged_in.fetch_add(1, Ordering::Relaxed);
    let result = follow_cadence(dev, b, stats, boot, &mut cadence).await;
    stats.logged_in.fetch_sub(1, Ordering::Relaxed);
    result
}

async fn follow_cadence(
    dev: &mut DeviceClient,
    b: &Behaviour,
    stats: &SimStats,
    boot: &mut u64,
    cadence: &mut Cadence,
) -> Result<(), DeviceClientError> {
    let started = tokio::time::Instant::now();
    let mut rate = b.weight_every_ms.clone();
    let mut rate_open = true;
    let weight_every = |cadence: &Cadence, fast: u64| match (b.door_open, fast) {
        (true, 0) => Duration::from_millis(cadence.open_weight_ms),
        (true, ms) => Duration::from_millis(ms),
        (false, _) => Duration::from_secs(cadence.closed_weight_s),
    };
    // Spread the fleet over the period instead of beating in lockstep.
    let phase = |period: Duration| period.mul_f64(rand::thread_rng().gen_range(0.0..1.0));
    let hb_period = Duration::from_secs(cadence.heartbeat_s);
    let mut next_hb = started + phase(hb_period);
    let mut next_weight = started + phase(weight_every(cadence, *rate.borrow()));
    let mut down_seq = 0u64;
    let mut temp: f64 = 4.0 + rand::thread_rng().gen_range(-0.5..0.5);
    let mut counts: Vec<i64> = (0..b.lanes).map(|_| rand::thread_rng().gen_range(80_000..900_000)).collect();
    loop {
        if b.disconnect_after.is_some_and(|limit| started.elapsed() >= limit) {
            return Ok(());
        }
        let wake = next_hb.min(next_weight);
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            changed = rate.changed(), if rate_open => {
                match changed {
                    // A new rate takes effect now, not after the old period runs out.
                    Ok(()) => {
                        let period = weight_every(cadence, *rate.borrow_and_update());
                        next_weight = tokio::time::Instant::now() + phase(period);
                    }
                    Err(_) => rate_open = false,
                }
                continue;
            }
            down = dev.next_down(Duration::from_secs(3600)) => {
                let down = match down {
                    Ok(d) => d,
                    Err(DeviceClientError::Verify(_)) => { stats.down_rejected.fetch_add(1, Ordering::Relaxed); continue; }
                    Err(e) => return Err(e),
                };
                // A cabinet obeys only frames for its boot with an increasing seq.
                let for_us = down.m.get("boot").and_then(|v| v.as_u64()) == Some(*boot);
                let seq = down.m.get("seq").and_then(|v| v.as_u64()).unwrap_or(0);
                if !for_us || seq <= down_seq {
                    stats.down_rejected.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                down_seq = seq;
                if down.kind() == "login_ack" && down.m.get("reason").and_then(|v| v.as_str()) == Some("login_required") {
                    stats.relogin_requests.fetch_add(1, Ordering::Relaxed);
                    *boot += 1;
                    *cadence = login(dev, stats, boot).await?;
                    down_seq = 0;
                }
                continue;
            }
        }
        let now = tokio::time::Instant::now();
        if now >= next_hb {
            next_hb += hb_period;
            temp += rand::thread_rng().gen_range(-0.05..0.05);
            if rand::thread_rng().gen_bool(b.drop_heartbeats) {
                stats.heartbeats_dropped.fetch_add(1, Ordering::Relaxed);
            } else {
                let heating = temp < 3.5;
                send(
                    dev,
                    b,
                    stats,
                    UpKind::Heartbeat,
                    serde_json::json!({"temp_c": (temp * 10.0).round() / 10.0, "heating": heating}),
                )
                .await?;
                stats.heartbeats_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        if now >= next_weight {
            next_weight += weight_every(cadence, *rate.borrow());
            for c in counts.iter_mut() {
                *c += rand::thread_rng().gen_range(-40..40);
            }
            let door = if b.door_open { "open" } else { "closed" };
            send(dev, b, stats, UpKind::Weight, serde_json::json!({"door": door, "counts": counts})).await?;
            stats.weights_sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Add the header to `body`, sign (with a wrong key, if the dice say so) and publish.
async fn send(
    dev: &mut DeviceClient,
    b: &Behaviour,
    stats: &SimStats,
    kind: UpKind,
    mut body: serde_json::Value,
) -> Result<(), DeviceClientError> {
    let h: Header = dev.header();
    if let serde_json::Value::Object(map) = &mut body {
        map.insert("boot".into(), h.boot.into());
        map.insert("seq".into(), h.seq.into());
        if let Some(ts) = h.ts {
            map.insert("ts".into(), ts.into());
        }
    }
    if b.bad_signatures > 0.0 && rand::thread_rng().gen_bool(b.bad_signatures) {
        let topic = topic::up(&dev.sn, kind);
        let m = body.to_string();
        let forged = crate::device::frame::signature(b"not this cabinet's key", &topic, &m);
        dev.publish_raw(&topic, format!(r#"{{"m":{m},"s":"{forged}"}}"#).into_bytes()).await?;
        stats.bad_signatures_sent.fetch_add(1, Ordering::Relaxed);
    } else {
        dev.send(kind, &body).await?;
    }
    stats.frames_sent.fetch_add(1, Ordering::Relaxed);
    Ok(())
}
