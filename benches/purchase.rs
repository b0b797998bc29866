//! Purchases end to end on one node: door closed → `paying` latency, and sustained complete
//! purchases per second. See BENCHMARKS.md ("Purchases").
//!
//! The node is `heft serve` (the release binary) as its own process, in the production profile
//! (PostgreSQL, Redis, RabbitMQ on this machine) or the embedded one, at the shipped cadence
//! (weights every 300 ms while a door is open and for 8 s after it closes; stable = 3 readings).
//! This process is everything around it: the payment platforms (the simulator), the cabinets
//! (simulated, real MQTT, σ = 2 g load cells) and the shoppers (one per cabinet, visit after
//! visit: scan, confirm on the platform, open, take, close, follow the order to its end).
//!
//! ```sh
//! cargo bench --bench purchase                                  # production, 20 cabinets, 60 s
//! cargo bench --bench purchase -- --cabinets 60 --seconds 90    # more load
//! cargo bench --bench purchase -- --profile embedded
//! cargo bench --bench purchase -- --cell realistic --noise-g 5 --creep-g-per-h 2 --visits 1000
//! ```

mod common;

use common::{cpu_seconds, free_port};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use heft::pay::Channel;
use heft::sim::handle::{SimCabinet, SimCabinetOptions};
use heft::sim::shopper::{FleetSetup, ShopperClient, ShopperOptions, Truth};
use heft::sim::stage::{Ports, Program, Services, Stage, StageOptions};
use rand::SeedableRng;
use rand::rngs::StdRng;

const OPERATOR: &str = "bench-admin";
const PASSWORD: &str = "bench password, long enough";

struct Args {
    cabinets: usize,
    seconds: u64,
    production: bool,
    /// Stop after this many visits instead (each shopper stops once the fleet has made them).
    visits: Option<usize>,
    noise_g: f64,
    creep_g_per_h: f64,
    realistic: bool,
    /// Shoppers take between these many ms to confirm the payment.
    confirm_ms: (u64, u64),
}

