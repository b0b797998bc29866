//! A Heft node and the payment platforms as processes of their own, on a stage a run sets up and
//! takes down: `heft serve` in the production profile (a fresh PostgreSQL database, Redis keys and
//! RabbitMQ queues under the run's prefix) or the embedded one (a SQLite file in the run's
//! directory), and `heft pay-sim` for the platforms when a run needs to stop and start them.
//! Used by the purchase benchmark (`benches/purchase.rs`) and the chaos suite
//! (`tests/chaos.rs`), which kills both with SIGKILL and starts them again on the same state.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use diesel::{Connection, RunQueryDsl};

use crate::config::Config;
use crate::domain::operator::Role;
use crate::provision::Credentials;

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("config: {0}")]
    Config(String),
    #[error("PostgreSQL at {url}: {message}")]
    Postgres { url: String, message: String },
    #[error("{what}: {message}")]
    Setup { what: &'static str, message: String },
    #[error("starting {what}: {source}")]
    Spawn { what: &'static str, source: std::io::Error },
    #[error("{what} did not answer at {url} within {waited:?}")]
    NotUp { what: &'static str, url: String, waited: Duration },
    #[error("Redis at {url}: {source}")]
    Redis { url: String, source: redis::RedisError },
}

/// Where the production profile's services run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Services {
    /// A database to connect to as a superuser, to create and drop the run's database.
    pub postgres_admin_url: String,
    /// The server part of the run's database URL, e.g. `postgres://postgres@127.0.0.1:5432`.
    pub postgres_base_url: String,
    pub redis_url: String,
    pub rabbit_url: String,
}

impl Services {
    /// PostgreSQL (trust auth, user `postgres`), Redis and RabbitMQ (guest) on this machine.
    pub fn local() -> Services {
        Services {
            postgres_admin_url: "postgres://postgres@127.0.0.1:5432/postgres".into(),
            postgres_base_url: "postgres://postgres@127.0.0.1:5432".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            rabbit_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
        }
    }
}

/// The ports the node and the platforms listen on (the caller picks free ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub mqtt: u16,
    pub http: u16,
    pub pay_sim: u16,
}

/// What a stage is made of.
#[derive(Debug, Clone)]
pub struct StageOptions {
    /// The `heft` binary to run.
    pub binary: PathBuf,
    /// The configuration file the processes read (the shipped `config.toml`); the stage's own
    /// settings are `HEFT__…` variables over it.
    pub config_file: PathBuf,
    /// The processes' working directory: the SQLite database, the platforms' state, the logs.
    pub dir: PathBuf,
    pub ports: Ports,
    /// `Some`: the production profile on these services; `None`: the embedded one.
    pub services: Option<Services>,
    /// Keep what the platforms know in `dir/pay-sim.db`, so a restarted `heft pay-sim`
    /// remembers it; otherwise in memory.
    pub pay_sim_state: bool,
    /// Further `HEFT__…` settings, applied last.
    pub extra: Vec<(String, String)>,
}

/// Which program of the `heft` binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// `heft serve`: the node, its own platform simulator off.
    Node,
    /// `heft pay-sim`: the platforms.
    PaySim,
}

impl Program {
    pub fn name(self) -> &'static str {
        match self {
            Program::Node => "heft serve",
            Program::PaySim => "heft pay-sim",
        }
    }

    fn subcommand(self) -> &'static str {
        match self {
            Program::Node => "serve",
            Program::PaySim => "pay-sim",
        }
    }
}

/// A run's node and platforms: their settings, storage, and the processes started on it.
pub struct Stage {
    /// Names the run's database, Redis prefix and RabbitMQ prefix.
    pub tag: String,
    /// The configuration the processes run with.
    pub config: Config,
    env: Vec<(String, String)>,
    seal_key: String,
    opts: StageOptions,
    database_created: bool,
}

