//! `heft simulate`: a fleet of simulated cabinets that follow device protocol v1 over real MQTT
//! connections: log in, heartbeat and report weights at the cadence Heft gives them, answer
//! commands, reconnect with backoff, and inject faults on request. Each cabinet is a physical
//! model (`cabinet::Physical`: load cells under lanes of products, doors), so the counts it
//! reports are what a real cabinet would report. It is the load generator of the benchmarks, a
//! demo for newcomers, and (through `handle::SimCabinet`) the cabinet of integration tests.

pub mod cabinet;
pub mod device;
pub mod handle;
pub mod scale;
pub mod shopper;
pub mod stage;
pub mod thermal;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::device::frame::{Cadence, Header, LoginAck};
use crate::device::topic::{self, UpKind};
use crate::provision::{self, Credentials};
use cabinet::{Physical, PhysicalOptions};
use device::{ConnectOptions, DeviceClient, DeviceClientError};
use handle::{CabinetRemote, Request};
use scale::{CellKind, ScaleOptions};
use shopper::{FleetSetup, PlanOptions, ShopperError, ShopperOptions, ShopperRun, Shoppers};
use thermal::{Climate, Thermal};

#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// How many cabinets to simulate.
    #[arg(long, default_value_t = 10)]
    pub cabinets: usize,
    /// Heft's MQTT listener, or several nodes' (comma-separated): a cabinet starts at one (spread
    /// by its index) and, when its connection is lost or refused, tries the next, as firmware
    /// behind a load balancer lands on another node.
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
    /// Load-cell channels per cabinet (the length of `counts` in weight frames).
    #[arg(long, alias = "lanes", default_value_t = 16)]
    pub channels: usize,
    /// Noise of one load-cell reading, standard deviation in grams.
    #[arg(long, default_value_t = 2.0)]
    pub noise_g: f64,
    /// Slow zero drift of every load cell (aging), grams per hour, each cell in its own direction.
    #[arg(long, default_value_t = 0.5)]
    pub creep_g_per_h: f64,
    /// Load-cell model: `realistic` adds to noise and drift what real cells do (spikes,
    /// temperature, creep under load, settling, door-close shake, non-linearity; numbers in
    /// src/sim/scale.rs); `clean` is noise and drift only.
    #[arg(long, value_enum, default_value_t = CellKind::Realistic)]
    pub cell: CellKind,
    /// Wild single readings per hour per cell (default: the model's, 3 for a realistic cell).
    #[arg(long)]
    pub spikes_per_h: Option<f64>,
    /// What keeps the cabinets' temperature, which the cells feel and heartbeats report.
    #[arg(long, value_enum, default_value_t = Climate::Fridge)]
    pub cabinet_temp: Climate,
    /// How far the temperature swings either side of its middle, °C: over a fridge's compressor
    /// cycle (default 1.5; beyond 2 it leaves the `sim` type's 2 to 10 °C and raises temperature
    /// alerts) or an ambient cabinet's day (default 3).
    #[arg(long)]
    pub temp_swing_c: Option<f64>,
    /// New connections per second while ramping up.
    #[arg(long, default_value_t = 400)]
    pub ramp_per_s: u64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Print a stats line this often.
    #[arg(long, default_value_t = 10)]
    pub stats_every_s: u64,
    /// Stats (and, with --shoppers, each shopper's truth) as JSON lines.
    #[arg(long)]
    pub json: bool,
    /// Shoppers and fleet setup; boxed, as the command line keeps every subcommand's arguments
    /// in one enum.
    #[command(flatten)]
    pub shop: Box<ShopArgs>,
}

