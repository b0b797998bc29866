//! Test harness: start Heft in-process on free ports, in either profile, and talk to it as a
//! cabinet (real MQTT), an operator (HTTP) and a watchdog tick would.
//!
//! Production profile tests need PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379). When one
//! is missing they are skipped with a loud line on stderr; with `CI=true` they fail instead.

#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use diesel::{Connection, PgConnection, RunQueryDsl};
use heft::app::Heft;
use heft::config::Config;
use heft::domain::operator::Role;
use heft::provision::Credentials;
use heft::sim::device::{ConnectOptions, DeviceClient};
use serde_json::Value;

mod ports;
pub use ports::free_port;

pub const SHIPPED_CONFIG: &str = include_str!("../../config.toml");
pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const PG_HOST: &str = "127.0.0.1:5432";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const REDIS_HOST: &str = "127.0.0.1:6379";
pub const RABBIT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const RABBIT_HOST: &str = "127.0.0.1:5672";
/// Password of every operator the harness creates (`admin`, and `test-<role>` by `ops_login`).
pub const TEST_PASSWORD: &str = "correct horse battery staple";
/// The admin every `TestServer` starts with.
pub const ADMIN_USERNAME: &str = "admin";
/// Generous bound for "eventually": conditions are polled, so a slow machine only takes longer.
pub const EVENTUALLY: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Embedded,
    Production,
}

/// Where a test instance keeps its state; dropping it removes the PostgreSQL database.
pub struct Storage {
    pub database_url: String,
    pub cache_url: String,
    pub cache_prefix: String,
    _dir: tempfile::TempDir,
    pg_db: Option<String>,
    /// Production: the RabbitMQ URL and this test's exchange/queue name prefix.
    pub mq: Option<(String, String)>,
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Some((url, prefix)) = &self.mq {
            delete_rabbit_prefix(url, prefix);
        }
        let Some(name) = &self.pg_db else { return };
        if let Ok(mut c) = PgConnection::establish(PG_ADMIN_URL) {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c);
        }
    }
}

impl Storage {
    /// The same database and cache for a second node; the first keeps them (and removes them when
    /// it is dropped), so this one must be dropped first. Its messages stay in process.
    pub fn shared(&self) -> Storage {
        Storage {
            database_url: self.database_url.clone(),
            cache_url: self.cache_url.clone(),
            cache_prefix: self.cache_prefix.clone(),
            _dir: tempfile::tempdir().expect("tempdir"),
            pg_db: None,
            mq: None,
        }
    }
}

fn reachable(addr: &str) -> bool {
    addr.parse::<SocketAddr>().ok().is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
}

/// `None` means skipped (outside CI only).
pub fn storage(profile: Profile) -> Option<Storage> {
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = format!("heft-it-{:016x}", rand::random::<u64>());
    match profile {
        Profile::Embedded => Some(Storage {
            database_url: format!("sqlite://{}", dir.path().join("heft.db").display()),
            cache_url: "memory://".into(),
            cache_prefix: prefix,
            _dir: dir,
            pg_db: None,
            mq: None,
        }),
        Profile::Production => {
            let missing: Vec<&str> = [("PostgreSQL", PG_HOST), ("Redis", REDIS_HOST), ("RabbitMQ", RABBIT_HOST)]
                .into_iter()
                .filter(|(_, addr)| !reachable(addr))
                .map(|(name, _)| name)
                .collect();
            if !missing.is_empty() {
                let msg = format!(
                    "production-profile test needs {} (at {PG_HOST} / {REDIS_HOST} / {RABBIT_HOST})",
                    missing.join(" and ")
                );
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("{msg}: unreachable, and CI=true makes that a failure");
                }
                let _ = writeln!(std::io::stderr(), "SKIPPED: {msg}: unreachable");
                return None;
            }
            let name = format!("heft_it_{:016x}", rand::random::<u64>());
            let mut admin = PgConnection::establish(PG_ADMIN_URL).expect("connect to PostgreSQL as postgres");
            diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut admin).expect("create test database");
            Some(Storage {
                database_url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
                cache_url: REDIS_URL.into(),
                cache_prefix: prefix,
                _dir: dir,
                pg_db: Some(name),
                mq: Some((RABBIT_URL.into(), format!("heft-it-{:016x}", rand::random::<u64>()))),
            })
        }
    }
}

