//! The world the faults strike: a node and the payment platforms as processes of their own on a
//! production stage (`heft::sim::stage`), a few simulated cabinets set up as an operator would,
//! and a shopper at each.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::NaiveDateTime;
use heft::pay::Channel;
use heft::sim::handle::{CabinetRemote, SimCabinet, SimCabinetOptions};
use heft::sim::shopper::{FleetSetup, PlanOptions, ShopperClient, ShopperError, ShopperOptions, Truth, account_bound};
use heft::sim::stage::{Ports, Process, Program, Services, Stage, StageOptions};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

use crate::common;

pub const OPERATOR: &str = "chaos-admin";
pub const PASSWORD: &str = "chaos password, long enough";

/// Settings over the shipped config.toml, each for a reason (RELIABILITY.md):
/// the money messages' later rounds are 10 s doubling to 20 s instead of 5 min to 1 h, so a
/// charge or a release that outlived its own backoff in an outage is tried again within the
/// run rather than minutes after it. Everything else — cadence, timeouts, backoff, liveness — is
/// as shipped.
pub const SETTINGS: [(&str, &str); 2] =
    [("HEFT__ORDERS__CAPTURE_RETRY_S", "10"), ("HEFT__ORDERS__CAPTURE_RETRY_MAX_S", "20")];

/// One order as the database has it.
#[derive(Debug, Clone)]
pub struct OrderRow {
    pub id: i64,
    pub sn: String,
    pub status: String,
    pub out_order_no: String,
    pub total_fen: Option<i64>,
    pub paid_fen: Option<i64>,
    pub debt_fen: i64,
    pub cancel_reason: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

pub struct World {
    pub stage: Stage,
    pub node: Process,
    pub pay_sim: Process,
    pub db: heft::db::Db,
    pub cabs: Vec<SimCabinet>,
    pub setup: FleetSetup,
    pub ops: Ops,
    pub client: ShopperClient,
    pub http: reqwest::Client,
    /// Every visit of the run, by order.
    pub truths: BTreeMap<i64, Truth>,
    /// Visits that ended in an error, in a few words each.
    pub errors: Vec<String>,
    /// When the run began (UTC), for the bills' days.
    pub began: chrono::DateTime<chrono::Utc>,
    _on_panic: OnPanic,
    _dir: tempfile::TempDir,
}

impl World {
    /// The stage, the platforms, the node, and `cabinets` cabinets made sellable through the ops
    /// API (products, configuration, calibration, each door stocked in a restock session).
    pub async fn start(cabinets: usize) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let stage = Stage::new(StageOptions {
            binary: env!("CARGO_BIN_EXE_heft").into(),
            config_file: concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml").into(),
            dir: dir.path().to_path_buf(),
            ports: Ports { mqtt: common::free_port(), http: common::free_port(), pay_sim: common::free_port() },
            services: Some(Services::local()),
            pay_sim_state: true,
            extra: SETTINGS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        })
        .expect("stage");
        let creds = stage.provision("CHS-", cabinets, "fridge", (OPERATOR, PASSWORD)).await.expect("provision");
        let pay_sim = stage.spawn(Program::PaySim, true).expect("heft pay-sim");
        stage.pay_sim_up(Duration::from_secs(60)).await.expect("the platforms answer");
        let node = stage.spawn(Program::Node, true).expect("heft serve");
        stage.node_up(Duration::from_secs(90)).await.expect("the node answers");
        let db = heft::app::open_database(&stage.config).await.expect("database");
        // The simulated cabinets have 16 load-cell channels; the type says so, as an operator
        // would make it say for their hardware.
        let ops = Ops::sign_in(&stage.http_base()).await;
        let kind = json!({"sensor_channels": 16, "temp_min_c": 2.0, "temp_max_c": 10.0, "temp_alert_after_s": 900});
        let (status, v) = ops.call(reqwest::Method::PUT, "/ops/cabinet-types/fridge", Some(kind)).await;
        assert_eq!(status, 200, "cabinet type: {v}");
        let mut cabs = Vec::new();
        for (i, c) in creds.into_iter().enumerate() {
            let opts = SimCabinetOptions { noise_g: 2.0, seed: Some(4200 + i as u64), ..Default::default() };
            cabs.push(SimCabinet::start(c, &stage.broker(), opts).await.expect("cabinet logs in"));
        }
        let setup = FleetSetup::sign_in(&stage.http_base(), OPERATOR, PASSWORD).await.expect("operator signs in");
        let catalogue = setup.catalogue().await.expect("catalogue");
        let set_up = cabs.iter().enumerate().map(|(i, cab)| {
            let (setup, catalogue) = (&setup, &catalogue);
            async move {
                let mut rng = StdRng::seed_from_u64(i as u64);
                setup.set_up(cab.remote(), catalogue, &mut rng).await.expect("cabinet set up");
            }
        });
        futures_util::future::join_all(set_up).await;
        let client = ShopperClient::new(&stage.http_base(), &stage.pay_sim_base()).expect("shopper client");
        World {
            node,
            pay_sim,
            db,
            cabs,
            setup,
            ops,
            client,
            http: reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("client"),
            truths: BTreeMap::new(),
            errors: Vec::new(),
            began: chrono::Utc::now(),
            _on_panic: OnPanic::new(&stage),
            stage,
            _dir: dir,
        }
    }