/// `heft simulate`'s shoppers and the fleet setup they need.
#[derive(Debug, Clone, clap::Args)]
pub struct ShopArgs {
    /// Simulated shoppers buying at once. Cabinets sell only once Heft has them configured and
    /// calibrated: run with --setup (once per run: credentials are new each run).
    #[arg(long, default_value_t = 0)]
    pub shoppers: usize,
    /// With --shoppers: stop after this many visits (scans, refused ones included).
    #[arg(long)]
    pub purchases: Option<usize>,
    /// Heft's HTTP address (shoppers, --setup).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub heft_url: String,
    /// The payment platform simulator, where shoppers log in and confirm.
    #[arg(long, default_value = "http://127.0.0.1:8090")]
    pub pay_sim_url: String,
    /// Probability that a shopper takes nothing.
    #[arg(long, default_value_t = 0.1)]
    pub p_nothing: f64,
    /// Probability that a shopper puts one unit back on another lane of the door.
    #[arg(long, default_value_t = 0.1)]
    pub p_move: f64,
    /// Seed for the shoppers' choices.
    #[arg(long)]
    pub seed: Option<u64>,
    /// First make every simulated cabinet sellable through the ops API, as an operator would:
    /// simulated products, a configuration of two doors, calibration, stock. Needs --ops-user
    /// and --ops-password (role admin or operator).
    #[arg(long)]
    pub setup: bool,
    /// The operator --setup signs in as.
    #[arg(long)]
    pub ops_user: Option<String>,
    /// Their password.
    #[arg(long, env = "HEFT_OPS_PASSWORD", hide_env_values = true)]
    pub ops_password: Option<String>,
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
    pub doors_sent: AtomicU64,
    pub acks_sent: AtomicU64,
    /// Connection attempts so far: each takes the next broker of the list.
    pub attempts: AtomicU64,
    /// Why sessions failed (connect, login or later), counted by the error's text: what a
    /// reconnect storm runs into.
    pub failures: Mutex<std::collections::BTreeMap<String, u64>>,
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
    pub doors_sent: u64,
    pub acks_sent: u64,
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
            doors_sent: g(&self.doors_sent),
            acks_sent: g(&self.acks_sent),
        }
    }

    fn count_failure(&self, stage: &str, e: &DeviceClientError) {
        let text: String = format!("{stage}: {e}").chars().take(120).collect();
        if let Ok(mut m) = self.failures.lock() {
            *m.entry(text).or_default() += 1;
        }
    }

    /// The failures counted so far, by stage and error.
    pub fn failures(&self) -> std::collections::BTreeMap<String, u64> {
        self.failures.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

impl Behaviour {
    /// The broker of the next connection attempt: the list in turn, one attempt after another.
    fn next_broker(&self, stats: &SimStats) -> &str {
        let brokers: Vec<&str> = self.broker.split(',').map(str::trim).filter(|b| !b.is_empty()).collect();
        let attempts = stats.attempts.fetch_add(1, Ordering::Relaxed);
        let turn = usize::try_from(attempts).unwrap_or(0) % brokers.len().max(1);
        brokers.get(turn).copied().unwrap_or(&self.broker)
    }
}

/// The MQTT keep-alive a simulated cabinet asks for unless told otherwise.
pub const KEEP_ALIVE: Duration = Duration::from_secs(60);

/// Behaviour of one simulated cabinet.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// One broker address, or several separated by commas: each connection attempt takes the
    /// next.
    pub broker: String,
    /// MQTT keep-alive: a node that stops answering (paused, cut off) is given up after 1.5×.
    pub keep_alive: Duration,
    pub drop_heartbeats: f64,
    pub bad_signatures: f64,
    pub disconnect_after: Option<Duration>,
    /// Door 0 held open from the start (the cabinet streams at the open-door cadence).
    pub door_open: bool,
    /// Load-cell channels of the cabinets `spawn_fleet` builds.
    pub lanes: usize,
    /// Stream weights this often (ms) while the door is open, instead of the cadence's period;
    /// 0 follows the cadence. Shared and read every period, so a benchmark can raise the rate
    /// once the whole fleet is connected.
    pub weight_every_ms: tokio::sync::watch::Receiver<u64>,
    /// Send the login but do not wait for an answer; follow this cadence. For a bare broker that
    /// answers nothing (benchmarks).
    pub without_login: Option<Cadence>,
}

/// The arguments' own checks, before anything starts.
fn check(args: &SimArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.drop_heartbeats) || !(0.0..=1.0).contains(&args.bad_signatures) {
        anyhow::bail!("--drop-heartbeats and --bad-signatures are probabilities between 0 and 1");
    }
    if !(args.noise_g >= 0.0 && args.creep_g_per_h >= 0.0 && args.noise_g.is_finite() && args.creep_g_per_h.is_finite())
    {
        anyhow::bail!("--noise-g and --creep-g-per-h are grams, zero or more");
    }
    if args.spikes_per_h.is_some_and(|s| !(0.0..=3600.0).contains(&s)) {
        anyhow::bail!("--spikes-per-h is wild readings an hour per cell, 0 to 3600");
    }
    if args.temp_swing_c.is_some_and(|s| !(0.0..=20.0).contains(&s)) {
        anyhow::bail!("--temp-swing-c is °C either side of the cabinet's middle temperature, 0 to 20");
    }
    if !(0.0..=1.0).contains(&args.shop.p_nothing) || !(0.0..=1.0).contains(&args.shop.p_move) {
        anyhow::bail!("--p-nothing and --p-move are probabilities between 0 and 1");
    }
    if !(1..=256).contains(&args.channels) {
        anyhow::bail!("--channels is a cabinet's load cells, 1 to 256");
    }
    if args.shop.setup && (args.shop.ops_user.is_none() || args.shop.ops_password.is_none()) {
        anyhow::bail!("--setup signs in as an operator: give --ops-user and --ops-password (or HEFT_OPS_PASSWORD)");
    }
    Ok(())
}