/// The shipped config with the test's storage, free ports, fast liveness settings, and the
/// watchdog timer off (tests run rounds by hand), plus `extra` overrides, all applied the way
/// an operator would: as `HEFT__SECTION__KEY` variables.
pub fn config(storage: &Storage, mqtt_port: u16, extra: &[(&str, &str)]) -> Config {
    let env = env_vars(storage, mqtt_port, extra);
    Config::from_toml_and_env(SHIPPED_CONFIG, Path::new("config.toml"), env).expect("test config is valid")
}

/// The variables [`config`] applies over the shipped config (for a `heft serve` process too).
pub fn env_vars(storage: &Storage, mqtt_port: u16, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let seal = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let sim = format!("127.0.0.1:{}", free_port());
    let mut env: Vec<(String, String)> = vec![
        ("HEFT__HTTP__LISTEN".into(), "127.0.0.1:0".into()),
        ("HEFT__HTTP__WORKERS".into(), "1".into()),
        ("HEFT__MQTT__LISTEN".into(), format!("127.0.0.1:{mqtt_port}")),
        ("HEFT__DATABASE__URL".into(), storage.database_url.clone()),
        ("HEFT__DATABASE__POOL_SIZE".into(), "4".into()),
        ("HEFT__CACHE__URL".into(), storage.cache_url.clone()),
        ("HEFT__CACHE__PREFIX".into(), storage.cache_prefix.clone()),
        ("HEFT__SECURITY__SEAL_KEY".into(), seal),
        ("HEFT__PROTOCOL__HEARTBEAT_S".into(), "1".into()),
        ("HEFT__PROTOCOL__RELOGIN_INTERVAL_S".into(), "1".into()),
        ("HEFT__LIVENESS__CHECK_S".into(), "0".into()),
        ("HEFT__LIVENESS__OFFLINE_AFTER_S".into(), "2".into()),
        ("HEFT__LIVENESS__WINDOW_S".into(), "2".into()),
        ("HEFT__LOG__FILTER".into(), "warn".into()),
        // The nightly scheduler runs only where a test asks for it.
        ("HEFT__RECONCILE__ENABLED".into(), "false".into()),
        // The payment simulator on its own free port, callbacks compressed 1000×.
        ("HEFT__PAY_SIM__LISTEN".into(), sim.clone()),
        ("HEFT__PAY_SIM__TIME_SCALE".into(), "1000.0".into()),
        // Each test's platforms start knowing nothing, and forget it at the end.
        ("HEFT__PAY_SIM__STATE_FILE".into(), String::new()),
        ("HEFT__WECHAT__BASE_URL".into(), format!("http://{sim}")),
        ("HEFT__WECHAT__LOGIN_BASE_URL".into(), format!("http://{sim}")),
        ("HEFT__ALIPAY__GATEWAY_URL".into(), format!("http://{sim}/gateway.do")),
    ];
    if let Some((url, prefix)) = &storage.mq {
        env.push(("HEFT__MESSAGES__URL".into(), url.clone()));
        env.push(("HEFT__MESSAGES__PREFIX".into(), prefix.clone()));
        // As in production: the node runs no simulator; the platforms (here the simulator, run
        // on its own by the harness) are elsewhere.
        env.push(("HEFT__PAY_SIM__ENABLED".into(), "false".into()));
    }
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    }
    env
}

