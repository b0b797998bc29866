//! Three `heft serve` processes behind HAProxy (`deploy/haproxy.local.cfg.tmpl`) on one machine,
//! in the production profile, with simulated cabinets connecting through HAProxy's MQTT port and
//! shoppers and operators through its HTTP port, as a deployment runs (DESIGN.md "Cluster").
//!
//! One test, in phases that build on each other (a cluster takes seconds to start):
//! 1. purchases go through whichever node the shopper's requests land on;
//! 2. kill -9 of a node mid-purchase: its cabinets reconnect to the others and their purchases
//!    end there, charged once, with stock as the cabinets hold it;
//! 3. SIGSTOP of a node past its leases, then SIGCONT: its cabinets and a purchase at an open door
//!    have moved, and it writes nothing for them, stopping its stale actors;
//! 4. kill -9 of the nightly scheduler's leader: another node runs the night's jobs, once.
//!
//! Ignored by default (a minute or two, and HAProxy must be installed); `.ci/run` runs it:
//! `cargo test --test cluster_nodes -- --ignored --nocapture`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{EVENTUALLY, Profile, Storage, TEST_PASSWORD, eventually, free_port};
use heft::config::Config;
use heft::domain::operator::Role;
use heft::domain::reconcile::Job;
use heft::provision::Credentials;
use heft::sim::handle::{SimCabinet, SimCabinetOptions};
use serde_json::{Value, json};

/// Leases and checks short enough that each phase takes seconds.
const LEASE_TTL_MS: u64 = 3000;
/// A cabinet gives a silent node up after 1.5 × this (MQTT keep-alive).
const KEEP_ALIVE: Duration = Duration::from_secs(2);
const NODES: usize = 3;
const CABINETS: usize = 6;
/// name, barcode, unit_g, price_fen; lanes A1 (channel 0) and A2 (channel 1) hold 10 each.
const PRODUCTS: [(&str, &str, f64, i64); 2] =
    [("Cola 330 ml", "6901234567892", 355.0, 350), ("Chips 70 g", "6901234567908", 78.0, 600)];
const STOCK: u32 = 10;

struct Node {
    id: String,
    http: u16,
    mqtt: u16,
    child: Option<Child>,
}

struct Cluster {
    _storage: Storage,
    config: Config,
    env: Vec<(String, String)>,
    _sim: heft::pay::sim::RunningSim,
    nodes: Vec<Node>,
    _haproxy: heft::sim::stage::Process,
    lb_http: String,
    lb_mqtt: String,
    db: heft::db::Db,
    cache: std::sync::Arc<dyn heft::cache::Cache>,
    http: reqwest::Client,
    dir: tempfile::TempDir,
    admin: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // What each process said, for whoever reads the failed run.
            let logs = self.nodes.iter().map(|n| format!("{}.log", n.id)).chain(["haproxy.log".to_string()]);
            for name in logs {
                let text = std::fs::read_to_string(self.dir.path().join(&name)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!("--- {name} (last {} lines)", tail.len());
                tail.iter().rev().for_each(|l| eprintln!("{l}"));
            }
        }
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = Command::new("kill").args(["-CONT", &c.id().to_string()]).status();
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().map(|s| s.success());
    assert_eq!(ok.ok(), Some(true), "kill {sig}");
}