/// The fleet's cabinets as the arguments describe them (channels aside, which come per cabinet).
fn fleet_physical(args: &SimArgs) -> PhysicalOptions {
    let mut scale = ScaleOptions { creep_g_per_h: args.creep_g_per_h, ..args.cell.options(args.noise_g) };
    if let Some(spikes) = args.spikes_per_h {
        scale.spikes_per_h = spikes;
    }
    let climate = Thermal::of(args.cabinet_temp);
    let thermal = Thermal { swing_c: args.temp_swing_c.unwrap_or(climate.swing_c), ..climate };
    PhysicalOptions { channels: args.channels as u32, scale, thermal, ..PhysicalOptions::default() }
}

pub async fn run(args: SimArgs, config: Config) -> anyhow::Result<()> {
    check(&args)?;
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
        keep_alive: KEEP_ALIVE,
        drop_heartbeats: args.drop_heartbeats,
        bad_signatures: args.bad_signatures,
        disconnect_after: args.disconnect_after.map(Duration::from_secs),
        door_open: i < args.open_doors,
        lanes: args.channels,
        weight_every_ms: weight_every_ms.clone(),
        without_login: None,
    };
    let fleet = fleet_physical(&args);
    let physical = |b: &Behaviour| stocked(PhysicalOptions { channels: b.lanes as u32, ..fleet.clone() });
    // Shoppers and the setup act on the cabinets, so those need remotes (kept until the end:
    // a cabinet stops when its remote is dropped).
    let (tasks, remotes) = if args.shop.shoppers > 0 || args.shop.setup {
        spawn_remote_fleet(creds, behaviour, physical, stats.clone(), args.ramp_per_s).await.into_iter().unzip()
    } else {
        (spawn_fleet_with(creds, behaviour, physical, stats.clone(), args.ramp_per_s).await, Vec::new())
    };
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
    let stop = async {
        match args.duration {
            Some(s) => tokio::time::sleep(Duration::from_secs(s).saturating_sub(started.elapsed())).await,
            None => tokio::signal::ctrl_c().await?,
        }
        Ok::<(), anyhow::Error>(())
    };
    tokio::pin!(stop);
    let mut stopped = false;
    if args.shop.setup {
        tokio::select! {
            done = set_up_fleet(&args.shop, &remotes) => done?,
            r = &mut stop => { r?; stopped = true; }
        }
    }
    let mut summary = None;
    if !stopped && args.shop.shoppers > 0 {
        let run = ShopperRun {
            shoppers: args.shop.shoppers,
            visits: args.shop.purchases,
            heft_url: args.shop.heft_url.clone(),
            pay_sim_url: args.shop.pay_sim_url.clone(),
            opts: ShopperOptions {
                plan: PlanOptions { p_nothing: args.shop.p_nothing, p_move: args.shop.p_move },
                ..ShopperOptions::default()
            },
            json: args.json,
            seed: args.shop.seed,
        };
        let mut shoppers = Shoppers::start(remotes.clone(), run)?;
        {
            // Without a number of visits, shoppers go on until the run is stopped.
            let finished = async {
                match args.shop.purchases {
                    Some(_) => shoppers.finished().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = finished => {}
                r = &mut stop => r?,
            }
        }
        summary = Some(shoppers.stop());
    } else if !stopped {
        stop.await?;
    }
    report.abort();
    for t in tasks {
        t.abort();
    }
    drop(remotes);
    let sent = stats.frames_sent.load(Ordering::Relaxed);
    print_stats(&stats.line(started.elapsed(), sent as f64 / started.elapsed().as_secs_f64()), args.json);
    if let Some(summary) = summary {
        if args.json {
            println!("{}", serde_json::json!({ "summary": summary }));
        } else {
            println!("{}", summary.text());
        }
    }
    Ok(())
}