    /// Every order so far, oldest first.
    pub async fn orders(&self) -> Vec<OrderRow> {
        use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl, SelectableHelper};
        use heft::db::models::Order;
        use heft::db::schema::orders;
        let rows: Vec<Order> = self
            .db
            .run(|c| {
                orders::table
                    .order(orders::id.asc())
                    .select(Order::as_select())
                    .load(c)
                    .map_err(heft::db::DbError::from)
            })
            .await
            .expect("orders");
        rows.into_iter()
            .map(|o| OrderRow {
                id: o.id,
                sn: o.sn,
                status: o.status.as_str().to_string(),
                out_order_no: o.out_order_no,
                total_fen: o.total_fen.map(|f| f.0),
                paid_fen: o.paid_fen.map(|f| f.0),
                debt_fen: o.debt_fen.0,
                cancel_reason: o.cancel_reason,
                created_at: o.created_at,
                updated_at: o.updated_at,
            })
            .collect()
    }

    /// The newest order's id (0 for none): the orders of what follows are above it.
    pub async fn last_order_id(&self) -> i64 {
        self.orders().await.last().map_or(0, |o| o.id)
    }

    /// A restocker refills every door with a lane at half its capacity or less, so the shoppers
    /// of the next experiment find something to take. All cabinets at once.
    pub async fn refill_low(&self) {
        let jobs = self.cabs.iter().flat_map(|cab| [1, 2].map(|door| (cab.remote(), door))).map(|(cab, door)| {
            let setup = &self.setup;
            async move {
                let lanes = heft::sim::shopper::shelf(cab, door).unwrap_or_default();
                if lanes.iter().any(|l| l.units <= 6) {
                    setup.refill(cab, door).await.unwrap_or_else(|e| panic!("refill {} door {door}: {e}", cab.sn()));
                }
            }
        });
        futures_util::future::join_all(jobs).await;
    }

    /// Shoppers at the cabinets of `indices`, buying until stopped.
    pub fn crowd(&self, indices: &[usize], seed: u64) -> Crowd {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = indices
            .iter()
            .map(|&i| {
                let cab = self.cabs[i].remote().clone();
                tokio::spawn(shopper(i, self.client.clone(), cab, stop.clone(), seed + i as u64))
            })
            .collect();
        Crowd { stop, tasks }
    }

    /// Keep what a crowd did.
    pub fn record(&mut self, visits: Vec<Result<Truth, String>>) {
        for v in visits {
            match v {
                Ok(t) => {
                    self.truths.insert(t.order_id, t);
                }
                Err(e) => self.errors.push(e),
            }
        }
    }

    /// The simulator's `/sim/…` routes.
    pub async fn sim_post(&self, path: &str, body: Value) -> Value {
        let res =
            self.http.post(format!("{}{path}", self.stage.pay_sim_base())).json(&body).send().await.expect("simulator");
        assert!(res.status().is_success(), "POST {path}: {}", res.status());
        res.json().await.expect("json")
    }

    pub async fn sim_get(&self, path: &str) -> Value {
        let res = self.http.get(format!("{}{path}", self.stage.pay_sim_base())).send().await.expect("simulator");
        assert!(res.status().is_success(), "GET {path}: {}", res.status());
        res.json().await.expect("json")
    }

    /// The node's and the platforms' warnings and errors so far: how many, and each distinct
    /// message once (timestamps and ids stripped), for the anomalies of the run.
    pub fn log_summary(&self) -> String {
        let mut out = String::new();
        for program in [Program::Node, Program::PaySim] {
            let text = std::fs::read_to_string(self.stage.log_path(program)).unwrap_or_default();
            let mut seen: BTreeMap<String, usize> = BTreeMap::new();
            for line in text.lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")) {
                // `2026-12-03T17:00:00.000000Z  WARN target: message key=value…`: level, target
                // and message, and the topic of a message, without the fields that differ from
                // line to line.
                let rest = line.split_once('Z').map_or(line, |(_, r)| r);
                let words: Vec<&str> = rest.split_whitespace().collect();
                let mut key = words.iter().take_while(|w| !w.contains('=')).copied().collect::<Vec<_>>().join(" ");
                if let Some(topic) = words.iter().find(|w| w.starts_with("topic=")) {
                    key = format!("{key} {topic}");
                }
                *seen.entry(key).or_default() += 1;
            }
            out.push_str(&format!("{}: {} warnings and errors\n", program.name(), seen.values().sum::<usize>()));
            for (message, n) in &seen {
                out.push_str(&format!("  {n} × {message}\n"));
            }
        }
        out
    }

    /// Stop everything and take the stage down.
    pub async fn finish(self) {
        for cab in self.cabs {
            cab.stop().await;
        }
        let World { mut node, mut pay_sim, stage, .. } = self;
        node.kill();
        pay_sim.kill();
        if let Err(e) = stage.remove().await {
            eprintln!("chaos: the run's storage was not all removed: {e}");
        }
    }
}