impl Cluster {
    async fn start() -> Option<Cluster> {
        if Command::new("haproxy").arg("-v").output().is_err() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "haproxy is not installed (CI=true)");
            eprintln!("SKIPPED: cluster_nodes needs haproxy");
            return None;
        }
        let storage = common::storage(Profile::Production)?;
        let lease = LEASE_TTL_MS.to_string();
        let renew = (LEASE_TTL_MS / 4).to_string();
        let (lb_http_port, lb_mqtt_port) = (free_port(), free_port());
        let notify = format!("http://127.0.0.1:{lb_http_port}");
        let extra = [
            ("HEFT__CLUSTER__LEASE_TTL_MS", lease.as_str()),
            ("HEFT__CLUSTER__RENEW_EVERY_MS", renew.as_str()),
            ("HEFT__PROTOCOL__OPEN_WEIGHT_MS", "100"),
            ("HEFT__PROTOCOL__AFTER_CLOSE_WEIGHT_MS", "100"),
            ("HEFT__PAYMENTS__NOTIFY_BASE_URL", notify.as_str()),
            ("HEFT__LIVENESS__CHECK_S", "1"),
            ("HEFT__LIVENESS__OFFLINE_AFTER_S", "10"),
            ("HEFT__LIVENESS__WINDOW_S", "10"),
            ("HEFT__LOG__FILTER", "warn,heft=info"),
        ];
        let env = common::env_vars(&storage, 0, &extra);
        let config =
            Config::from_toml_and_env(common::SHIPPED_CONFIG, std::path::Path::new("config.toml"), env.clone())
                .expect("config");
        let sim = heft::pay::sim::start(&config.pay_sim, &config.wechat, &config.alipay).await.expect("platforms");
        let db = heft::app::open_database(&config).await.expect("database migrated");
        let cache = heft::app::open_cache(&config).await.expect("cache");
        let nodes = (1..=NODES)
            .map(|i| Node { id: format!("node-{i}"), http: free_port(), mqtt: free_port(), child: None })
            .collect::<Vec<_>>();
        let dir = tempfile::tempdir().expect("tempdir");
        eprintln!("cluster logs in {}", dir.path().display());
        let ports: Vec<(u16, u16)> = nodes.iter().map(|n| (n.http, n.mqtt)).collect();
        let haproxy = heft::sim::stage::spawn_haproxy(dir.path(), lb_http_port, lb_mqtt_port, &ports).expect("haproxy");
        let mut c = Cluster {
            _storage: storage,
            config,
            env,
            _sim: sim,
            nodes,
            _haproxy: haproxy,
            lb_http: format!("http://127.0.0.1:{lb_http_port}"),
            lb_mqtt: format!("127.0.0.1:{lb_mqtt_port}"),
            db,
            cache,
            http: reqwest::Client::new(),
            dir,
            admin: String::new(),
        };
        for i in 0..NODES {
            c.start_node(i, &[]).await;
        }
        heft::admin::create_operator(&c.db, "admin", TEST_PASSWORD.into(), Role::Admin, 8).await.expect("admin");
        let (status, body) =
            c.req("POST", "/ops/auth/login", "", Some(json!({"username": "admin", "password": TEST_PASSWORD}))).await;
        assert_eq!(status, 200, "{body}");
        c.admin = body["token"].as_str().expect("token").to_string();
        Some(c)
    }

    fn log_of(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("{}.log", self.nodes[i].id))
    }

    /// Start node `i` (again), with `extra` variables, and wait until it is ready.
    async fn start_node(&mut self, i: usize, extra: &[(String, String)]) {
        let n = &self.nodes[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_of(i)).expect("log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_heft"));
        cmd.arg("serve").current_dir(env!("CARGO_MANIFEST_DIR")).envs(self.env.iter().cloned()).envs([
            ("HEFT__NODE__ID".to_string(), n.id.clone()),
            ("HEFT__HTTP__LISTEN".to_string(), format!("127.0.0.1:{}", n.http)),
            ("HEFT__MQTT__LISTEN".to_string(), format!("127.0.0.1:{}", n.mqtt)),
        ]);
        cmd.envs(extra.iter().cloned()).stdout(Stdio::null()).stderr(log);
        let child = cmd.spawn().expect("heft serve starts");
        self.nodes[i].child = Some(child);
        let url = format!("http://127.0.0.1:{}/readyz", self.nodes[i].http);
        let http = self.http.clone();
        eventually(&format!("node {i} ready"), || async {
            let ok = http.get(&url).send().await.ok().filter(|r| r.status().is_success());
            ok.map(|_| ())
        })
        .await;
    }

    fn child(&self, i: usize) -> &Child {
        self.nodes[i].child.as_ref().expect("node running")
    }

    fn kill9(&mut self, i: usize) {
        let mut c = self.nodes[i].child.take().expect("node running");
        c.kill().expect("kill -9");
        let _ = c.wait();
    }

    async fn terminate(&mut self, i: usize) {
        let mut c = self.nodes[i].child.take().expect("node running");
        signal(&c, "-TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Through HAProxy, as a client outside would.
    async fn req(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        self.req_to(&self.lb_http, method, path, token, body).await
    }

    async fn req_to(&self, base: &str, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut r = self.http.request(m, format!("{base}{path}")).bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let res = r.send().await.expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.req(method, path, &self.admin, body).await;
        assert!((200..300).contains(&status), "{method} {path}: {status} {v}");
        v
    }

    /// One node's metric, read from it directly (`None` while it does not answer).
    async fn metric(&self, i: usize, name: &str) -> Option<f64> {
        let url = format!("http://127.0.0.1:{}/metrics", self.nodes[i].http);
        // A fresh connection: one kept from before a pause may have been closed meanwhile.
        let text = reqwest::Client::new().get(url).send().await.ok()?.text().await.ok()?;
        let values = text.lines().filter(|l| l.starts_with(name));
        Some(values.filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok())).sum())
    }

    async fn owner(&self, sn: &str) -> Option<String> {
        self.cache.owner(sn).await.expect("owner").map(|o| o.0)
    }

    fn provision(&self, sn: &str) -> Credentials {
        let seal =
            heft::secrets::SealKey::load_or_create(&self.config.security.seal_key, &self.config.security.seal_key_file)
                .expect("seal key");
        let mut conn = self.db.write_conn().expect("db");
        heft::provision::provision(&mut conn, &seal, sn, "fridge", false).expect("provision")
    }

    async fn products(&self) -> Vec<i64> {
        let mut ids = Vec::new();
        for (name, barcode, unit_g, price) in PRODUCTS {
            let body =
                json!({"name": name, "barcode": barcode, "unit_g": unit_g, "price_fen": price, "tolerance_g": 8.0});
            ids.push(self.ok("POST", "/ops/products", Some(body)).await["id"].as_i64().expect("product id"));
        }
        ids
    }

    /// A cabinet through HAProxy: configured, calibrated and stocked, ready to sell.
    async fn ready_cabinet(&self, sn: &str, products: &[i64], seed: u64) -> SimCabinet {
        let opts = SimCabinetOptions {
            noise_g: 1.0,
            creep_g_per_h: 0.0,
            seed: Some(seed),
            channels: 32,
            keep_alive: KEEP_ALIVE,
            ..Default::default()
        };
        let cab = SimCabinet::start(self.provision(sn), &self.lb_mqtt, opts).await.expect("logs in");
        let lanes: Vec<Value> = products
            .iter()
            .enumerate()
            .map(|(i, id)| {
                json!({"code": format!("A{}", i + 1), "name": format!("A{}", i + 1), "channel": i, "capacity": 20,
                       "threshold": 2, "product_id": id, "stock": STOCK})
            })
            .collect();
        let layout = json!({"lat": 31.2304, "lng": 121.4737, "doors": [{"door": 1, "lanes": lanes}]});
        self.ok("PUT", &format!("/ops/cabinets/{sn}/config"), Some(layout)).await;
        eventually("configuration and labels acked", || async {
            let c = self.ok("GET", &format!("/ops/cabinets/{sn}/config"), None).await;
            (c["config_version"] == c["config_acked_version"] && c["tags_version"] == c["tags_acked_version"])
                .then_some(())
        })
        .await;
        self.ok("POST", &format!("/ops/cabinets/{sn}/calibration"), Some(json!({"door": 1}))).await;
        self.ok("POST", &format!("/ops/cabinets/{sn}/calibration/tare"), None).await;
        let span = json!({"standard_g": 500.0});
        self.ok("POST", &format!("/ops/cabinets/{sn}/calibration/span"), Some(span.clone())).await;
        self.ok("POST", &format!("/ops/cabinets/{sn}/calibration/verify"), Some(span)).await;
        for (i, (_, _, unit_g, _)) in PRODUCTS.iter().enumerate() {
            cab.stock(i as u32, *unit_g, STOCK).expect("stock");
        }
        for _ in 0..5 {
            cab.send_weights_now().await.expect("weights");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eventually("sellable", || async {
            (self.ok("GET", &format!("/ops/cabinets/{sn}"), None).await["sellable"] == true).then_some(())
        })
        .await;
        cab
    }

    async fn shopper(&self, uid: &str) -> String {
        let sim = format!("http://{}", self.config.pay_sim.listen);
        let res: Value = self
            .http
            .post(format!("{sim}/sim/wechat/login"))
            .json(&json!({"openid": uid}))
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("json");
        let code = res["code"].as_str().expect("code");
        let (status, v) = self.req("POST", "/api/v1/auth/wechat", "", Some(json!({"code": code}))).await;
        assert_eq!(status, 200, "{v}");
        v["token"].as_str().expect("token").to_string()
    }

    /// Scan, confirm on the platform's page, and open the door once it unlocks: the order's id.
    async fn open_visit(&self, cab: &SimCabinet, token: &str, uid: &str) -> i64 {
        let body = json!({"sn": cab.sn(), "door": 1, "channel": "wechat"});
        let (status, scanned) = self.req("POST", "/api/v1/orders", token, Some(body)).await;
        assert_eq!(status, 201, "scan: {scanned}");
        let id = scanned["order"]["id"].as_i64().expect("id");
        let sim = format!("http://{}", self.config.pay_sim.listen);
        let confirm = json!({"package": scanned["confirm"]["extraData"]["package"], "openid": uid});
        let res = self.http.post(format!("{sim}/sim/wechat/confirm")).json(&confirm).send().await.expect("confirm");
        assert!(res.status().is_success(), "confirm");
        assert!(cab.wait_unlocked(1, EVENTUALLY).await, "open reached {}", cab.sn());
        cab.open_door(1).await.expect("door opens");
        self.order_in(token, id, "door_open").await;
        id
    }

    async fn order_in(&self, token: &str, id: i64, status: &str) -> Value {
        eventually(&format!("order {id} {status}"), || async {
            let (_, o) = self.req("GET", &format!("/api/v1/orders/{id}"), token, None).await;
            (o["status"] == status).then_some(o)
        })
        .await
    }

    async fn book_stock(&self, sn: &str) -> Vec<i64> {
        let c = self.ok("GET", &format!("/ops/cabinets/{sn}/config"), None).await;
        c["doors"][0]["lanes"].as_array().expect("lanes").iter().map(|l| l["stock"].as_i64().unwrap_or(-1)).collect()
    }
}