/// A running instance plus what a test needs to reach it.
pub struct TestServer {
    pub heft: Heft,
    /// The payment simulator run beside the node (production profile); the embedded node runs
    /// its own.
    own_sim: Option<heft::pay::sim::RunningSim>,
    pub storage: Storage,
    pub config: Config,
    pub http: reqwest::Client,
    pub base: String,
    pub broker: String,
    /// Tokens from `ops_login`, by role.
    tokens: tokio::sync::Mutex<HashMap<Role, String>>,
}

impl TestServer {
    /// Start Heft; `None` when the profile's services are missing outside CI.
    pub async fn start(profile: Profile, extra: &[(&str, &str)]) -> Option<TestServer> {
        let storage = storage(profile)?;
        let config = config(&storage, free_port(), extra);
        Some(Self::start_with(storage, config).await)
    }

    pub async fn start_with(storage: Storage, config: Config) -> TestServer {
        Self::start_with_handlers(storage, config, Vec::new()).await
    }

    /// [`start_with`](Self::start_with), with message handlers added to the node's consumers.
    pub async fn start_with_handlers(
        storage: Storage,
        config: Config,
        handlers: Vec<std::sync::Arc<dyn heft::mq::Handler>>,
    ) -> TestServer {
        // RUST_LOG=heft=debug shows the server's log in a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        // The platforms first, as they would be.
        let own_sim = match config.pay_sim.enabled {
            true => None,
            false => Some(
                heft::pay::sim::start(&config.pay_sim, &config.wechat, &config.alipay)
                    .await
                    .expect("payment simulator starts"),
            ),
        };
        let heft = Heft::start_with_handlers(config.clone(), handlers).await.expect("heft starts");
        let base = format!("http://{}", heft.http_addr);
        let broker = heft.mqtt_addr.to_string();
        let s = TestServer {
            heft,
            own_sim,
            storage,
            config,
            http: reqwest::Client::new(),
            base,
            broker,
            tokens: tokio::sync::Mutex::new(HashMap::new()),
        };
        // Kept across a restart on the same storage.
        s.ensure_operator(ADMIN_USERNAME, Role::Admin).await;
        s
    }