/// On a failure: the last lines of the node's and the platforms' logs, and the run's RabbitMQ
/// queues and Redis keys removed (the database goes with the stage).
struct OnPanic {
    logs: Vec<std::path::PathBuf>,
    rabbit: Option<(String, String)>,
    redis: Option<(String, String)>,
}

impl OnPanic {
    fn new(stage: &Stage) -> OnPanic {
        OnPanic {
            logs: [Program::Node, Program::PaySim].map(|p| stage.log_path(p)).to_vec(),
            rabbit: stage.services().map(|s| (s.rabbit_url.clone(), stage.config.messages.prefix.clone())),
            redis: stage.services().map(|s| (s.redis_url.clone(), stage.config.cache.prefix.clone())),
        }
    }
}

impl Drop for OnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for path in &self.logs {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("--- {} (last 60 of {} lines)", path.display(), lines.len());
            for l in &lines[lines.len().saturating_sub(60)..] {
                eprintln!("{l}");
            }
        }
        if let Some((url, prefix)) = &self.rabbit {
            common::delete_rabbit_prefix(url, prefix);
        }
        if let Some((url, prefix)) = self.redis.clone() {
            // A runtime of its own: this may run inside the test's.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                rt.block_on(heft::sim::stage::wipe_redis_prefix(&url, &prefix)).ok()
            })
            .join();
        }
    }
}

/// An operator's token and the ops API.
pub struct Ops {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Ops {
    pub async fn sign_in(base: &str) -> Ops {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("client");
        let body = json!({"username": OPERATOR, "password": PASSWORD});
        let res = http.post(format!("{base}/ops/auth/login")).json(&body).send().await.expect("login");
        let v: Value = res.json().await.expect("json");
        let token = v["token"].as_str().expect("token").to_string();
        Ops { http, base: base.to_string(), token }
    }