/// A purchase at `cab` taking one cola and one chips, up to the closed door.
async fn buy(c: &Cluster, cab: &SimCabinet, uid: &str) -> (String, i64) {
    let token = c.shopper(uid).await;
    let id = c.open_visit(cab, &token, uid).await;
    cab.take(0, 1).expect("cola");
    cab.take(1, 1).expect("chips");
    tokio::time::sleep(Duration::from_millis(300)).await;
    cab.close_door(1).await.expect("door closes");
    (token, id)
}

const BASKET_FEN: i64 = 350 + 600;

#[actix_rt::test]
#[ignore = "three heft processes behind HAProxy; .ci/run runs it"]
async fn three_nodes_behind_haproxy() {
    let Some(mut c) = Cluster::start().await else { return };
    let products = c.products().await;
    let mut cabs = Vec::new();
    for i in 0..CABINETS {
        cabs.push(c.ready_cabinet(&format!("CAB-N{i}"), &products, 100 + i as u64).await);
    }
    let mut sold: BTreeMap<String, u32> = BTreeMap::new();

    // 1. Purchases through whichever node each request lands on.
    let owners: BTreeSet<String> = {
        let mut o = BTreeSet::new();
        for cab in &cabs {
            o.insert(c.owner(cab.sn()).await.expect("owned"));
        }
        o
    };
    assert!(owners.len() >= 2, "HAProxy spread the cabinets: {owners:?}");
    for (i, cab) in cabs.iter().enumerate() {
        let (token, id) = buy(&c, cab, &format!("o-phase1-{i}")).await;
        let o = c.order_in(&token, id, "paid").await;
        assert_eq!(o["paid_fen"], BASKET_FEN, "{o}");
        *sold.entry(cab.sn().to_string()).or_default() += 1;
    }
    let mut routed = 0.0;
    for i in 0..NODES {
        routed += c.metric(i, "heft_route_requests_total{outcome=\"ok\"}").await.unwrap_or(0.0);
    }
    assert!(routed > 0.0, "some requests were answered by another node");

    // 2. kill -9 of a node while shoppers stand at its cabinets' open doors.
    let victim = c.nodes.iter().position(|n| owners.contains(&n.id)).expect("a node owning cabinets");
    let victim_id = c.nodes[victim].id.clone();
    let mut open = Vec::new();
    for (i, cab) in cabs.iter().enumerate() {
        if c.owner(cab.sn()).await.as_deref() == Some(victim_id.as_str()) {
            let uid = format!("o-phase2-{i}");
            let token = c.shopper(&uid).await;
            let id = c.open_visit(cab, &token, &uid).await;
            cab.take(0, 1).expect("cola");
            cab.take(1, 1).expect("chips");
            open.push((i, token, id));
        }
    }
    assert!(!open.is_empty());
    let killed = Instant::now();
    c.kill9(victim);
    for (i, _, _) in &open {
        let sn = cabs[*i].sn().to_string();
        eventually(&format!("{sn} owned elsewhere"), || async {
            c.owner(&sn).await.filter(|o| *o != victim_id).map(|_| ())
        })
        .await;
    }
    eprintln!("phase 2: {} cabinets owned elsewhere {:?} after kill -9", open.len(), killed.elapsed());
    for (i, token, id) in &open {
        cabs[*i].close_door(1).await.expect("door closes");
        let o = c.order_in(token, *id, "paid").await;
        assert_eq!(o["paid_fen"], BASKET_FEN, "{o}");
        *sold.entry(cabs[*i].sn().to_string()).or_default() += 1;
    }
    c.start_node(victim, &[]).await;

    // 3. SIGSTOP a node past its leases, with a purchase at an open door, then SIGCONT.
    let paused = eventually("a node owning a cabinet", || async {
        for cab in &cabs {
            if let Some(o) = c.owner(cab.sn()).await {
                return c.nodes.iter().position(|n| n.id == o);
            }
        }
        None
    })
    .await;
    let paused_id = c.nodes[paused].id.clone();
    let mut held = None;
    for (i, cab) in cabs.iter().enumerate() {
        if c.owner(cab.sn()).await.as_deref() == Some(paused_id.as_str()) {
            let uid = format!("o-phase3-{i}");
            let token = c.shopper(&uid).await;
            let id = c.open_visit(cab, &token, &uid).await;
            cab.take(1, 2).expect("two chips");
            held = Some((i, token, id));
            break;
        }
    }
    let (held_i, held_token, held_id) = held.expect("a purchase on the paused node");
    signal(c.child(paused), "-STOP");
    let stopped_at = chrono::Utc::now().naive_utc();
    let sn = cabs[held_i].sn().to_string();
    eventually("the cabinet moved off the paused node", || async {
        c.owner(&sn).await.filter(|o| *o != paused_id).map(|_| ())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(LEASE_TTL_MS)).await;
    signal(c.child(paused), "-CONT");
    eventually("the paused node let its leases go", || async {
        let lost = c.metric(paused, "heft_leases_lost_total").await?;
        let owned = c.metric(paused, "heft_cabinets_owned").await?;
        (lost > 0.0 && owned == 0.0).then_some(())
    })
    .await;
    cabs[held_i].close_door(1).await.expect("door closes");
    let o = c.order_in(&held_token, held_id, "paid").await;
    assert_eq!(o["paid_fen"], 1200, "{o}");
    // Nothing written under the paused node's name since it stopped.
    let (pid, at) = (paused_id.clone(), stopped_at);
    let written =
        c.db.run(move |conn| {
            use diesel::prelude::*;
            use heft::db::schema::{cabinets, sessions};
            let s: i64 = sessions::table
                .filter(sessions::node_id.eq(&pid))
                .filter(sessions::started_at.gt(at))
                .count()
                .get_result(conn)?;
            let cab: i64 = cabinets::table
                .filter(cabinets::node_id.eq(&pid))
                .filter(cabinets::last_login_at.gt(at))
                .count()
                .get_result(conn)?;
            Ok::<_, heft::db::DbError>((s, cab))
        })
        .await
        .expect("read");
    assert_eq!(written, (0, 0), "sessions and logins under {paused_id} after its pause");

    // Charges and stock equal the truth.
    for cab in &cabs {
        let n = i64::from(sold.get(cab.sn()).copied().unwrap_or(0));
        let chips_extra = if cab.sn() == sn { 2 } else { 0 };
        let want = vec![i64::from(STOCK) - n, i64::from(STOCK) - n - chips_extra];
        eventually(&format!("{} book stock", cab.sn()), || async {
            (c.book_stock(cab.sn()).await == want).then_some(())
        })
        .await;
        let truth: Vec<i64> = cab.truth().iter().take(2).map(|l| i64::from(l.units)).collect();
        assert_eq!(truth, want, "{} holds what the book says", cab.sn());
    }
    let paid: Vec<Option<heft::domain::units::Fen>> =
        c.db.run(|conn| {
            use diesel::prelude::*;
            use heft::db::schema::orders;
            orders::table.select(orders::paid_fen).load(conn).map_err(heft::db::DbError::from)
        })
        .await
        .expect("orders");
    let total: i64 = paid.into_iter().flatten().map(|f| f.0).sum();
    let purchases = i64::from(sold.values().sum::<u32>());
    assert_eq!(total, purchases * BASKET_FEN + 1200, "every charge once, none lost");

    // 4. The scheduler's leader dies before the night is due; another node runs it once.
    scheduler_leader_dies(&mut c).await;
    for cab in cabs {
        cab.stop().await;
    }
}

/// Restart the nodes with the nightly jobs due a minute or so from now, kill the node holding the
/// `reconcile` lease before then, and see the night run by another node, once per job.
async fn scheduler_leader_dies(c: &mut Cluster) {
    let shanghai = chrono::FixedOffset::east_opt(8 * 3600).expect("+08:00");
    let due = (chrono::Utc::now() + chrono::Duration::seconds(75)).with_timezone(&shanghai).format("%H:%M").to_string();
    let extra: Vec<(String, String)> = [
        ("HEFT__RECONCILE__ENABLED", "true"),
        ("HEFT__RECONCILE__CHECK_S", "1"),
        ("HEFT__RECONCILE__STALE_MINUTES", "1"),
        ("HEFT__RECONCILE__CATCH_UP_DAYS", "1"),
        ("HEFT__RECONCILE__STOCK_AT", due.as_str()),
        ("HEFT__RECONCILE__BILLS_AT", due.as_str()),
        ("HEFT__RECONCILE__SETTLEMENT_AT", due.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for i in 0..NODES {
        c.terminate(i).await;
    }
    for i in 0..NODES {
        c.start_node(i, &extra).await;
    }
    let leader =
        eventually("a scheduler leader", || async { c.cache.lease_holder("reconcile").await.ok().flatten() }).await;
    let runs_before = c.db.run(|conn| heft::db::reconcile::since(conn, "0000-01-01")).await.expect("runs");
    assert!(runs_before.is_empty(), "nothing due before {due}: {runs_before:?}");
    let i = c.nodes.iter().position(|n| n.id == leader.owner).expect("leader is a node");
    c.kill9(i);
    let runs = eventually_long("the night run by another node", || async {
        let runs = c.db.run(|conn| heft::db::reconcile::since(conn, "0000-01-01")).await.ok()?;
        let stock_done = runs.iter().any(|r| r.job == Job::Stock && r.finished_at.is_some());
        stock_done.then_some(runs)
    })
    .await;
    for r in &runs {
        assert_ne!(r.node, leader.owner, "{r:?}");
        assert_eq!(r.attempts, 1, "run once: {r:?}");
    }
    // Each job of the night has its one row (the table's key is job and day), and every job has
    // been started by now: the bills may wait for the platforms, the rest ran.
    let jobs: BTreeSet<&str> = runs.iter().map(|r| r.job.as_str()).collect();
    assert_eq!(jobs.len(), Job::ALL.len(), "{runs:?}");
}

/// `eventually`, for the scheduler: its night is up to two minutes away.
async fn eventually_long<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