impl Stage {
    /// Settings and storage for a run: in the production profile a fresh database named after
    /// the run's tag.
    pub fn new(opts: StageOptions) -> Result<Stage, StageError> {
        let tag = format!("stage{:08x}", rand::random::<u32>());
        let seal_key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
        let env = stage_env(&opts, &tag, &seal_key);
        let toml = std::fs::read_to_string(&opts.config_file)
            .map_err(|e| StageError::Config(format!("{}: {e}", opts.config_file.display())))?;
        let config = Config::from_toml_and_env(&toml, &opts.config_file, env.iter().cloned())
            .map_err(|e| StageError::Config(e.to_string()))?;
        let mut stage = Stage { tag, config, env, seal_key, opts, database_created: false };
        if let Some(s) = &stage.opts.services {
            postgres(&s.postgres_admin_url, &format!("CREATE DATABASE {}", stage.tag))?;
            stage.database_created = true;
        }
        Ok(stage)
    }

    pub fn http_base(&self) -> String {
        format!("http://127.0.0.1:{}", self.opts.ports.http)
    }

    pub fn pay_sim_base(&self) -> String {
        format!("http://127.0.0.1:{}", self.opts.ports.pay_sim)
    }

    pub fn broker(&self) -> String {
        format!("127.0.0.1:{}", self.opts.ports.mqtt)
    }

    pub fn production(&self) -> bool {
        self.opts.services.is_some()
    }

    pub fn services(&self) -> Option<&Services> {
        self.opts.services.as_ref()
    }

    /// The `HEFT__…` settings every process of the stage gets.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Before the node starts (this migrates the database): `count` cabinets `{prefix}00000…`
    /// of `cabinet_type`, and an admin operator.
    pub async fn provision(
        &self,
        prefix: &str,
        count: usize,
        cabinet_type: &str,
        operator: (&str, &str),
    ) -> Result<Vec<Credentials>, StageError> {
        let setup = |what| move |e: &dyn std::fmt::Display| StageError::Setup { what, message: e.to_string() };
        let db = crate::app::open_database(&self.config).await.map_err(|e| setup("database")(&e))?;
        let seal = crate::secrets::SealKey::from_base64(&self.seal_key).map_err(|e| setup("seal key")(&e))?;
        let (prefix, kind) = (prefix.to_string(), cabinet_type.to_string());
        let creds = db
            .write(move |c| {
                (0..count)
                    .map(|i| crate::provision::provision(c, &seal, &format!("{prefix}{i:05}"), &kind, false))
                    .collect::<Result<Vec<_>, crate::provision::ProvisionError>>()
            })
            .await
            .map_err(|e| setup("provision")(&e))?;
        let (name, password) = operator;
        crate::admin::create_operator(&db, name, password.into(), Role::Admin, 8)
            .await
            .map_err(|e| setup("operator")(&e))?;
        Ok(creds)
    }

    /// Start a program; its log (stderr) is appended to `dir/{node|pay-sim}.log` when `log`,
    /// inherited otherwise.
    pub fn spawn(&self, program: Program, log: bool) -> Result<Process, StageError> {
        self.spawn_with(program, &[], log.then(|| self.log_path(program)))
    }

    /// One node of a cluster: `heft serve` as node `id` on its own ports, logging to
    /// `dir/{id}.log`. Every node of the stage shares its database, cache, messages and keys.
    pub fn spawn_node(&self, id: &str, http: u16, mqtt: u16) -> Result<Process, StageError> {
        let env = [
            ("HEFT__NODE__ID".to_string(), id.to_string()),
            ("HEFT__HTTP__LISTEN".to_string(), format!("127.0.0.1:{http}")),
            ("HEFT__MQTT__LISTEN".to_string(), format!("127.0.0.1:{mqtt}")),
        ];
        self.spawn_with(Program::Node, &env, Some(self.opts.dir.join(format!("{id}.log"))))
    }