    /// A second node of this one's cluster (production): the same database, cache, RabbitMQ
    /// prefix, seal key and payment platforms, its own node id and MQTT port. Drop (or stop) it
    /// before this one.
    pub async fn another_node(&self, node: &str) -> TestServer {
        let mut config = self.config.clone();
        config.node.id = node.to_string();
        config.mqtt.listen = format!("127.0.0.1:{}", free_port()).parse().expect("address");
        let heft = Heft::start(config.clone()).await.expect("the second node starts");
        let (base, broker) = (format!("http://{}", heft.http_addr), heft.mqtt_addr.to_string());
        TestServer {
            heft,
            own_sim: None,
            storage: self.storage.shared(),
            config,
            http: reqwest::Client::new(),
            base,
            broker,
            tokens: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Create an active operator with [`TEST_PASSWORD`] unless the username exists.
    pub async fn ensure_operator(&self, username: &str, role: Role) {
        let db = &self.heft.services.db;
        let name = username.to_string();
        if db.run(move |c| heft::db::operators::find_by_username(c, &name)).await.expect("db").is_some() {
            return;
        }
        heft::admin::create_operator(db, username, TEST_PASSWORD.into(), role, self.config.auth.min_password_len)
            .await
            .expect("create operator");
    }

    /// `POST /ops/auth/login` as is: (status, body).
    pub async fn login(&self, username: &str, password: &str) -> (u16, serde_json::Value) {
        let res = self
            .http
            .post(format!("{}/ops/auth/login", self.base))
            .json(&serde_json::json!({"username": username, "password": password}))
            .send()
            .await
            .expect("http request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// A token for an operator of `role`, logging in through the API: `admin` for the admin role,
    /// `test-<role>` (created on first use) for the others. Cached per role.
    pub async fn ops_login(&self, role: Role) -> String {
        let mut tokens = self.tokens.lock().await;
        if let Some(t) = tokens.get(&role) {
            return t.clone();
        }
        let username = if role == Role::Admin { ADMIN_USERNAME.to_string() } else { format!("test-{role}") };
        self.ensure_operator(&username, role).await;
        let (status, body) = self.login(&username, TEST_PASSWORD).await;
        assert_eq!(status, 200, "login as {username}: {body}");
        let token = body["token"].as_str().expect("token").to_string();
        tokens.insert(role, token.clone());
        token
    }

    /// A request to `path` carrying the token of an operator of `role`.
    pub async fn request(&self, role: Role, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let token = self.ops_login(role).await;
        self.http.request(method, format!("{}{path}", self.base)).bearer_auth(token)
    }

    /// Send a request as an operator of `role`, with an optional JSON body: (status, body; Null
    /// when the body is not JSON).
    pub async fn call(
        &self,
        role: Role,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut req = self.request(role, method, path).await;
        if let Some(body) = body {
            req = req.json(body);
        }
        let res = req.send().await.expect("http request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Stop, keeping the storage for a restart.
    pub async fn stop(self) -> (Storage, Config) {
        self.heft.stop().await;
        if let Some(sim) = self.own_sim {
            sim.stop().await;
        }
        (self.storage, self.config)
    }

    /// What `wx.login` / `my.getAuthCode` does on the phone: ask the platform (the simulator)
    /// for a one-use login code for the shopper `uid` of `channel` (`wechat` or `alipay`).
    pub async fn platform_login_code(&self, channel: &str, uid: &str) -> String {
        let body = match channel {
            "wechat" => serde_json::json!({"openid": uid}),
            _ => serde_json::json!({"user_id": uid}),
        };
        let res: serde_json::Value = self
            .http
            .post(format!("{}/sim/{channel}/login", self.sim_base()))
            .json(&body)
            .send()
            .await
            .expect("sim login")
            .json()
            .await
            .expect("json");
        res["code"].as_str().or(res["auth_code"].as_str()).expect("a login code").to_string()
    }

    /// Move the platforms' clock to tomorrow after 09:00 (Beijing), when today's bills are out.
    pub async fn platforms_next_morning(&self) {
        let clock = serde_json::json!({ "offset_s": 33 * 3600 });
        let res = self.http.post(format!("{}/sim/clock", self.sim_base())).json(&clock).send().await.expect("clock");
        assert!(res.status().is_success(), "sim clock: {}", res.status());
    }

    /// Base URL of the payment platform simulator, wherever it runs.
    pub fn sim_base(&self) -> String {
        let sim = self.heft.pay_sim.as_ref().or(self.own_sim.as_ref()).expect("a payment simulator runs");
        format!("http://{}", sim.addr)
    }

    pub fn provision(&self, sn: &str) -> Credentials {
        let mut conn = self.heft.services.db.write_conn().expect("db connection");
        heft::provision::provision(&mut conn, &self.heft.services.seal, sn, "fridge", false).expect("provision")
    }

    pub async fn device(&self, creds: &Credentials, boot: u64) -> DeviceClient {
        DeviceClient::connect(&self.broker, creds, boot, ConnectOptions::default()).await.expect("device connects")
    }

    /// Connect and log in; panics unless the login is accepted.
    pub async fn logged_in(&self, sn: &str, boot: u64) -> (Credentials, DeviceClient) {
        let creds = self.provision(sn);
        let mut dev = self.device(&creds, boot).await;
        let ack = dev.login(EVENTUALLY).await.expect("login_ack");
        assert!(ack.ok, "login of {sn} refused: {:?}", ack.reason);
        (creds, dev)
    }

    /// GET as the admin.
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.call(Role::Admin, reqwest::Method::GET, path, None).await
    }

    pub async fn get_ok(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    pub async fn cabinet(&self, sn: &str) -> serde_json::Value {
        self.get_ok(&format!("/ops/cabinets/{sn}")).await
    }

    /// Liveness events of a cabinet, oldest first, as (from, to).
    pub async fn liveness_events(&self, sn: &str) -> Vec<(String, String)> {
        let body = self.get_ok(&format!("/ops/cabinets/{sn}/events?kind=liveness&limit=500")).await;
        let mut events: Vec<(String, String)> = body["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| (e["from_state"].as_str().unwrap_or("").into(), e["to_state"].as_str().unwrap_or("").into()))
            .collect();
        events.reverse();
        events
    }

    pub async fn alerts(&self, query: &str) -> Vec<serde_json::Value> {
        self.get_ok(&format!("/ops/alerts?{query}")).await["alerts"].as_array().expect("alerts").clone()
    }

    /// Parsed `/metrics`: `name{labels}` → value.
    pub async fn metrics(&self) -> HashMap<String, f64> {
        let text =
            self.http.get(format!("{}/metrics", self.base)).send().await.expect("metrics").text().await.expect("text");
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.rsplit_once(' ').and_then(|(k, v)| v.parse().ok().map(|v| (k.to_string(), v))))
            .collect()
    }

    pub async fn metric(&self, key: &str) -> f64 {
        self.metrics().await.get(key).copied().unwrap_or(0.0)
    }
}

/// Delete every RabbitMQ queue and exchange named `{prefix}.…` (a test's topology). Listed with
/// `rabbitmqctl`, deleted over AMQP on a thread of its own (this may run inside a runtime).
pub fn delete_rabbit_prefix(url: &str, prefix: &str) {
    let list = |what: &str| -> Vec<String> {
        std::process::Command::new("rabbitmqctl")
            .args([what, "-q", "--no-table-headers", "name"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(|l| l.trim().to_string()).collect())
            .unwrap_or_default()
    };
    let mine = |names: Vec<String>| -> Vec<String> {
        names.into_iter().filter(|n| n.starts_with(&format!("{prefix}."))).collect()
    };
    let (queues, exchanges) = (mine(list("list_queues")), mine(list("list_exchanges")));
    if queues.is_empty() && exchanges.is_empty() {
        return;
    }
    let url = url.to_string();
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async move {
            let Ok(conn) = lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await else {
                return;
            };
            let Ok(ch) = conn.create_channel().await else { return };
            for q in queues {
                let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
            }
            for e in exchanges {
                let _ = ch.exchange_delete(e.as_str().into(), Default::default()).await;
            }
            let _ = conn.close(200, "OK".into()).await;
        });
    })
    .join();
}

/// A request with a bearer `token` (an operator's or a shopper's; empty for none); the status
/// and the JSON body (null when there is none).
pub async fn call(s: &TestServer, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("{}{path}", s.base);
    let req = match method {
        "GET" => s.http.get(url),
        "POST" => s.http.post(url),
        "PUT" => s.http.put(url),
        "DELETE" => s.http.delete(url),
        other => panic!("method {other}"),
    };
    let req = req.bearer_auth(token);
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let res = req.send().await.expect("http request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// [`call`], asserting a 2xx answer; its body.
pub async fn ok(s: &TestServer, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
    let (status, v) = call(s, method, path, token, body).await;
    assert!((200..300).contains(&status), "{method} {path}: {status} {v}");
    v
}

/// Poll `check` until it returns `Some`, or fail after [`EVENTUALLY`] with `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < EVENTUALLY, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Run the same async test body in both profiles.
#[macro_export]
macro_rules! both_profiles {
    ($name:ident, $body:path) => {
        mod $name {
            use super::*;

            #[actix_rt::test]
            async fn embedded() {
                $body(common::Profile::Embedded).await;
            }

            #[actix_rt::test]
            async fn production() {
                $body(common::Profile::Production).await;
            }
        }
    };
}