    /// (status, body; null when not JSON); 0 when the node did not answer.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        match req.send().await {
            Ok(res) => {
                let status = res.status().as_u16();
                (status, res.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, v) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    /// Book stock by lane code, with each lane's channel.
    pub async fn book(&self, sn: &str) -> BTreeMap<String, (u32, i64)> {
        let c = self.get(&format!("/ops/cabinets/{sn}/config")).await;
        let mut out = BTreeMap::new();
        for l in c["doors"].as_array().into_iter().flatten().flat_map(|d| d["lanes"].as_array().into_iter().flatten()) {
            let code = l["code"].as_str().unwrap_or_default().to_string();
            let channel = l["channel"].as_u64().and_then(|c| u32::try_from(c).ok()).unwrap_or(u32::MAX);
            out.insert(code, (channel, l["stock"].as_i64().unwrap_or(-1)));
        }
        out
    }

    /// Open alerts naming `subject` (an order's number).
    pub async fn alerts_naming(&self, subject: &str) -> Vec<Value> {
        let v = self.get("/ops/alerts?open=true&limit=500").await;
        v["alerts"].as_array().into_iter().flatten().filter(|a| a["subject"] == subject).cloned().collect()
    }
}

/// Shoppers buying until stopped.
pub struct Crowd {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Result<Truth, String>>>>,
}

impl Crowd {
    /// Stop after the visits under way; what every shopper did.
    pub async fn stop(self) -> Vec<Result<Truth, String>> {
        self.stop.store(true, Ordering::SeqCst);
        let mut out = Vec::new();
        for t in self.tasks {
            out.extend(t.await.expect("shopper task"));
        }
        out
    }
}

/// What went wrong with a visit, in a few words: where, and the status or refusal.
fn error_kind(e: &ShopperError) -> String {
    match e {
        ShopperError::Http { what, .. } => format!("{what}: no answer"),
        ShopperError::Status { what, status, .. } => format!("{what}: {status}"),
        ShopperError::Refused { status, code, .. } => format!("scan: {status} {code}"),
        other => other.to_string(),
    }
}

/// How the chaos suite's shoppers behave: the shipped cadence; nothing put back on another lane
/// (a moved item would sit on a lane as foreign weight, and the next refill would have to tidy
/// it); and they stop following an order after 20 s (the suite follows every order to its end
/// itself, from the database).
pub fn shopper_options() -> ShopperOptions {
    ShopperOptions {
        plan: PlanOptions { p_nothing: 0.1, p_move: 0.0 },
        unlock_timeout: Duration::from_secs(20),
        order_timeout: Duration::from_secs(20),
        ..ShopperOptions::default()
    }
}

/// One shopper at one cabinet, doors taken in turn, visit after visit until `stop`. A refusal
/// that stays with the account (an open order left behind, a debt) makes it a new shopper.
async fn shopper(
    i: usize,
    client: ShopperClient,
    cab: CabinetRemote,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> Vec<Result<Truth, String>> {
    let channel = if i.is_multiple_of(2) { Channel::Wechat } else { Channel::Alipay };
    let opts = shopper_options();
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut out, mut identity, mut door, mut token) = (Vec::new(), 0u32, 1u32, None);
    while !stop.load(Ordering::SeqCst) {
        let t = match &token {
            Some(t) => Clone::clone(t),
            None => match client.sign_in(channel, &format!("chaos-{seed}-{i}-{identity}")).await {
                Ok(t) => token.insert(t).clone(),
                Err(e) => {
                    out.push(Err(format!("sign-in: {}", error_kind(&e))));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        match client.shop(&t, &cab, door, &opts, &mut rng).await {
            Ok(truth) => out.push(Ok(truth)),
            Err(e) => {
                if e.refusal().is_some_and(account_bound) {
                    identity += 1;
                    token = None;
                }
                out.push(Err(error_kind(&e)));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        door = 3 - door;
    }
    out
}