    fn spawn_with(
        &self,
        program: Program,
        extra: &[(String, String)],
        log: Option<PathBuf>,
    ) -> Result<Process, StageError> {
        let what = program.name();
        let stderr = match log {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|source| StageError::Spawn { what, source })?;
                Stdio::from(file)
            }
            None => Stdio::inherit(),
        };
        let child = Command::new(&self.opts.binary)
            .arg("--config")
            .arg(&self.opts.config_file)
            .arg(program.subcommand())
            .envs(self.env.iter().chain(extra).map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&self.opts.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|source| StageError::Spawn { what, source })?;
        Ok(Process { child: Some(child), what })
    }

    /// Where a program's log goes with `spawn(…, true)`.
    pub fn log_path(&self, program: Program) -> PathBuf {
        let name = match program {
            Program::Node => "node.log",
            Program::PaySim => "pay-sim.log",
        };
        self.opts.dir.join(name)
    }

    /// Until the node answers `/healthz`, at most `timeout`; how long that took.
    pub async fn node_up(&self, timeout: Duration) -> Result<Duration, StageError> {
        wait_http("heft serve", &format!("{}/healthz", self.http_base()), timeout).await
    }

    /// Until the platforms answer, at most `timeout`; how long that took.
    pub async fn pay_sim_up(&self, timeout: Duration) -> Result<Duration, StageError> {
        wait_http("heft pay-sim", &format!("{}/sim/clock", self.pay_sim_base()), timeout).await
    }

    /// Delete every Redis key of the run (its prefix): the cache lost, as after a Redis restart
    /// without persistence. How many keys went; nothing in the embedded profile.
    pub async fn wipe_cache(&self) -> Result<usize, StageError> {
        let Some(s) = &self.opts.services else { return Ok(0) };
        wipe_redis_prefix(&s.redis_url, &self.config.cache.prefix).await
    }

    /// Take the stage down: the run's database, RabbitMQ queues and Redis keys. Processes still
    /// running are the caller's to stop first.
    pub async fn remove(mut self) -> Result<(), StageError> {
        let Some(s) = self.opts.services.clone() else { return Ok(()) };
        let names = crate::mq::rabbit::Names::new(&self.config.messages.prefix);
        let topics: Vec<String> = crate::mq::topics::ALL.iter().map(|t| t.to_string()).collect();
        let queues = crate::mq::rabbit::remove(&s.rabbit_url, &names, &topics, &self.config.messages.delays_ms).await;
        let keys = self.wipe_cache().await;
        self.drop_database();
        queues.map_err(|e| StageError::Setup { what: "RabbitMQ queues", message: e.to_string() })?;
        keys.map(|_| ())
    }

    fn drop_database(&mut self) {
        if let (true, Some(s)) = (self.database_created, &self.opts.services) {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.tag);
            if let Err(e) = postgres(&s.postgres_admin_url, &sql) {
                tracing::warn!(error = %e, "the run's database was not dropped");
            }
            self.database_created = false;
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        self.drop_database();
    }
}