fn parse_args() -> Args {
    let mut args = Args {
        cabinets: 20,
        seconds: 60,
        production: true,
        visits: None,
        noise_g: 2.0,
        creep_g_per_h: 0.5,
        realistic: false,
        confirm_ms: (0, 0),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--cabinets" => args.cabinets = it.next().and_then(|v| v.parse().ok()).expect("--cabinets N"),
            "--seconds" => args.seconds = it.next().and_then(|v| v.parse().ok()).expect("--seconds N"),
            "--profile" => args.production = it.next().as_deref() == Some("production"),
            "--visits" => args.visits = it.next().and_then(|v| v.parse().ok()),
            "--noise-g" => args.noise_g = it.next().and_then(|v| v.parse().ok()).expect("--noise-g grams"),
            "--creep-g-per-h" => {
                args.creep_g_per_h = it.next().and_then(|v| v.parse().ok()).expect("--creep-g-per-h grams")
            }
            "--cell" => args.realistic = it.next().as_deref() == Some("realistic"),
            "--confirm-ms" => {
                let v = it.next().unwrap_or_default();
                let (low, high) = v.split_once(',').unwrap_or((&v, &v));
                args.confirm_ms =
                    (low.parse().expect("--confirm-ms LOW,HIGH"), high.parse().expect("--confirm-ms LOW,HIGH"));
            }
            // cargo bench passes --bench; anything else is a mistake worth saying.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, run(args));
}

async fn run(args: Args) {
    let dir = tempfile::tempdir().expect("temp dir");
    let stage = Stage::new(StageOptions {
        binary: env!("CARGO_BIN_EXE_heft").into(),
        config_file: concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml").into(),
        dir: dir.path().to_path_buf(),
        ports: Ports { mqtt: free_port(), http: free_port(), pay_sim: free_port() },
        services: args.production.then(Services::local),
        pay_sim_state: false,
        extra: Vec::new(),
    })
    .expect("stage");
    // The platforms run in this process, as they would elsewhere.
    let config = &stage.config;
    let sim = heft::pay::sim::start(&config.pay_sim, &config.wechat, &config.alipay).await.expect("payment simulator");
    // The cabinets and an operator before the node starts (migrations run here).
    let creds =
        stage.provision("PUR-", args.cabinets, heft::sim::SIM_TYPE, (OPERATOR, PASSWORD)).await.expect("provision");
    let node = stage.spawn(Program::Node, false).expect("spawn heft serve");
    let started = Instant::now();
    stage.node_up(Duration::from_secs(60)).await.expect("heft starts");
    let heft_base = stage.http_base();

    // The fleet: cabinets with σ = 2 g cells, configured, calibrated and stocked by an operator,
    // their type described first.
    let setup = FleetSetup::sign_in(&heft_base, OPERATOR, PASSWORD).await.expect("operator signs in");
    let cells = SimCabinetOptions::default().channels;
    setup.describe_type(heft::sim::SIM_TYPE, cells).await.expect("cabinet type");
    let broker = stage.broker();
    let mut cabs = Vec::new();
    for (i, c) in creds.into_iter().enumerate() {
        let opts = SimCabinetOptions {
            noise_g: args.noise_g,
            creep_g_per_h: args.creep_g_per_h,
            realistic: args.realistic,
            seed: Some(i as u64),
            ..Default::default()
        };
        cabs.push(SimCabinet::start(c, &broker, opts).await.expect("cabinet logs in"));
    }
    let catalogue = setup.catalogue().await.expect("catalogue");
    let mut rng = StdRng::seed_from_u64(1);
    let mut ready = Vec::new();
    for cab in cabs {
        match setup.set_up(cab.remote(), &catalogue, &mut rng).await {
            Ok(()) => ready.push(cab),
            Err(e) => eprintln!("a cabinet could not be set up: {e}"),
        }
    }
    let cabs = ready;
    println!(
        "fleet set up without a person: {}/{} cabinets in {:.0} s (cells: {}, σ {} g, drift {} g/h)",
        cabs.len(),
        args.cabinets,
        started.elapsed().as_secs_f64(),
        if args.realistic { "realistic" } else { "clean" },
        args.noise_g,
        args.creep_g_per_h
    );
    eprintln!("shopping for {} s; shoppers confirm in {}–{} ms", args.seconds, args.confirm_ms.0, args.confirm_ms.1);

    // One shopper per cabinet, visit after visit, until the time is up.
    let client = ShopperClient::new(&heft_base, &stage.pay_sim_base()).expect("client");
    let (low, high) = args.confirm_ms;
    let opts = ShopperOptions {
        confirm_pause: (Duration::from_millis(low), Duration::from_millis(high)),
        ..ShopperOptions::default()
    };
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let enough = |done: &std::sync::atomic::AtomicUsize| {
        args.visits.is_some_and(|v| done.load(std::sync::atomic::Ordering::Relaxed) >= v)
    };
    let shoppers = cabs.iter().enumerate().map(|(i, cab)| {
        let (client, opts, done, enough) = (&client, &opts, &done, &enough);
        async move {
            let channel = if i % 2 == 0 { Channel::Wechat } else { Channel::Alipay };
            let uid = format!("bench-{i}-{}", rand::random::<u32>());
            let token = client.sign_in(channel, &uid).await.expect("sign in");
            let mut rng = StdRng::seed_from_u64(100 + i as u64);
            let mut out = Vec::new();
            while (args.visits.is_some() || Instant::now() < until) && !enough(done) {
                match client.shop(&token, cab, 1 + (out.len() % 2) as u32, opts, &mut rng).await {
                    Ok(t) => {
                        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        out.push(t)
                    }
                    Err(e) => eprintln!("visit failed: {e}"),
                }
            }
            out
        }
    });
    let t0 = Instant::now();
    let pid = node.pid().expect("the node runs");
    let cpu0 = cpu_seconds(pid);
    let truths: Vec<Truth> = futures_util::future::join_all(shoppers).await.into_iter().flatten().collect();
    let elapsed = t0.elapsed().as_secs_f64();
    let node_cpu = cpu_seconds(pid) - cpu0;
    report(&args, &truths, elapsed);
    println!(
        "node CPU while shopping: {node_cpu:.1} s = {:.0} % of one core, {:.1} ms per visit",
        100.0 * node_cpu / elapsed,
        1000.0 * node_cpu / truths.len().max(1) as f64
    );
    print_reviews(config).await;
    for cab in cabs {
        cab.stop().await;
    }
    sim.stop().await;
    drop(node);
    if let Err(e) = stage.remove().await {
        eprintln!("the run's storage was not all removed: {e}");
    }
}

/// Why the orders in review went there (the settlement's reasons), one line each.
async fn print_reviews(config: &heft::config::Config) {
    let Ok(db) = heft::app::open_database(config).await else { return };
    let cases = db
        .run(|c| heft::db::reviews::cases(c, Some(heft::domain::review::CaseStatus::Open), 100))
        .await
        .unwrap_or_default();
    for case in cases {
        let reasons: serde_json::Value = serde_json::from_str(&case.reasons).unwrap_or_default();
        println!("review: order {} {}", case.order_id, reasons["reasons"]);
        if std::env::var("BENCH_TRACE").is_ok() {
            let id = case.order_id;
            let lane = reasons["reasons"][0]["lane"].as_str().unwrap_or_default().to_string();
            let (o, trace) = db
                .run(move |c| {
                    let o = heft::db::orders::find(c, id)?.expect("order");
                    let t = heft::db::weight_log::for_session(c, o.session_id.unwrap_or(0))?;
                    Ok::<_, heft::db::DbError>((o, t))
                })
                .await
                .expect("trace");
            println!("  before {:?} after {:?}", o.before_g, o.after_g);
            for r in trace {
                let g: serde_json::Value = serde_json::from_str(r.grams.as_deref().unwrap_or("{}")).unwrap_or_default();
                println!("  {} {} {}", r.recorded_at, r.kind, g[&lane]);
            }
        }
    }
}

fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn report(args: &Args, truths: &[Truth], elapsed: f64) {
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    for t in truths {
        *by_status.entry(t.final_status.as_str()).or_default() += 1;
    }
    let complete =
        truths.iter().filter(|t| matches!(t.final_status.as_str(), "paid" | "no_purchase" | "review")).count();
    let mismatches = truths.iter().filter(|t| t.matches() == Some(false)).count();
    let mut closed_to_paying: Vec<u64> =
        truths.iter().filter_map(|t| t.timings.closed_to_settled_ms).map(|ms| ms.round() as u64).collect();
    closed_to_paying.sort_unstable();
    let mut closed_to_final: Vec<u64> =
        truths.iter().filter_map(|t| t.timings.closed_to_final_ms).map(|ms| ms.round() as u64).collect();
    closed_to_final.sort_unstable();
    println!(
        "profile={} cabinets={} seconds={:.0} visits={} complete={} purchases_per_s={:.2} mismatches={} reviews={} by_status={:?}",
        if args.production { "production" } else { "embedded" },
        args.cabinets,
        elapsed,
        truths.len(),
        complete,
        complete as f64 / elapsed,
        mismatches,
        by_status.get("review").copied().unwrap_or(0),
        by_status,
    );
    let exact = truths.iter().filter(|t| t.matches() == Some(true)).count();
    for t in truths.iter().filter(|t| t.matches() == Some(false)) {
        println!("wrong charge: {}", serde_json::to_string(t).unwrap_or_default());
    }
    let reviews = by_status.get("review").copied().unwrap_or(0);
    let pct = |n: usize| 100.0 * n as f64 / truths.len().max(1) as f64;
    println!(
        "charged exactly right: {exact}/{} ({:.2} %); reviews {reviews} ({:.2} %); wrong charges outside review: {mismatches}",
        truths.len(),
        pct(exact),
        pct(reviews),
    );
    println!(
        "door closed → paying (or no_purchase/review) ms: p50={} p99={} max={} (n={}); door closed → final ms: p50={} p99={}",
        quantile(&closed_to_paying, 0.5),
        quantile(&closed_to_paying, 0.99),
        closed_to_paying.last().copied().unwrap_or(0),
        closed_to_paying.len(),
        quantile(&closed_to_final, 0.5),
        quantile(&closed_to_final, 0.99),
    );
}
