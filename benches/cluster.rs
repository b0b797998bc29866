//! Several nodes, one fleet: routing to a remote owner, takeover after kill -9, and purchases per
//! second for the cluster against one node. See BENCHMARKS.md ("The cluster").
//!
//! The nodes are `heft serve` (the release binary) as their own processes in the production
//! profile, behind HAProxy (`deploy/haproxy.local.cfg.tmpl`) for MQTT and HTTP, with the shipped
//! cadence and cluster settings (leases of 15 s renewed every 5 s). This process is everything
//! around them: the payment platforms, an idle fleet streaming heartbeats and weights at the
//! shipped cadence, and shop cabinets each with a shopper visiting again and again.
//!
//! ```sh
//! cargo bench --bench cluster                                   # 3 nodes, 9,000 + 30 cabinets
//! cargo bench --bench cluster -- --nodes 1 --cabinets 3000      # one node, for the comparison
//! HEFT_BENCH_KEEP=1 cargo bench --bench cluster                  # keep the nodes' and HAProxy's logs
//! ```

mod common;

use common::{cpu_seconds, free_port, raise_fd_limit};

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use heft::pay::Channel;
use heft::sim::handle::{SimCabinet, SimCabinetOptions};
use heft::sim::shopper::{FleetSetup, ShopperClient, ShopperOptions, Truth};
use heft::sim::stage::{Ports, Process, Services, Stage, StageOptions};
use heft::sim::{Behaviour, SimStats};
use rand::SeedableRng;
use rand::rngs::StdRng;

const OPERATOR: &str = "bench-admin";
const PASSWORD: &str = "bench password, long enough";

struct Args {
    nodes: usize,
    /// Idle cabinets (heartbeats and closed-door weights at the shipped cadence).
    cabinets: usize,
    /// Shop cabinets, each with its shopper.
    shoppers: usize,
    seconds: u64,
    /// Requests routed to a remote owner, and as many to the owner itself.
    routes: usize,
}