/// The settings of a stage's processes.
fn stage_env(opts: &StageOptions, tag: &str, seal_key: &str) -> Vec<(String, String)> {
    let sim = format!("127.0.0.1:{}", opts.ports.pay_sim);
    let state_file = match opts.pay_sim_state {
        true => opts.dir.join("pay-sim.db").display().to_string(),
        false => String::new(),
    };
    let mut env: Vec<(&str, String)> = vec![
        ("HEFT__SECURITY__SEAL_KEY", seal_key.to_string()),
        ("HEFT__MQTT__LISTEN", format!("127.0.0.1:{}", opts.ports.mqtt)),
        ("HEFT__HTTP__LISTEN", format!("127.0.0.1:{}", opts.ports.http)),
        ("HEFT__LOG__FILTER", "warn".into()),
        // The platforms run elsewhere, as they would: never inside the node.
        ("HEFT__PAY_SIM__ENABLED", "false".into()),
        ("HEFT__PAY_SIM__LISTEN", sim.clone()),
        ("HEFT__PAY_SIM__TIME_SCALE", "1000.0".into()),
        ("HEFT__PAY_SIM__STATE_FILE", state_file),
        ("HEFT__WECHAT__BASE_URL", format!("http://{sim}")),
        ("HEFT__WECHAT__LOGIN_BASE_URL", format!("http://{sim}")),
        ("HEFT__ALIPAY__GATEWAY_URL", format!("http://{sim}/gateway.do")),
    ];
    match &opts.services {
        Some(s) => {
            env.push(("HEFT__DATABASE__URL", format!("{}/{tag}", s.postgres_base_url)));
            env.push(("HEFT__CACHE__URL", s.redis_url.clone()));
            env.push(("HEFT__CACHE__PREFIX", tag.to_string()));
            env.push(("HEFT__MESSAGES__URL", s.rabbit_url.clone()));
            env.push(("HEFT__MESSAGES__PREFIX", tag.to_string()));
        }
        None => env.push(("HEFT__DATABASE__URL", format!("sqlite://{}", opts.dir.join("heft.db").display()))),
    }
    let mut env: Vec<(String, String)> = env.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    for (k, v) in &opts.extra {
        env.retain(|(key, _)| key != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

fn postgres(admin_url: &str, sql: &str) -> Result<(), StageError> {
    let err = |e: &dyn std::fmt::Display| StageError::Postgres { url: admin_url.to_string(), message: e.to_string() };
    let mut c = diesel::PgConnection::establish(admin_url).map_err(|e| err(&e))?;
    diesel::sql_query(sql).execute(&mut c).map_err(|e| err(&e))?;
    Ok(())
}

/// Delete every key under `{prefix}:`; how many.
pub async fn wipe_redis_prefix(url: &str, prefix: &str) -> Result<usize, StageError> {
    let err = |source| StageError::Redis { url: url.to_string(), source };
    let client = redis::Client::open(url).map_err(err)?;
    let mut conn = client.get_multiplexed_async_connection().await.map_err(err)?;
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut conn).await.map_err(err)?;
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.map_err(err)?;
    }
    Ok(keys.len())
}

/// Until `url` answers 2xx, at most `timeout`; how long that took.
pub async fn wait_http(what: &'static str, url: &str, timeout: Duration) -> Result<Duration, StageError> {
    let started = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| StageError::Setup { what: "HTTP client", message: e.to_string() })?;
    loop {
        if client.get(url).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(started.elapsed());
        }
        if started.elapsed() >= timeout {
            return Err(StageError::NotUp { what, url: url.to_string(), waited: timeout });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A running program. Dropping it kills it.
pub struct Process {
    child: Option<Child>,
    what: &'static str,
}

impl Process {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `kill -9`: no shutdown, no flush, gone; then reaped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(e) = child.kill() {
                tracing::warn!(program = self.what, error = %e, "kill");
            }
            let _ = child.wait();
        }
    }

    /// Whether it still runs (false once it exited or was killed).
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// HAProxy in front of nodes on this machine: `deploy/haproxy.local.cfg.tmpl` filled in with the
/// balancer's ports and each node's `(http, mqtt)` (three of them), run in the foreground with
/// its config and log (`haproxy.cfg`, `haproxy.log`) in `dir`.
pub fn spawn_haproxy(dir: &std::path::Path, http: u16, mqtt: u16, nodes: &[(u16, u16)]) -> Result<Process, StageError> {
    const WHAT: &str = "haproxy";
    let mut cfg = include_str!("../../deploy/haproxy.local.cfg.tmpl")
        .replace("{{HTTP_PORT}}", &http.to_string())
        .replace("{{MQTT_PORT}}", &mqtt.to_string());
    for (i, (h, m)) in nodes.iter().enumerate() {
        cfg = cfg
            .replace(&format!("{{{{NODE{}_HTTP}}}}", i + 1), &h.to_string())
            .replace(&format!("{{{{NODE{}_MQTT}}}}", i + 1), &m.to_string());
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).map_err(|source| StageError::Spawn { what: WHAT, source })?;
    let log =
        std::fs::File::create(dir.join("haproxy.log")).map_err(|source| StageError::Spawn { what: WHAT, source })?;
    let child = Command::new("haproxy")
        .arg("-f")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|source| StageError::Spawn { what: WHAT, source })?;
    Ok(Process { child: Some(child), what: WHAT })
}