/// `--setup`: every cabinet made sellable through the ops API, a few at a time.
async fn set_up_fleet(args: &ShopArgs, remotes: &[CabinetRemote]) -> anyhow::Result<()> {
    use futures_util::StreamExt;
    let (Some(user), Some(password)) = (&args.ops_user, &args.ops_password) else {
        anyhow::bail!("--setup needs --ops-user and --ops-password");
    };
    let setup = FleetSetup::sign_in(&args.heft_url, user, password).await?;
    let catalogue = setup.catalogue().await?;
    let started = Instant::now();
    let results: Vec<Result<(), ShopperError>> = futures_util::stream::iter(remotes.iter().enumerate())
        .map(|(i, cab)| {
            let (setup, catalogue) = (&setup, &catalogue);
            async move {
                use rand::SeedableRng;
                let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed.unwrap_or_else(rand::random) ^ i as u64);
                setup.set_up(cab, catalogue, &mut rng).await
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let failed: Vec<String> = results.into_iter().filter_map(|r| r.err().map(|e| e.to_string())).collect();
    eprintln!(
        "setup: {} of {} cabinets configured, calibrated and stocked in {:.1} s",
        remotes.len() - failed.len(),
        remotes.len(),
        started.elapsed().as_secs_f64()
    );
    for e in failed.iter().take(5) {
        eprintln!("setup: {e}");
    }
    Ok(())
}

fn print_stats(line: &StatsLine, json: bool) {
    if json {
        println!("{}", serde_json::to_string(line).unwrap_or_default());
    } else {
        println!(
            "t={:>6.1}s connected={} logged_in={} frames={} ({:.0}/s) heartbeats={} dropped={} weights={} doors={} acks={} bad_sig={} refused={} relogin={} reconnects={} connect_failures={}",
            line.elapsed_s,
            line.connected,
            line.logged_in,
            line.frames_sent,
            line.frames_per_s,
            line.heartbeats_sent,
            line.heartbeats_dropped,
            line.weights_sent,
            line.doors_sent,
            line.acks_sent,
            line.bad_signatures_sent,
            line.logins_refused,
            line.relogin_requests,
            line.reconnects,
            line.connect_failures
        );
    }
}

/// Start one task per cabinet, `ramp_per_s` new connections per second. Each cabinet has
/// `lanes` channels with default load cells and random stock.
pub async fn spawn_fleet(
    creds: Vec<Credentials>,
    behaviour: impl Fn(usize) -> Behaviour,
    stats: Arc<SimStats>,
    ramp_per_s: u64,
) -> Vec<tokio::task::JoinHandle<()>> {
    let physical = |b: &Behaviour| stocked_cabinet(b.lanes, ScaleOptions::default());
    spawn_fleet_with(creds, behaviour, physical, stats, ramp_per_s).await
}

/// As [`spawn_fleet`], with the physical cabinet of each built by `physical`.
pub async fn spawn_fleet_with(
    creds: Vec<Credentials>,
    behaviour: impl Fn(usize) -> Behaviour,
    physical: impl Fn(&Behaviour) -> Physical,
    stats: Arc<SimStats>,
    ramp_per_s: u64,
) -> Vec<tokio::task::JoinHandle<()>> {
    spawn_paced(creds, ramp_per_s, |i, c| {
        let b = behaviour(i);
        let rig = Rig::new(physical(&b));
        tokio::spawn(run_cabinet(c, b, rig, stats.clone()))
    })
    .await
}

/// As [`spawn_fleet_with`], with a remote per cabinet, so shoppers (or anything else) can open
/// its doors and take its products. A cabinet stops when its remote is dropped.
pub async fn spawn_remote_fleet(
    creds: Vec<Credentials>,
    behaviour: impl Fn(usize) -> Behaviour,
    physical: impl Fn(&Behaviour) -> Physical,
    stats: Arc<SimStats>,
    ramp_per_s: u64,
) -> Vec<(tokio::task::JoinHandle<()>, CabinetRemote)> {
    spawn_paced(creds, ramp_per_s, |i, c| {
        let b = behaviour(i);
        let shared = Arc::new(Mutex::new(physical(&b)));
        let (requests, rx) = mpsc::unbounded_channel();
        let remote = CabinetRemote::new(c.sn.clone(), shared.clone(), requests);
        let rig = Rig::with_requests(shared, None, rx);
        (tokio::spawn(run_cabinet(c, b, rig, stats.clone())), remote)
    })
    .await
}

/// Start one cabinet after another, `ramp_per_s` a second.
async fn spawn_paced<T>(
    creds: Vec<Credentials>,
    ramp_per_s: u64,
    mut start: impl FnMut(usize, Credentials) -> T,
) -> Vec<T> {
    let pace = Duration::from_secs_f64(1.0 / ramp_per_s.max(1) as f64);
    let mut started = Vec::with_capacity(creds.len());
    let mut next = tokio::time::Instant::now();
    for (i, c) in creds.into_iter().enumerate() {
        started.push(start(i, c));
        next += pace;
        tokio::time::sleep_until(next).await;
    }
    started
}

/// A fleet cabinet: random load cells, random products on every channel.
pub fn stocked_cabinet(channels: usize, scale: ScaleOptions) -> Physical {
    stocked(PhysicalOptions { channels: channels as u32, scale, ..PhysicalOptions::default() })
}

/// As [`stocked_cabinet`], built as `opts` says.
pub fn stocked(opts: PhysicalOptions) -> Physical {
    let mut p = Physical::new(&opts);
    p.stock_randomly(&mut rand::thread_rng());
    p
}

/// Create (or re-key) the simulated cabinets in the configured database.
async fn provision_fleet(config: &Config, args: &SimArgs) -> anyhow::Result<Vec<Credentials>> {
    let db = crate::app::open_database(config).await?;
    let seal = crate::secrets::SealKey::load_or_create(&config.security.seal_key, &config.security.seal_key_file)?;
    let sns: Vec<String> = (args.first..args.first + args.cabinets).map(|i| format!("{}{i:05}", args.prefix)).collect();
    let kind = sim_cabinet_type(args.channels as i32, args.cabinet_temp);
    let creds = db
        .write(move |c| {
            // The type says what the simulated cabinets are, so they log in as what they are.
            crate::db::layout::put_cabinet_type(c, &kind)?;
            sns.iter()
                .map(|sn| {
                    let exists = crate::db::cabinets::find(c, sn)?.is_some();
                    provision::provision(c, &seal, sn, SIM_TYPE, exists)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    Ok(creds)
}

/// The cabinet type `heft simulate` provisions its cabinets as.
pub const SIM_TYPE: &str = "sim";

/// What a simulated cabinet is: `channels` load cells, kept like a fridge (it reports 4 ± 1.5 °C)
/// or at room temperature (22 ± 3 °C).
pub fn sim_cabinet_type(channels: i32, climate: Climate) -> crate::db::models::CabinetType {
    let now = crate::db::now();
    let (temp_min_c, temp_max_c) = match climate {
        Climate::Fridge => (2.0, 10.0),
        Climate::Ambient => (5.0, 35.0),
    };
    crate::db::models::CabinetType {
        name: SIM_TYPE.to_string(),
        sensor_channels: channels,
        temp_min_c,
        temp_max_c,
        temp_alert_after_s: 900,
        created_at: now,
        updated_at: now,
    }
}

/// The first boot of a simulated cabinet (less one): the clock, so it exceeds any boot an
/// earlier run used.
fn first_boot() -> u64 {
    chrono::Utc::now().timestamp_millis().max(1) as u64
}

/// What a simulated cabinet is made of besides its behaviour: the physical cabinet (shared with a
/// test's `SimCabinet` handle, which also sends requests) and its position module.
pub struct Rig {
    pub physical: Arc<Mutex<Physical>>,
    pub position: Option<(f64, f64)>,
    requests: Option<mpsc::UnboundedReceiver<Request>>,
}

impl Rig {
    pub fn new(physical: Physical) -> Rig {
        Rig { physical: Arc::new(Mutex::new(physical)), position: None, requests: None }
    }

    pub(crate) fn with_requests(
        physical: Arc<Mutex<Physical>>,
        position: Option<(f64, f64)>,
        requests: mpsc::UnboundedReceiver<Request>,
    ) -> Rig {
        Rig { physical, position, requests: Some(requests) }
    }

    fn physical(&self) -> MutexGuard<'_, Physical> {
        lock(&self.physical)
    }

    /// The next request of the handle; `None` once the handle is gone. A fleet cabinet has no
    /// handle and waits forever.
    async fn next_request(&mut self) -> Option<Request> {
        match &mut self.requests {
            Some(rx) => rx.recv().await,
            None => std::future::pending().await,
        }
    }

    /// Between connections: wait `wait` (forever with `None`), serving the handle meanwhile.
    async fn idle(&mut self, wait: Option<Duration>) -> Idle {
        let mut deadline = wait.map(|w| tokio::time::Instant::now() + w);
        loop {
            let sleep = async move {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => return Idle::Connect(None),
                req = self.next_request() => match req {
                    None | Some(Request::Stop) => return Idle::Stop,
                    Some(Request::Reconnect(reply)) => return Idle::Connect(Some(reply)),
                    Some(Request::Disconnect(reply)) => {
                        deadline = None;
                        let _ = reply.send(());
                    }
                    Some(Request::Door { door, open, reply }) => {
                        // The door moves even though nobody hears about it (it is owed to Heft
                        // after the next login).
                        let mut p = self.physical();
                        if open { p.open(door) } else { p.close(door) };
                        drop(p);
                        let _ = reply.send(Err(NOT_CONNECTED.into()));
                    }
                    Some(Request::Weights(reply)) => {
                        let _ = reply.send(Err(NOT_CONNECTED.into()));
                    }
                },
            }
        }
    }
}

const NOT_CONNECTED: &str = "the simulated cabinet is not connected";

enum Idle {
    Stop,
    /// Connect now; tell the handle how it went, if it asked.
    Connect(Option<oneshot::Sender<Result<(), String>>>),
}

/// How a session ended, when not by a failure.
enum End {
    /// `--disconnect-after`: reconnect after the shortest backoff.
    Planned,
    /// The handle disconnected: stay offline until it asks to reconnect.
    Offline,
    /// The handle stopped the cabinet, or is gone.
    Stop,
}

/// A connection already logged in (by `SimCabinet::start`, so that it can report failures).
pub(crate) struct Connected {
    pub dev: DeviceClient,
    pub cadence: Cadence,
    pub boot: u64,
}

/// The physical cabinet is locked only for plain state changes and readings, never across an
/// await; a panic while it was held cannot leave it half-changed, so a poisoned lock is used as is.
pub(crate) fn lock(p: &Mutex<Physical>) -> MutexGuard<'_, Physical> {
    p.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One simulated cabinet, forever: connect, log in, follow the cadence; on any failure back off
/// (1 s doubling to 60 s, with jitter; back to 1 s after a successful login) and start over with
/// the next boot.
pub async fn run_cabinet(creds: Credentials, b: Behaviour, rig: Rig, stats: Arc<SimStats>) {
    run_sessions(creds, b, rig, stats, None).await
}

pub(crate) async fn run_sessions(
    creds: Credentials,
    b: Behaviour,
    mut rig: Rig,
    stats: Arc<SimStats>,
    mut connected: Option<Connected>,
) {
    if b.door_open {
        rig.physical().open(0);
    }
    let mut boot = connected.as_ref().map_or_else(first_boot, |c| c.boot);
    let mut backoff = Duration::from_secs(1);
    let mut first = true;
    let mut reply: Option<oneshot::Sender<Result<(), String>>> = None;
    loop {
        if !first {
            stats.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        let opened = match connected.take() {
            Some(c) => Ok((c.dev, c.cadence)),
            None => {
                boot += 1;
                open_session(&creds, &b, &rig, &stats, &mut boot).await
            }
        };
        if let Some(reply) = reply.take() {
            let _ = reply.send(opened.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        }
        let ended = match opened {
            Ok((dev, cadence)) => {
                backoff = Duration::from_secs(1);
                run_session(dev, cadence, &b, &mut rig, &stats, &mut boot).await
            }
            Err(e) => Err(e),
        };
        let wait = match ended {
            Ok(End::Stop) => return,
            Ok(End::Offline) => None,
            Ok(End::Planned) => Some(Duration::from_secs(1)),
            Err(e) => {
                tracing::debug!(sn = %creds.sn, error = %e, "simulated cabinet session ended");
                Some(backoff)
            }
        };
        let jitter = rand::thread_rng().gen_range(0.5..1.5);
        match rig.idle(wait.map(|w| w.mul_f64(jitter))).await {
            Idle::Stop => return,
            Idle::Connect(r) => reply = r,
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// Connect and log in. From here until `run_session` ends, the connection counts in
/// `stats.connected`.
pub(crate) async fn open_session(
    creds: &Credentials,
    b: &Behaviour,
    rig: &Rig,
    stats: &SimStats,
    boot: &mut u64,
) -> Result<(DeviceClient, Cadence), DeviceClientError> {
    let opts = ConnectOptions { keep_alive: b.keep_alive, ..ConnectOptions::default() };
    let mut dev = match DeviceClient::connect(b.next_broker(stats), creds, *boot, opts).await {
        Ok(d) => d,
        Err(e) => {
            stats.connect_failures.fetch_add(1, Ordering::Relaxed);
            stats.count_failure("connect", &e);
            return Err(e);
        }
    };
    dev.position = rig.position;
    stats.connected.fetch_add(1, Ordering::Relaxed);
    let logged_in = match &b.without_login {
        Some(c) => {
            dev.boot = *boot;
            match dev.send_login().await {
                Ok(()) => {
                    stats.frames_sent.fetch_add(1, Ordering::Relaxed);
                    rig.physical().begin_boot(*boot, 0);
                    Ok(c.clone())
                }
                Err(e) => Err(e),
            }
        }
        None => login(&mut dev, rig, stats, boot).await,
    };
    match logged_in {
        Ok(cadence) => Ok((dev, cadence)),
        Err(e) => {
            stats.count_failure("login", &e);
            stats.connected.fetch_sub(1, Ordering::Relaxed);
            dev.disconnect().await;
            Err(e)
        }
    }
}

async fn login(
    dev: &mut DeviceClient,
    rig: &Rig,
    stats: &SimStats,
    boot: &mut u64,
) -> Result<Cadence, DeviceClientError> {
    for _ in 0..5 {
        dev.boot = *boot;
        let ack: LoginAck = dev.login(Duration::from_secs(10)).await?;
        stats.frames_sent.fetch_add(1, Ordering::Relaxed);
        if let (true, Some(cadence)) = (ack.ok, ack.cadence) {
            // Commands of this boot must come after the login_ack (protocol §7).
            rig.physical().begin_boot(*boot, ack.seq);
            return Ok(cadence);
        }
        // stale_boot: someone (an earlier run) used a higher boot; jump past it.
        stats.logins_refused.fetch_add(1, Ordering::Relaxed);
        *boot = (*boot).max(ack.last_boot.unwrap_or(ack.boot)) + 1;
    }
    Err(DeviceClientError::Connection("login refused five times".into()))
}

async fn run_session(
    mut dev: DeviceClient,
    mut cadence: Cadence,
    b: &Behaviour,
    rig: &mut Rig,
    stats: &SimStats,
    boot: &mut u64,
) -> Result<End, DeviceClientError> {
    stats.logged_in.fetch_add(1, Ordering::Relaxed);
    let result = follow_cadence(&mut dev, b, rig, stats, boot, &mut cadence).await;
    stats.logged_in.fetch_sub(1, Ordering::Relaxed);
    stats.connected.fetch_sub(1, Ordering::Relaxed);
    dev.disconnect().await;
    result
}

/// How often weights go out (protocol §8): fast while a door is open (or at `fast_ms`, when the
/// fleet set one), fast for a while after the last door closed, slowly otherwise.
fn weight_period(c: &Cadence, door_open: bool, fast_ms: u64, after_close: bool) -> Duration {
    match (door_open, fast_ms, after_close) {
        (true, 0, _) => Duration::from_millis(c.open_weight_ms),
        (true, ms, _) => Duration::from_millis(ms),
        (false, _, true) => Duration::from_millis(c.after_close_weight_ms),
        (false, _, false) => Duration::from_secs(c.closed_weight_s),
    }
}

async fn follow_cadence(
    dev: &mut DeviceClient,
    b: &Behaviour,
    rig: &mut Rig,
    stats: &SimStats,
    boot: &mut u64,
    cadence: &mut Cadence,
) -> Result<End, DeviceClientError> {
    let started = tokio::time::Instant::now();
    let mut rate = b.weight_every_ms.clone();
    let mut rate_open = true;
    // Until then the weights go out at the after-close period.
    let mut after_close_until: Option<tokio::time::Instant> = None;
    let period = |cadence: &Cadence, rig: &Rig, fast: u64, until: Option<tokio::time::Instant>| {
        let after_close = until.is_some_and(|t| tokio::time::Instant::now() < t);
        weight_period(cadence, rig.physical().any_open(), fast, after_close)
    };
    // A cabinet that only sends its login (benchmarks) does not know it was accepted.
    if b.without_login.is_none() && report_doors(dev, b, rig, stats).await? {
        after_close_until = Some(started + Duration::from_secs(cadence.after_close_s));
    }
    // Spread the fleet over the period instead of beating in lockstep.
    let phase = |period: Duration| period.mul_f64(rand::thread_rng().gen_range(0.0..1.0));
    let hb_period = Duration::from_secs(cadence.heartbeat_s);
    let mut next_hb = started + phase(hb_period);
    let mut next_weight = started + phase(period(cadence, rig, *rate.borrow(), after_close_until));
    loop {
        if b.disconnect_after.is_some_and(|limit| started.elapsed() >= limit) {
            return Ok(End::Planned);
        }
        let wake = next_hb.min(next_weight);
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            changed = rate.changed(), if rate_open => {
                match changed {
                    // A new rate takes effect now, not after the old period runs out.
                    Ok(()) => {
                        let p = period(cadence, rig, *rate.borrow_and_update(), after_close_until);
                        next_weight = tokio::time::Instant::now() + phase(p);
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
                if down.kind() == "login_ack" {
                    // A cabinet obeys only frames for its boot with an increasing seq.
                    if !rig.physical().accept_down(&down.m, *boot) {
                        stats.down_rejected.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if down.m.get("reason").and_then(|v| v.as_str()) == Some("login_required") {
                        stats.relogin_requests.fetch_add(1, Ordering::Relaxed);
                        *boot += 1;
                        *cadence = login(dev, rig, stats, boot).await?;
                        // Heft starts the new session with every door closed.
                        if report_doors(dev, b, rig, stats).await? {
                            let now = tokio::time::Instant::now();
                            after_close_until = Some(now + Duration::from_secs(cadence.after_close_s));
                            next_weight = now + period(cadence, rig, *rate.borrow(), after_close_until);
                        }
                    }
                    continue;
                }
                let ack = rig.physical().handle(down.kind(), &down.m, *boot);
                // `weigh`: weights at the after-close cadence from now, as after a close.
                if down.kind() == "weigh" && ack.as_ref().is_some_and(|a| a.ok) {
                    let now = tokio::time::Instant::now();
                    after_close_until = Some(now + Duration::from_secs(cadence.after_close_s));
                    next_weight = now;
                }
                if let Some(ack) = ack {
                    send(dev, b, stats, UpKind::Ack, serde_json::to_value(ack)?).await?;
                    stats.acks_sent.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
            req = rig.next_request() => {
                match req {
                    None | Some(Request::Stop) => return Ok(End::Stop),
                    Some(Request::Disconnect(reply)) => {
                        let _ = reply.send(());
                        return Ok(End::Offline);
                    }
                    Some(Request::Reconnect(reply)) => {
                        let _ = reply.send(Ok(()));
                    }
                    Some(Request::Weights(reply)) => {
                        let sent = send_weights(dev, b, rig, stats).await;
                        let _ = reply.send(sent.as_ref().map(|_| ()).map_err(|e| e.to_string()));
                        sent?;
                    }
                    Some(Request::Door { door, open, reply }) => {
                        let (changed, counts, any_open) = {
                            let mut p = rig.physical();
                            let changed = if open { p.open(door) } else { p.close(door) };
                            (changed, p.read_counts(), p.any_open())
                        };
                        // A door that was already where it was asked to be makes no event.
                        let sent = if changed {
                            let body = serde_json::json!({"door": door, "open": open, "counts": counts});
                            send(dev, b, stats, UpKind::Door, body).await
                        } else {
                            Ok(())
                        };
                        // Unsent, it stays owed and goes out after the next login.
                        if changed && sent.is_ok() {
                            rig.physical().door_reported(door);
                        }
                        let _ = reply.send(sent.as_ref().map(|_| ()).map_err(|e| e.to_string()));
                        sent?;
                        if changed {
                            stats.doors_sent.fetch_add(1, Ordering::Relaxed);
                            let now = tokio::time::Instant::now();
                            if !open && !any_open {
                                after_close_until = Some(now + Duration::from_secs(cadence.after_close_s));
                            }
                            // The door frame carried a reading; the next one follows at the new period.
                            next_weight = now + period(cadence, rig, *rate.borrow(), after_close_until);
                        }
                    }
                }
                continue;
            }
        }
        let now = tokio::time::Instant::now();
        if now >= next_hb {
            next_hb += hb_period;
            if rand::thread_rng().gen_bool(b.drop_heartbeats) {
                stats.heartbeats_dropped.fetch_add(1, Ordering::Relaxed);
            } else {
                // The temperature the cells feel, and the compressor that makes it.
                let (temp, heating) = {
                    let p = rig.physical();
                    let at = p.now();
                    (p.temp_c_at(at), p.heating_at(at))
                };
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
            next_weight += period(cadence, rig, *rate.borrow(), after_close_until);
            // After a stall, carry on from now rather than sending the missed frames in a burst.
            if next_weight < now {
                next_weight = now + period(cadence, rig, *rate.borrow(), after_close_until);
            }
            send_weights(dev, b, rig, stats).await?;
        }
    }
}

/// After a login, before anything else (protocol §8): an `up/door` frame for every door open now
/// and every door that moved while Heft could not hear it. Returns whether a door was reported
/// closed with none left open, so the after-close cadence follows.
async fn report_doors(
    dev: &mut DeviceClient,
    b: &Behaviour,
    rig: &Rig,
    stats: &SimStats,
) -> Result<bool, DeviceClientError> {
    let doors = rig.physical().doors_to_report();
    let mut closed = false;
    for (door, open) in doors {
        let counts = rig.physical().read_counts();
        send(dev, b, stats, UpKind::Door, serde_json::json!({"door": door, "open": open, "counts": counts})).await?;
        rig.physical().door_reported(door);
        stats.doors_sent.fetch_add(1, Ordering::Relaxed);
        closed |= !open;
    }
    Ok(closed && !rig.physical().any_open())
}

async fn send_weights(
    dev: &mut DeviceClient,
    b: &Behaviour,
    rig: &Rig,
    stats: &SimStats,
) -> Result<(), DeviceClientError> {
    let counts = rig.physical().read_counts();
    send(dev, b, stats, UpKind::Weight, serde_json::json!({ "counts": counts })).await?;
    stats.weights_sent.fetch_add(1, Ordering::Relaxed);
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimArgs,
    }

    fn args(extra: &[&str]) -> SimArgs {
        let argv = std::iter::once("simulate").chain(extra.iter().copied());
        <Cli as clap::Parser>::try_parse_from(argv).expect("parses").args
    }

    #[test]
    fn the_fleet_gets_realistic_cells_in_a_fridge_by_default() {
        let fleet = fleet_physical(&args(&[]));
        assert_eq!(fleet.scale, ScaleOptions::realistic(2.0));
        assert_eq!(fleet.thermal, Thermal::fridge());
        let fleet = fleet_physical(&args(&["--cell", "clean", "--creep-g-per-h", "2", "--spikes-per-h", "6"]));
        assert_eq!(fleet.scale, ScaleOptions { creep_g_per_h: 2.0, spikes_per_h: 6.0, ..ScaleOptions::clean(2.0) });
        let fleet = fleet_physical(&args(&["--cabinet-temp", "ambient", "--temp-swing-c", "1"]));
        assert_eq!(fleet.thermal, Thermal { swing_c: 1.0, ..Thermal::ambient() });
    }

    #[test]
    fn bad_cell_arguments_are_refused_with_a_reason() {
        assert!(check(&args(&["--spikes-per-h", "3600", "--temp-swing-c", "0"])).is_ok());
        for (bad, says) in [
            (["--spikes-per-h=-1", "--noise-g=2"], "--spikes-per-h"),
            (["--spikes-per-h=NaN", "--noise-g=2"], "--spikes-per-h"),
            (["--temp-swing-c=25", "--noise-g=2"], "--temp-swing-c"),
            (["--creep-g-per-h=-2", "--noise-g=2"], "--creep-g-per-h"),
        ] {
            let e = check(&args(&bad)).expect_err("refused");
            assert!(e.to_string().contains(says), "{bad:?}: {e}");
        }
        assert!(<Cli as clap::Parser>::try_parse_from(["simulate", "--cell", "perfect"]).is_err());
    }
}