fn parse_args() -> Args {
    let mut a = Args { nodes: 3, cabinets: 9000, shoppers: 30, seconds: 60, routes: 2000 };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = || it.next().and_then(|v| v.parse::<usize>().ok()).unwrap_or_else(|| panic!("{arg} N"));
        match arg.as_str() {
            "--nodes" => a.nodes = num(),
            "--cabinets" => a.cabinets = num(),
            "--shoppers" => a.shoppers = num(),
            "--seconds" => a.seconds = num() as u64,
            "--routes" => a.routes = num(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(a.nodes == 1 || a.nodes == 3, "--nodes 1 or 3 (HAProxy's template has three)");
    a
}

fn main() {
    raise_fd_limit();
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, run(args));
}

struct Node {
    id: String,
    http: u16,
    process: Process,
}

async fn run(args: Args) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (lb_http, lb_mqtt) = (free_port(), free_port());
    let stage = Stage::new(StageOptions {
        binary: env!("CARGO_BIN_EXE_heft").into(),
        config_file: concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml").into(),
        dir: dir.path().to_path_buf(),
        ports: Ports { mqtt: lb_mqtt, http: lb_http, pay_sim: free_port() },
        services: Some(Services::local()),
        pay_sim_state: false,
        extra: vec![
            ("HEFT__PAYMENTS__NOTIFY_BASE_URL".into(), format!("http://127.0.0.1:{lb_http}")),
            ("HEFT__MQTT__MAX_CONNECTIONS".into(), (args.cabinets + args.shoppers + 100).to_string()),
            ("HEFT__LOG__FILTER".into(), "warn,heft=info".into()),
        ],
    })
    .expect("stage");
    let config = &stage.config;
    let sim = heft::pay::sim::start(&config.pay_sim, &config.wechat, &config.alipay).await.expect("platforms");
    let creds = stage
        .provision("CL-", args.cabinets + args.shoppers, heft::sim::SIM_TYPE, (OPERATOR, PASSWORD))
        .await
        .expect("provision");
    let (idle, shop) = creds.split_at(args.cabinets);
    // Nodes on their own ports; HAProxy on the stage's (one node: it takes them itself).
    let mut nodes = Vec::new();
    let mut ports = Vec::new();
    for i in 1..=args.nodes {
        let (http, mqtt) = match args.nodes {
            1 => (lb_http, lb_mqtt),
            _ => (free_port(), free_port()),
        };
        let id = format!("node-{i}");
        let process = stage.spawn_node(&id, http, mqtt).expect("heft serve");
        heft::sim::stage::wait_http("heft serve", &format!("http://127.0.0.1:{http}/readyz"), Duration::from_secs(60))
            .await
            .expect("node up");
        ports.push((http, mqtt));
        nodes.push(Node { id, http, process });
    }
    let _haproxy = (args.nodes == 3)
        .then(|| heft::sim::stage::spawn_haproxy(dir.path(), lb_http, lb_mqtt, &ports).expect("haproxy"));
    let base = stage.http_base();
    heft::sim::stage::wait_http("haproxy", &format!("{base}/readyz"), Duration::from_secs(30)).await.expect("lb up");

    // The idle fleet, through the balancer.
    let t0 = Instant::now();
    let stats = Arc::new(SimStats::default());
    let (_rate, weight_every_ms) = tokio::sync::watch::channel(0);
    let broker = stage.broker();
    let behaviour = move |_: usize| Behaviour {
        broker: broker.clone(),
        keep_alive: heft::sim::KEEP_ALIVE,
        drop_heartbeats: 0.0,
        bad_signatures: 0.0,
        disconnect_after: None,
        door_open: false,
        // As many as the cabinet type has: a reading with fewer raises an alert at every login.
        lanes: SimCabinetOptions::default().channels as usize,
        weight_every_ms: weight_every_ms.clone(),
        without_login: None,
    };
    let _fleet = heft::sim::spawn_fleet(idle.to_vec(), behaviour, stats.clone(), 500).await;
    let total = args.cabinets as f64;
    wait_until("idle fleet owned", Duration::from_secs(600), || async {
        owned(&nodes).await.values().sum::<f64>() >= total
    })
    .await;
    println!("idle fleet: {} cabinets logged in and owned in {:.1} s", args.cabinets, t0.elapsed().as_secs_f64());
    println!("owned per node: {:?}", owned(&nodes).await);

    // Shop cabinets, set up by an operator through the balancer.
    let setup = FleetSetup::sign_in(&base, OPERATOR, PASSWORD).await.expect("operator");
    setup.describe_type(heft::sim::SIM_TYPE, SimCabinetOptions::default().channels).await.expect("type");
    let catalogue = setup.catalogue().await.expect("catalogue");
    let mut rng = StdRng::seed_from_u64(1);
    let mut cabs = Vec::new();
    for (i, c) in shop.iter().enumerate() {
        let opts = SimCabinetOptions { noise_g: 2.0, creep_g_per_h: 0.5, seed: Some(i as u64), ..Default::default() };
        let cab = SimCabinet::start(c.clone(), &stage.broker(), opts).await.expect("shop cabinet");
        match setup.set_up(cab.remote(), &catalogue, &mut rng).await {
            Ok(()) => cabs.push(cab),
            Err(e) => eprintln!("a shop cabinet could not be set up: {e}"),
        }
    }

    if args.nodes == 3 {
        routing(&args, &stage, &nodes, idle).await;
    }
    let client = ShopperClient::new(&base, &stage.pay_sim_base()).expect("client");
    let truths = shop_for(&client, &cabs, Duration::from_secs(args.seconds), &nodes).await;
    report(&args, &truths, args.seconds as f64);
    if args.nodes == 3 {
        takeover(&stage, &mut nodes, &creds, &stats).await;
    }
    for cab in cabs {
        cab.stop().await;
    }
    sim.stop().await;
    drop(nodes);
    if let Err(e) = stage.remove().await {
        eprintln!("the run's storage was not all removed: {e}");
    }
    // HEFT_BENCH_KEEP=1 keeps the nodes' and HAProxy's logs, and the run's config.
    if std::env::var_os("HEFT_BENCH_KEEP").is_some() {
        println!("logs kept in {}", dir.keep().display());
    }
}

/// `heft_cabinets_owned` of each node still running.
async fn owned(nodes: &[Node]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for n in nodes {
        if let Some(v) = metric(n.http, "heft_cabinets_owned").await {
            out.insert(n.id.clone(), v);
        }
    }
    out
}

/// Every series of a metric on one node: its labels (empty for none) and value.
async fn series(http: u16, name: &str) -> Vec<(String, f64)> {
    let Ok(res) = reqwest::get(format!("http://127.0.0.1:{http}/metrics")).await else { return Vec::new() };
    let text = res.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(k, v)| Some((k[name.len()..].to_string(), v.parse().ok()?))))
        .collect()
}

async fn metric(http: u16, name: &str) -> Option<f64> {
    series(http, name).await.first().map(|(_, v)| *v)
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Live weights of idle cabinets asked of a node that does not own them (routed), and of the
/// owner itself, one request at a time while the fleet streams.
async fn routing(args: &Args, stage: &Stage, nodes: &[Node], idle: &[heft::provision::Credentials]) {
    let cache = heft::app::open_cache(&stage.config).await.expect("cache");
    let http = reqwest::Client::new();
    let (status, body) = login(&http, &stage.http_base()).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("token").to_string();
    let port_of: HashMap<&str, u16> = nodes.iter().map(|n| (n.id.as_str(), n.http)).collect();
    let (mut remote, mut local) = (Vec::new(), Vec::new());
    for c in idle.iter().cycle().take(args.routes) {
        let Ok(Some((owner, _))) = cache.owner(&c.sn).await else { continue };
        let Some(&own) = port_of.get(owner.as_str()) else { continue };
        let other = nodes.iter().find(|n| n.id != owner).map(|n| n.http).expect("another node");
        for (port, out) in [(other, &mut remote), (own, &mut local)] {
            let t = Instant::now();
            let res = http
                .get(format!("http://127.0.0.1:{port}/ops/cabinets/{}/weights", c.sn))
                .bearer_auth(&token)
                .send()
                .await
                .expect("weights");
            assert!(res.status().is_success(), "weights of {}: {}", c.sn, res.status());
            out.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    for v in [&mut remote, &mut local] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "routing (GET live weights, n={}): to a remote owner p50={:.1} ms p99={:.1} ms max={:.1} ms; to the owner itself p50={:.1} ms p99={:.1} ms",
        remote.len(),
        quantile(&remote, 0.5),
        quantile(&remote, 0.99),
        remote.last().copied().unwrap_or(0.0),
        quantile(&local, 0.5),
        quantile(&local, 0.99),
    );
}

async fn login(http: &reqwest::Client, base: &str) -> (u16, serde_json::Value) {
    let res = http
        .post(format!("{base}/ops/auth/login"))
        .json(&serde_json::json!({"username": OPERATOR, "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    (res.status().as_u16(), res.json().await.unwrap_or_default())
}

/// One shopper per shop cabinet, visit after visit, for `seconds`.
async fn shop_for(client: &ShopperClient, cabs: &[SimCabinet], seconds: Duration, nodes: &[Node]) -> Vec<Truth> {
    let until = Instant::now() + seconds;
    let opts = ShopperOptions::default();
    let shoppers = cabs.iter().enumerate().map(|(i, cab)| {
        let opts = &opts;
        async move {
            let channel = if i % 2 == 0 { Channel::Wechat } else { Channel::Alipay };
            let token =
                client.sign_in(channel, &format!("bench-{i}-{}", rand::random::<u32>())).await.expect("sign in");
            let mut rng = StdRng::seed_from_u64(100 + i as u64);
            let mut out = Vec::new();
            while Instant::now() < until {
                match client.shop(&token, cab, 1 + (out.len() % 2) as u32, opts, &mut rng).await {
                    Ok(t) => out.push(t),
                    Err(e) => eprintln!("visit failed: {e}"),
                }
            }
            out
        }
    });
    let pids: Vec<u32> = nodes.iter().filter_map(|n| n.process.pid()).collect();
    let cpu0: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    let truths: Vec<Truth> = futures_util::future::join_all(shoppers).await.into_iter().flatten().collect();
    let cpu: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>() - cpu0;
    println!("nodes' CPU while shopping: {cpu:.1} s ({:.1} ms per visit)", 1000.0 * cpu / truths.len().max(1) as f64);
    truths
}

fn report(args: &Args, truths: &[Truth], seconds: f64) {
    let complete =
        truths.iter().filter(|t| matches!(t.final_status.as_str(), "paid" | "no_purchase" | "review")).count();
    let wrong = truths.iter().filter(|t| t.matches() == Some(false)).count();
    let mut closed: Vec<f64> = truths.iter().filter_map(|t| t.timings.closed_to_settled_ms).collect();
    closed.sort_by(f64::total_cmp);
    println!(
        "nodes={} idle={} shop={} visits={} complete={} purchases_per_s={:.2} wrong_charges={} closed→paying p50={:.0} ms p99={:.0} ms",
        args.nodes,
        args.cabinets,
        args.shoppers,
        truths.len(),
        complete,
        complete as f64 / seconds,
        wrong,
        quantile(&closed, 0.5),
        quantile(&closed, 0.99),
    );
}

/// kill -9 of the node owning the most cabinets: until every one of them is owned by another
/// node (logged in there, its state taken up).
async fn takeover(stage: &Stage, nodes: &mut [Node], fleet: &[heft::provision::Credentials], stats: &SimStats) {
    let before = stats.line(Duration::ZERO, 0.0);
    let failures_before = stats.failures();
    let cache = heft::app::open_cache(&stage.config).await.expect("cache");
    let counts = owned(nodes).await;
    let (victim, n) = counts.iter().max_by(|a, b| a.1.total_cmp(b.1)).map(|(k, v)| (k.clone(), *v)).expect("nodes");
    let mut theirs = Vec::new();
    for c in fleet {
        if cache.owner(&c.sn).await.ok().flatten().is_some_and(|(o, _)| o == victim) {
            theirs.push(c.sn.clone());
        }
    }
    let i = nodes.iter().position(|x| x.id == victim).expect("victim");
    let killed = Instant::now();
    nodes[i].process.kill();
    let mut left = theirs.clone();
    let mut half = None;
    while !left.is_empty() {
        // Taken over: owned by another node, and that node's login done, the session taken up
        // included (the cabinet's cached facts name the node only after that).
        let facts = cache.cabinet_get_many(&left).await.unwrap_or_default();
        let mut still = Vec::new();
        for (sn, f) in left.into_iter().zip(facts.into_iter().map(Some).chain(std::iter::repeat(None))) {
            let logged_in = f.and_then(|f| f.get("node").cloned()).is_some_and(|n| n != victim);
            let owned = logged_in && matches!(cache.owner(&sn).await, Ok(Some((o, _))) if o != victim);
            if !owned {
                still.push(sn);
            }
        }
        left = still;
        if half.is_none() && left.len() * 2 <= theirs.len() {
            half = Some(killed.elapsed());
        }
        assert!(killed.elapsed() < Duration::from_secs(600), "takeover did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = stats.line(Duration::ZERO, 0.0);
    for (why, n) in stats.failures() {
        let n = n - failures_before.get(&why).copied().unwrap_or(0);
        if n > 0 {
            println!("  {n:>6} × {why}");
        }
    }
    for n in nodes.iter().filter(|n| n.id != victim) {
        println!("{} MQTT connects by result: {:?}", n.id, series(n.http, "heft_mqtt_auth_total").await);
    }
    println!(
        "takeover's fleet: connect failures {}, logins refused or unanswered {}, reconnects {}",
        after.connect_failures - before.connect_failures,
        after.logins_refused - before.logins_refused,
        after.reconnects - before.reconnects
    );
    println!(
        "takeover: kill -9 of {victim} ({n:.0} cabinets owned, {} of the fleet's): half taken over after {:.1} s, all after {:.1} s",
        theirs.len(),
        half.unwrap_or_default().as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
}
