//! Typed configuration: `config.toml` (or `--config PATH`), then `HEFT__SECTION__KEY` environment
//! overrides, then validation. Every limit Heft enforces lives here. A bad value stops the start
//! with one line naming the key and what is wrong.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::domain::baseline::DriftRule;
use crate::domain::calibration::SampleRule;
use crate::domain::count::CountRule;
use crate::domain::rest::RestRule;
use crate::domain::settlement::SettleRule;
use crate::domain::units::{Fen, Grams};

pub const ENV_PREFIX: &str = "HEFT__";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config key {key}: {message}")]
    Key { key: String, message: String },
}

fn key_error(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key { key: key.to_string(), message: message.into() }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: NodeConfig,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub cache: CacheConfig,
    pub mqtt: MqttConfig,
    pub protocol: ProtocolConfig,
    pub liveness: LivenessConfig,
    pub api: ApiConfig,
    pub weights: WeightsConfig,
    pub calibration: CalibrationConfig,
    pub security: SecurityConfig,
    pub weight_log: WeightLogConfig,
    pub auth: AuthConfig,
    pub messages: MessagesConfig,
    pub payments: PaymentsConfig,
    pub orders: OrdersConfig,
    pub wechat: WechatConfig,
    pub alipay: AlipayConfig,
    pub pay_sim: PaySimConfig,
    pub live: LiveConfig,
    #[serde(default)]
    pub reconcile: ReconcileConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub cluster: ClusterConfig,
}

/// Many nodes, one fleet: cabinet ownership and routing between nodes (DESIGN.md "Cluster").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// A cabinet's ownership lease lasts this long unless renewed: how long a node that died
    /// (or was paused) keeps its cabinets from another that they did not reconnect to.
    pub lease_ttl_ms: u64,
    /// The node renews all the leases it holds this often (one round trip per 500 cabinets).
    pub renew_every_ms: u64,
    /// A request routed to the cabinet's owner gets its answer within this long, or is tried
    /// once more after looking the owner up again, then refused (503 `cabinet_unreachable`).
    /// It covers a scan's pre-authorisation at the owner, so it exceeds
    /// `payments.http_timeout_ms`.
    pub route_timeout_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig { lease_ttl_ms: 15_000, renew_every_ms: 5_000, route_timeout_ms: 20_000 }
    }
}

impl ClusterConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("cluster.lease_ttl_ms", self.lease_ttl_ms),
            ("cluster.renew_every_ms", self.renew_every_ms),
            ("cluster.route_timeout_ms", self.route_timeout_ms),
        ] {
            if v == 0 {
                return Err(key_error(key, "must be greater than 0"));
            }
        }
        if self.renew_every_ms.saturating_mul(2) > self.lease_ttl_ms {
            return Err(key_error("cluster.renew_every_ms", "must be at most half of cluster.lease_ttl_ms"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Recorded on each cabinet this node holds the connection of.
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    pub workers: usize,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db` (embedded) or `postgres://user@host/db` (production).
    pub url: String,
    pub pool_size: u32,
    pub connect_timeout_s: u64,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// `memory://` (embedded) or `redis://host:port/db` (production).
    pub url: String,
    /// Key prefix, so several deployments can share one Redis.
    pub prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    pub listen: SocketAddr,
    /// Router limit on simultaneous connections.
    pub max_connections: usize,
    /// Largest MQTT packet payload the broker accepts; beyond it the broker drops the connection.
    pub max_packet_bytes: usize,
    /// Largest frame Heft processes; bigger frames are dropped and counted (`oversize`).
    pub max_frame_bytes: usize,
    pub connection_timeout_ms: u16,
    pub max_inflight_count: usize,
    pub max_outgoing_packet_count: u64,
    /// Router commit-log segment size and count, per topic: rumqttd keeps up to size × count
    /// bytes of every topic whether or not it has been read, so memory ≈ topics × size × count.
    pub max_segment_size: usize,
    pub max_segment_count: usize,
    /// Pause between accepts, which paces reconnect storms.
    pub next_connection_delay_ms: u64,
    /// How many frames may wait for the cabinet actors before the bridge holds back the broker.
    pub bridge_queue: usize,
    /// The broker's log of upstream frames the bridge has not read yet. rumqttd does not slow a
    /// publisher down for a slow subscriber: a bridge further behind than this loses frames.
    #[serde(default = "default_bridge_log_bytes")]
    pub bridge_log_bytes: usize,
    /// The TLS listener, beside the plain one (off unless `listen` is set).
    #[serde(default)]
    pub tls: MqttTlsConfig,
}

fn default_bridge_log_bytes() -> usize {
    2 << 20
}

/// MQTT over TLS: Heft terminates TLS (server certificate, and client certificates when asked)
/// and hands the connection to the broker's plain listener on loopback.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttTlsConfig {
    /// Where to listen, e.g. `0.0.0.0:8883`; empty: no TLS listener.
    #[serde(deserialize_with = "empty_as_none")]
    pub listen: Option<SocketAddr>,
    /// The server certificate chain (PEM, leaf first).
    pub cert_file: String,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// Whether cabinets show a client certificate signed by `client_ca_file`.
    pub client_certs: ClientCerts,
    /// The CA client certificates must chain to (PEM), when `client_certs` is not `off`.
    pub client_ca_file: String,
    /// A TLS handshake not finished in this long is dropped.
    pub handshake_timeout_ms: u64,
    /// How often the files are checked for a new certificate (rotation without a restart).
    pub reload_check_s: u64,
}

impl Default for MqttTlsConfig {
    fn default() -> Self {
        MqttTlsConfig {
            listen: None,
            cert_file: String::new(),
            key_file: String::new(),
            client_certs: ClientCerts::Off,
            client_ca_file: String::new(),
            handshake_timeout_ms: 10_000,
            reload_check_s: 60,
        }
    }
}

/// Client certificates on the MQTT TLS listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientCerts {
    /// Not asked for: the MQTT password alone identifies a cabinet.
    Off,
    /// Checked when shown; a cabinet without one still connects (a fleet moving to mTLS).
    Optional,
    /// A connection without a valid one is refused during the handshake.
    Required,
}

/// An empty string is "not set".
fn empty_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() { Ok(None) } else { s.trim().parse().map(Some).map_err(serde::de::Error::custom) }
}

/// The cadence a cabinet is told in `login_ack`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolConfig {
    pub heartbeat_s: u64,
    pub closed_weight_s: u64,
    pub open_weight_ms: u64,
    pub after_close_weight_ms: u64,
    pub after_close_s: u64,
    /// How long a command waits for its ack before it is retried.
    pub command_timeout_ms: u64,
    pub command_retries: u32,
    /// Least time between two requests to one cabinet to log in again (after a restart of its
    /// actor, or frames from a cabinet Heft has no session for).
    pub relogin_interval_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LivenessConfig {
    /// How often the watchdog runs. 0 turns the timer off (tests drive it by hand).
    pub check_s: u64,
    /// Silence after which a cabinet is suspect.
    pub offline_after_s: u64,
    /// Window over which the fleet's received/expected heartbeat ratio is taken.
    pub window_s: u64,
    /// Below this ratio the silence is probably ours (broker, network, ingest), not the cabinets'.
    pub healthy_ratio: f64,
    /// Below this many tracked cabinets the ratio says nothing and is not used.
    pub min_fleet: u64,
    /// Most cabinets the watchdog examines per round.
    pub batch: usize,
}

/// Limits of the mini-program API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    pub nearby_default_radius_m: f64,
    pub nearby_max_radius_m: f64,
    pub nearby_default_limit: usize,
    pub nearby_max_limit: usize,
    /// The largest request body taken, in bytes (JSON bodies and payment callbacks); larger is 413.
    pub max_body_bytes: usize,
}

/// How lane weights are judged.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsConfig {
    /// Readings kept per lane in the cabinet actor.
    pub window: usize,
    /// Fewest readings a rest is judged on (a baseline moves on twice as many).
    pub stable_readings: usize,
    /// Tolerance of a lane without a product (with one, the product's tolerance).
    pub default_tolerance_g: Grams,
    /// Closed-door change with no session that raises a drift alert: the larger of this and the
    /// lane product's tolerance.
    pub drift_min_g: Grams,
    /// A calibrated cell's relative error (0.005 = 0.5 %): a weighed change of many units may be
    /// this far off whole units and still be counted (never so far that two counts fit).
    pub scale_error: f64,
    /// A reading further than this many noise σ from the median of its run is an outlier.
    pub outlier_sigmas: f64,
    /// How many standard errors a trend or step must reach to count as movement.
    pub trend_sigmas: f64,
    /// Noise never assumed below this, grams.
    pub noise_floor_g: f64,
    /// Noise assumed of a lane until its closed-door stream shows its own, grams.
    pub default_noise_g: f64,
    /// Closed-door reading differences kept per lane to estimate its noise.
    pub noise_readings: usize,
    /// The most uncertain a rest's mean may be, grams, however coarse the lane's product.
    pub rest_sem_max_g: f64,
    /// Once `orders.settle_max_ms` is over, a lane's rest may be this many times less precise
    /// than its counts would like: the count, with that uncertainty, judges whether it is enough.
    pub late_sem_factor: f64,
    /// Standard uncertainties a change may lie from a count and still be that count.
    pub coverage: f64,
    /// Most items a shopper is taken to have moved between lanes in one visit.
    pub max_moves: usize,
    /// Fastest closed-door drift the baseline follows, grams per hour.
    pub drift_follow_g_per_h: f64,
    /// Followed drift, accumulated, that is reported (`lane_drift`), grams.
    pub drift_alert_total_g: f64,
    /// How often a cabinet adds its lanes' noise and drift to `lane_health`, seconds.
    pub health_every_s: u64,
}

impl WeightsConfig {
    pub fn rest_rule(&self) -> RestRule {
        RestRule {
            min_readings: self.stable_readings,
            outlier_sigmas: self.outlier_sigmas,
            max_outlier_fraction: 0.25,
            trend_sigmas: self.trend_sigmas,
            noise_floor_g: self.noise_floor_g,
        }
    }

    pub fn count_rule(&self) -> CountRule {
        CountRule { scale_error: self.scale_error, coverage: self.coverage }
    }

    pub fn settle_rule(&self) -> SettleRule {
        SettleRule { count: self.count_rule(), max_moves: self.max_moves }
    }

    pub fn drift_rule(&self) -> DriftRule {
        DriftRule {
            follow_g_per_h: self.drift_follow_g_per_h,
            event_min_g: self.drift_min_g.0,
            alert_total_g: self.drift_alert_total_g,
            coverage: self.coverage,
            min_readings: 2 * self.stable_readings,
        }
    }
}

/// Limits of the calibration steps (see `domain::calibration`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationConfig {
    /// A span reading that moved less than this per gram of standard weight did not move.
    pub min_counts_per_g: f64,
    pub max_counts_per_g: f64,
    /// Largest standard weight accepted, grams.
    pub max_standard_g: f64,
    /// The verification reading must be within this of the standard weight.
    pub verify_tolerance_g: f64,
    /// A calibration session with no step for this long is ended, freeing the cabinet.
    pub idle_timeout_s: u64,
    /// Separate readings asked for per step first; more when a lane's noise needs them.
    pub samples: u32,
    /// Most readings asked for per step.
    pub max_samples: u32,
    /// Time allowed per sample asked for, on top of the command timeout, ms (25: a 40 Hz board).
    pub sample_ms: u64,
    /// Standard uncertainty wanted of each step's mean, grams.
    pub target_sem_g: f64,
    /// Largest share of a step's readings that may be spikes.
    pub max_spike_fraction: f64,
    /// A move larger than this while a step is read, grams, is drift…
    pub drift_max_g: f64,
    /// …when it is also this many standard errors large.
    pub trend_sigmas: f64,
}

impl CalibrationConfig {
    pub fn sample_rule(&self, weights: &WeightsConfig) -> SampleRule {
        SampleRule {
            samples: self.samples,
            max_samples: self.max_samples,
            target_sem_g: self.target_sem_g,
            max_spike_fraction: self.max_spike_fraction,
            drift_max_g: self.drift_max_g,
            trend_sigmas: self.trend_sigmas,
            rest: weights.rest_rule(),
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// Base64 of the 32-byte key that seals cabinet frame keys at rest. A secret: never logged.
    /// Empty → the key is read from `seal_key_file`, which is created on first start.
    #[serde(default)]
    pub seal_key: String,
    pub seal_key_file: PathBuf,
    /// At most one security alert per cabinet and reason in this many seconds (the rest are counted).
    pub alert_cooldown_s: u64,
    /// Device clocks further than this from ours are reported in `login_ack` and logged.
    pub max_clock_skew_s: u64,
}

/// The weight log writer (`actors::weight_log`): readings are queued in memory and written in
/// batches, one transaction each.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightLogConfig {
    /// A batch is written once this many rows are queued…
    pub batch_rows: usize,
    /// …or this long after the oldest unwritten row was queued, whichever comes first.
    pub flush_ms: u64,
    /// Most rows held unwritten (queued, or in a batch being written or retried); beyond it new
    /// rows are dropped and counted. Bounds memory while the database is down or slow.
    pub queue_rows: usize,
    /// First pause after a failed write; it doubles on each failure, up to 30 s.
    pub retry_ms: u64,
}

/// Operator accounts: sign-in tokens (JWT, HS256) and passwords.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Key that signs operator tokens. A secret: never logged. Empty → derived from the seal key,
    /// so every node sharing the seal key accepts the others' tokens. Changing it signs everyone
    /// out.
    #[serde(default)]
    pub jwt_secret: String,
    /// How long a token from `POST /ops/auth/login` stays valid.
    pub token_ttl_s: u64,
    /// How long a mini-program (shopper) sign-in lasts.
    pub shopper_token_ttl_s: u64,
    /// Shortest password an operator may be given.
    pub min_password_len: usize,
    /// Login attempts allowed per username per minute (per node); more are refused with 429.
    pub login_attempts_per_minute: u32,
    /// Password hashes computed at once. Each takes about 19 MiB and a core for tens of
    /// milliseconds, so a burst of logins waits here instead of exhausting the node.
    pub max_concurrent_hashes: usize,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("jwt_secret", &if self.jwt_secret.is_empty() { "(derived)" } else { "***" })
            .field("token_ttl_s", &self.token_ttl_s)
            .field("shopper_token_ttl_s", &self.shopper_token_ttl_s)
            .field("min_password_len", &self.min_password_len)
            .field("login_attempts_per_minute", &self.login_attempts_per_minute)
            .field("max_concurrent_hashes", &self.max_concurrent_hashes)
            .finish()
    }
}

/// Messages that must not be lost: the outbox and its relay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesConfig {
    /// `embedded://` (the relay hands messages to in-process consumers) or
    /// `amqp://user:password@host:5672/%2f` (RabbitMQ, production).
    pub url: String,
    /// Prefix of every RabbitMQ exchange and queue name, so deployments can share a broker.
    pub prefix: String,
    /// The relay looks for due rows this often (a write in this process also wakes it).
    pub poll_ms: u64,
    /// Rows the relay takes per round.
    pub batch: usize,
    /// How long a publish may wait for RabbitMQ's confirm before it counts as failed.
    pub confirm_timeout_ms: u64,
    /// Longest one message's handling may take; beyond it the attempt fails and is retried.
    pub handler_timeout_ms: u64,
    /// Failed handlings of one message before it goes to the dead-letter queue.
    pub max_attempts: u32,
    /// Pause before the first retry of a failed handling or publish; doubles each time.
    pub retry_base_ms: u64,
    /// RabbitMQ wait queues, one per delay (TTL + dead-letter exchange). A message due later is
    /// parked in the longest that fits and parked again on arrival until its time has come.
    pub delays_ms: Vec<u64>,
    /// Delivered rows are deleted after this long; dead rows are kept.
    pub keep_done_s: u64,
    /// Messages a RabbitMQ consumer may hold unacknowledged.
    pub prefetch: u16,
}

/// What Heft needs from any payment platform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentsConfig {
    /// Where the platforms send callbacks (`{base}/pay/wechat/notify`); empty → this node's own
    /// HTTP address (right for the simulator; a real platform needs a public HTTPS address).
    pub notify_base_url: String,
    /// The most a pre-authorisation may cover (Pay Score risk fund / Alipay freeze), in fen.
    pub preauth_cap_fen: Fen,
    /// Time allowed for one request to a platform.
    pub http_timeout_ms: u64,
}

/// The purchase flow's limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrdersConfig {
    /// A scanned order the shopper has not authorised by then is cancelled (`order.auth_timeout`).
    pub auth_timeout_s: u64,
    /// Seconds after the scan at which the platform is asked whether the shopper confirmed
    /// (`order.confirm_check`), so that a lost callback does not keep a waiting shopper waiting.
    /// Those at or after `auth_timeout_s` are left out: the auth timeout asks then.
    pub confirm_checks_s: Vec<u64>,
    /// An authorisation Heft learns later than this after the scan does not open the door: the
    /// shopper has likely left. The hold is released and the order says why.
    pub open_window_s: u64,
    /// How long `open` unlocks the door for.
    pub unlock_s: u64,
    /// After the authorisation, when Heft checks that the door opened (`door.open_check`): once
    /// more `open`, then the order is cancelled. Longer than `unlock_s`, so a cancelled order's
    /// door has locked itself again.
    pub open_check_s: u64,
    /// A door open longer than this raises an alert and puts a notice on the order.
    pub door_open_alert_s: u64,
    /// After the close, the longest wait for every lane to be stable; then the order goes to review.
    pub settle_max_ms: u64,
    /// After a refused charge (or one the platform is still collecting), when it is tried (looked
    /// at) again; doubles each round up to `capture_retry_max_s`.
    pub capture_retry_s: u64,
    pub capture_retry_max_s: u64,
    /// A charge the platform is still collecting this long after the first attempt becomes debt on
    /// the shopper's account (no new purchase before it is paid) until the platform says paid.
    pub collect_grace_s: u64,
    /// What the shopper sees on the platform's page (at most 20 characters).
    pub title: String,
}

/// WeChat Pay API v3 (Pay Score) and the mini-program login. `sim` for a key file means the
/// simulator's built-in demo key, accepted only while `base_url` points at the simulator.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WechatConfig {
    /// `https://api.mch.weixin.qq.com`, or the simulator.
    pub base_url: String,
    /// Host of the mini-program login API (`/sns/jscode2session`): `https://api.weixin.qq.com`.
    pub login_base_url: String,
    pub appid: String,
    /// Mini-program AppSecret, for `jscode2session`.
    pub app_secret: String,
    pub mchid: String,
    pub service_id: String,
    /// Serial of the merchant API certificate (upper-case hex).
    pub merchant_serial_no: String,
    /// PKCS#8 PEM of the merchant API private key (`apiclient_key.pem`).
    pub merchant_key_file: String,
    /// WeChat Pay public key (PEM) and its id (`PUB_KEY_ID_…`).
    pub platform_public_key_file: String,
    pub platform_public_key_id: String,
    /// 32-byte APIv3 key: decrypts callbacks.
    pub apiv3_key: String,
    /// APIv2 key: signs the legacy confirm-page parameters.
    pub apiv2_key: String,
}

impl fmt::Debug for WechatConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WechatConfig")
            .field("base_url", &self.base_url)
            .field("login_base_url", &self.login_base_url)
            .field("appid", &self.appid)
            .field("mchid", &self.mchid)
            .field("service_id", &self.service_id)
            .field("merchant_serial_no", &self.merchant_serial_no)
            .field("merchant_key_file", &self.merchant_key_file)
            .field("platform_public_key_file", &self.platform_public_key_file)
            .field("platform_public_key_id", &self.platform_public_key_id)
            .finish_non_exhaustive()
    }
}

/// Alipay Open Platform (fund-auth pre-authorisation) and the mini-program login.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlipayConfig {
    /// `https://openapi.alipay.com/gateway.do`, or the simulator's.
    pub gateway_url: String,
    pub app_id: String,
    /// The merchant's own Alipay account (2088…), payee of the freeze and seller of the trade.
    pub seller_id: String,
    /// PKCS#8 PEM of the application private key; `sim` as for WeChat.
    pub app_key_file: String,
    /// Alipay's public key (PEM).
    pub alipay_public_key_file: String,
}

/// The payment platform simulator `heft serve` runs in the embedded profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaySimConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Divides the platforms' callback retry schedules (15 s, 15 s, 30 s, 3 min, …): 1 is real
    /// time, 1000 makes a day's retries take under two minutes.
    pub time_scale: f64,
    /// How long the simulator waits for a callback to be answered.
    pub callback_timeout_ms: u64,
    /// The SQLite file the simulator keeps what it knows in, so a restart forgets nothing;
    /// empty: memory only (tests, benchmarks).
    #[serde(default)]
    pub state_file: String,
}

/// Shortest `auth.jwt_secret` accepted: HS256 keys shorter than the hash add no strength.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing `EnvFilter` directive; `RUST_LOG` wins when set.
    pub filter: String,
    /// `text` for people (coloured only on a terminal), `json` (one object per line) for log
    /// shippers.
    #[serde(default)]
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The operators' live view (`/ops/live`): every limit that keeps a slow or dead browser from
/// costing the node anything.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveConfig {
    /// Sockets open at once on this node; one more is refused (503) before the upgrade.
    pub max_sockets: usize,
    /// A socket that has not authenticated within this is closed (4001).
    pub auth_timeout_ms: u64,
    /// A ping goes out this often; a socket that has sent nothing (not even a pong) for
    /// `idle_timeout_s` is closed.
    pub ping_s: u64,
    pub idle_timeout_s: u64,
    /// Largest message a client may send, in bytes.
    pub max_message_bytes: usize,
    /// Subscriptions one socket may hold.
    pub max_subscriptions: usize,
    /// Messages waiting per socket; a coalesced value (a lane's grams, a cabinet's row) takes one
    /// place however often it changes. A subscription that would overflow it is resynced.
    pub queue_capacity: usize,
    /// Resyncs within `resync_window_s` past which the socket is closed (4008, too slow).
    pub max_resyncs: usize,
    pub resync_window_s: u64,
    /// One cabinet's fleet row goes out at most this often.
    pub fleet_interval_ms: u64,
    /// One cabinet's lane weights go out at most this often while a door is open.
    pub weights_interval_ms: u64,
    /// Rows in an `orders`, `alerts`, `reviews` or `restock` snapshot (newest first).
    pub snapshot_rows: i64,
    /// Events the hub may have waiting before it counts itself behind and resyncs everyone.
    pub event_backlog: usize,
}

/// The nightly reconciliation (`heft reconcile`, and the scheduler in `serve`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileConfig {
    /// Run the nightly jobs in `serve` (one node at a time, under the `reconcile` lease).
    pub enabled: bool,
    /// Local time (Asia/Shanghai, `HH:MM`) on the next day at which a day's stock is taken by
    /// weight (from the lanes' rest at the day's end).
    pub stock_at: String,
    /// Newest readings of a cabinet the stocktake takes a lane's rest from.
    pub stock_readings: i64,
    /// Days back a difference is traced when the lane has no earlier night on record.
    pub stock_trace_days: i64,
    /// Local time (Asia/Shanghai, `HH:MM`) on the next day at which a day's bills are fetched:
    /// after the platforms publish them (WeChat from 10:00).
    pub bills_at: String,
    /// …and at which its settlement is written (after the bills, whose fees it takes).
    pub settlement_at: String,
    /// Days back a starting node looks for nights it missed.
    pub catch_up_days: i64,
    /// A bill not out yet, or a run that failed, is tried again this many minutes later.
    pub retry_minutes: i64,
    /// A run left `running` this long was cut off with its node; another may take it over.
    pub stale_minutes: i64,
    /// How often the scheduler looks for due runs.
    pub check_s: u64,
    /// Hours after its time past which a bill still not out raises `bill_missing`.
    pub bill_alert_hours: i64,
    /// Days a payment or refund Heft recorded may wait for a bill to show it (Pay Score may
    /// collect days after the order).
    pub wait_days: i64,
    /// The platforms' fee rates in basis points (60 = 0.60 %), rounded half up per trade.
    pub wechat_fee_bp: i64,
    pub alipay_fee_bp: i64,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            enabled: true,
            stock_at: "03:00".into(),
            stock_readings: 40,
            stock_trace_days: 7,
            bills_at: "10:30".into(),
            settlement_at: "11:00".into(),
            catch_up_days: 7,
            retry_minutes: 30,
            stale_minutes: 120,
            check_s: 60,
            bill_alert_hours: 24,
            wait_days: 3,
            wechat_fee_bp: 60,
            alipay_fee_bp: 60,
        }
    }
}

impl ReconcileConfig {
    /// The scheduler's timetable; the times were checked by [`Config::validate`].
    pub fn timetable(&self) -> crate::domain::reconcile::Timetable {
        let time = |s: &str| chrono::NaiveTime::parse_from_str(s, "%H:%M").unwrap_or_default();
        crate::domain::reconcile::Timetable {
            stock_at: time(&self.stock_at),
            bills_at: time(&self.bills_at),
            settlement_at: time(&self.settlement_at),
            catch_up_days: self.catch_up_days,
            retry_after: chrono::Duration::minutes(self.retry_minutes),
            stale_after: chrono::Duration::minutes(self.stale_minutes),
        }
    }

    /// How a platform's bill is judged.
    pub fn bill_rule(&self, channel: crate::domain::payment::Channel) -> crate::domain::bills::BillRule {
        let fee_basis_points = match channel {
            crate::domain::payment::Channel::Wechat => self.wechat_fee_bp,
            crate::domain::payment::Channel::Alipay => self.alipay_fee_bp,
        };
        crate::domain::bills::BillRule { fee_basis_points, wait_days: self.wait_days }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("reconcile.stock_at", &self.stock_at),
            ("reconcile.bills_at", &self.bills_at),
            ("reconcile.settlement_at", &self.settlement_at),
        ] {
            if chrono::NaiveTime::parse_from_str(v, "%H:%M").is_err() {
                return Err(key_error(key, "must be a time of day, HH:MM"));
            }
        }
        for (key, v, min) in [
            ("reconcile.catch_up_days", self.catch_up_days, 1),
            ("reconcile.stock_readings", self.stock_readings, 2),
            ("reconcile.stock_trace_days", self.stock_trace_days, 1),
            ("reconcile.retry_minutes", self.retry_minutes, 1),
            ("reconcile.stale_minutes", self.stale_minutes, 1),
            ("reconcile.check_s", i64::try_from(self.check_s).unwrap_or(0), 1),
            ("reconcile.bill_alert_hours", self.bill_alert_hours, 1),
            ("reconcile.wait_days", self.wait_days, 0),
            ("reconcile.wechat_fee_bp", self.wechat_fee_bp, 0),
            ("reconcile.alipay_fee_bp", self.alipay_fee_bp, 0),
        ] {
            if v < min {
                return Err(key_error(key, format!("must be at least {min}")));
            }
        }
        if self.wechat_fee_bp > 10_000 || self.alipay_fee_bp > 10_000 {
            return Err(key_error("reconcile.wechat_fee_bp", "a fee rate is at most 10000 bp (100 %)"));
        }
        Ok(())
    }
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            max_sockets: 1000,
            auth_timeout_ms: 5000,
            ping_s: 15,
            idle_timeout_s: 45,
            max_message_bytes: 4096,
            max_subscriptions: 32,
            queue_capacity: 2000,
            max_resyncs: 3,
            resync_window_s: 60,
            fleet_interval_ms: 1000,
            weights_interval_ms: 200,
            snapshot_rows: 200,
            event_backlog: 65536,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { filter: "info,rumqttd=warn".into(), format: LogFormat::Text }
    }
}

// Secrets stay out of Debug output (and so out of logs).
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("node", &self.node)
            .field("http", &self.http)
            .field("database", &redact_url(&self.database.url))
            .field("cache", &redact_url(&self.cache.url))
            .field("mqtt", &self.mqtt)
            .field("protocol", &self.protocol)
            .field("liveness", &self.liveness)
            .field("weight_log", &self.weight_log)
            .field("auth", &self.auth)
            .field("messages", &redact_url(&self.messages.url))
            .field("payments", &self.payments)
            .field("orders", &self.orders)
            .field("wechat", &self.wechat)
            .field("alipay", &self.alipay)
            .field("pay_sim", &self.pay_sim)
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
}

/// `scheme://user:password@host/…` → `scheme://user:***@host/…`
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl Config {
    /// Load from a file, apply the process environment, validate.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::from_toml_and_env(&text, path, std::env::vars())
    }

    /// Parse TOML text, apply `HEFT__SECTION__KEY` overrides from `env`, validate.
    pub fn from_toml_and_env(
        text: &str,
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        let overrides: BTreeMap<String, String> = env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
        for (name, value) in overrides {
            apply_override(&mut table, &name, &value)?;
        }
        let deserializer = toml::Value::Table(table);
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            key_error(&path, e.into_inner().message().to_string())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Rules serde cannot express. Each names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = |key: &str, v: u64| if v == 0 { Err(key_error(key, "must be greater than 0")) } else { Ok(()) };
        if self.node.id.trim().is_empty() || self.node.id.len() > 64 {
            return Err(key_error("node.id", "must be 1 to 64 characters"));
        }
        if self.http.workers == 0 {
            return Err(key_error("http.workers", "must be greater than 0"));
        }
        if !(self.database.url.starts_with("sqlite://")
            || self.database.url.starts_with("postgres://")
            || self.database.url.starts_with("postgresql://"))
        {
            return Err(key_error("database.url", "must start with sqlite:// or postgres://"));
        }
        positive("database.pool_size", u64::from(self.database.pool_size))?;
        positive("database.connect_timeout_s", self.database.connect_timeout_s)?;
        if !(self.cache.url == "memory://"
            || self.cache.url.starts_with("redis://")
            || self.cache.url.starts_with("rediss://"))
        {
            return Err(key_error("cache.url", "must be memory:// or start with redis://"));
        }
        if self.cache.prefix.is_empty() || self.cache.prefix.contains(char::is_whitespace) {
            return Err(key_error("cache.prefix", "must be non-empty with no spaces"));
        }
        self.validate_live()?;
        self.reconcile.validate()?;
        self.cluster.validate()?;
        positive("mqtt.max_connections", self.mqtt.max_connections as u64)?;
        positive("mqtt.max_frame_bytes", self.mqtt.max_frame_bytes as u64)?;
        if self.mqtt.max_packet_bytes < self.mqtt.max_frame_bytes {
            return Err(key_error(
                "mqtt.max_packet_bytes",
                "must be at least mqtt.max_frame_bytes, or oversize frames could not be counted",
            ));
        }
        positive("mqtt.connection_timeout_ms", u64::from(self.mqtt.connection_timeout_ms))?;
        positive("mqtt.max_inflight_count", self.mqtt.max_inflight_count as u64)?;
        positive("mqtt.max_outgoing_packet_count", self.mqtt.max_outgoing_packet_count)?;
        positive("mqtt.max_segment_size", self.mqtt.max_segment_size as u64)?;
        positive("mqtt.max_segment_count", self.mqtt.max_segment_count as u64)?;
        positive("mqtt.bridge_queue", self.mqtt.bridge_queue as u64)?;
        if self.mqtt.bridge_log_bytes < 4 * self.mqtt.max_packet_bytes {
            return Err(key_error("mqtt.bridge_log_bytes", "must be at least 4 × mqtt.max_packet_bytes"));
        }
        let tls = &self.mqtt.tls;
        if tls.listen.is_some() {
            if tls.cert_file.trim().is_empty() || tls.key_file.trim().is_empty() {
                return Err(key_error("mqtt.tls", "a TLS listener needs cert_file and key_file"));
            }
            if tls.client_certs != ClientCerts::Off && tls.client_ca_file.trim().is_empty() {
                return Err(key_error("mqtt.tls.client_ca_file", "client certificates need the CA they chain to"));
            }
            positive("mqtt.tls.handshake_timeout_ms", tls.handshake_timeout_ms)?;
            positive("mqtt.tls.reload_check_s", tls.reload_check_s)?;
        }
        positive("protocol.heartbeat_s", self.protocol.heartbeat_s)?;
        positive("protocol.closed_weight_s", self.protocol.closed_weight_s)?;
        positive("protocol.open_weight_ms", self.protocol.open_weight_ms)?;
        positive("protocol.after_close_weight_ms", self.protocol.after_close_weight_ms)?;
        positive("protocol.command_timeout_ms", self.protocol.command_timeout_ms)?;
        positive("liveness.offline_after_s", self.liveness.offline_after_s)?;
        if self.liveness.offline_after_s < self.protocol.heartbeat_s {
            return Err(key_error(
                "liveness.offline_after_s",
                "must be at least protocol.heartbeat_s, or every cabinet would look silent",
            ));
        }
        positive("liveness.window_s", self.liveness.window_s)?;
        if !(self.api.nearby_max_radius_m.is_finite() && self.api.nearby_max_radius_m > 0.0) {
            return Err(key_error("api.nearby_max_radius_m", "must be a number > 0"));
        }
        if !(self.api.nearby_default_radius_m > 0.0 && self.api.nearby_default_radius_m <= self.api.nearby_max_radius_m)
        {
            return Err(key_error("api.nearby_default_radius_m", "must be in (0, api.nearby_max_radius_m]"));
        }
        positive("api.nearby_max_limit", self.api.nearby_max_limit as u64)?;
        positive("api.max_body_bytes", self.api.max_body_bytes as u64)?;
        if !(1..=self.api.nearby_max_limit).contains(&self.api.nearby_default_limit) {
            return Err(key_error("api.nearby_default_limit", "must be in 1..=api.nearby_max_limit"));
        }
        positive("weights.window", self.weights.window as u64)?;
        positive("weights.stable_readings", self.weights.stable_readings as u64)?;
        if self.weights.stable_readings > self.weights.window {
            return Err(key_error("weights.stable_readings", "must be at most weights.window"));
        }
        let finite_positive = |key: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(key_error(key, format!("must be a number > 0, got {v}")))
            }
        };
        finite_positive("weights.default_tolerance_g", self.weights.default_tolerance_g.0)?;
        finite_positive("weights.drift_min_g", self.weights.drift_min_g.0)?;
        let w = &self.weights;
        for (key, v) in [
            ("weights.outlier_sigmas", w.outlier_sigmas),
            ("weights.trend_sigmas", w.trend_sigmas),
            ("weights.noise_floor_g", w.noise_floor_g),
            ("weights.default_noise_g", w.default_noise_g),
            ("weights.rest_sem_max_g", w.rest_sem_max_g),
            ("weights.late_sem_factor", w.late_sem_factor),
            ("weights.coverage", w.coverage),
            ("weights.drift_follow_g_per_h", w.drift_follow_g_per_h),
            ("weights.drift_alert_total_g", w.drift_alert_total_g),
        ] {
            finite_positive(key, v)?;
        }
        positive("weights.noise_readings", w.noise_readings as u64)?;
        positive("weights.health_every_s", w.health_every_s)?;
        if w.max_moves > 6 {
            return Err(key_error("weights.max_moves", "must be at most 6 (the search grows fast)"));
        }
        let e = self.weights.scale_error;
        if !(0.0..0.05).contains(&e) {
            return Err(key_error("weights.scale_error", format!("must be from 0 to under 0.05 (5 %), got {e}")));
        }
        let c = &self.calibration;
        finite_positive("calibration.target_sem_g", c.target_sem_g)?;
        finite_positive("calibration.max_spike_fraction", c.max_spike_fraction)?;
        finite_positive("calibration.drift_max_g", c.drift_max_g)?;
        finite_positive("calibration.trend_sigmas", c.trend_sigmas)?;
        positive("calibration.sample_ms", c.sample_ms)?;
        if !(2..=c.max_samples).contains(&c.samples) || c.max_samples > 4096 {
            return Err(key_error("calibration.samples", "must be from 2 to calibration.max_samples, at most 4096"));
        }
        finite_positive("calibration.min_counts_per_g", self.calibration.min_counts_per_g)?;
        finite_positive("calibration.max_counts_per_g", self.calibration.max_counts_per_g)?;
        if self.calibration.max_counts_per_g <= self.calibration.min_counts_per_g {
            return Err(key_error("calibration.max_counts_per_g", "must be greater than calibration.min_counts_per_g"));
        }
        finite_positive("calibration.max_standard_g", self.calibration.max_standard_g)?;
        finite_positive("calibration.verify_tolerance_g", self.calibration.verify_tolerance_g)?;
        positive("calibration.idle_timeout_s", self.calibration.idle_timeout_s)?;
        if !(self.liveness.healthy_ratio > 0.0 && self.liveness.healthy_ratio <= 1.0) {
            return Err(key_error(
                "liveness.healthy_ratio",
                format!("must be in (0, 1], got {}", self.liveness.healthy_ratio),
            ));
        }
        positive("liveness.batch", self.liveness.batch as u64)?;
        if !self.security.seal_key.is_empty() {
            crate::secrets::SealKey::from_base64(&self.security.seal_key)
                .map_err(|e| key_error("security.seal_key", e.to_string()))?;
        }
        positive("security.max_clock_skew_s", self.security.max_clock_skew_s)?;
        positive("weight_log.batch_rows", self.weight_log.batch_rows as u64)?;
        positive("weight_log.flush_ms", self.weight_log.flush_ms)?;
        positive("weight_log.queue_rows", self.weight_log.queue_rows as u64)?;
        positive("weight_log.retry_ms", self.weight_log.retry_ms)?;
        if self.weight_log.batch_rows > self.weight_log.queue_rows {
            return Err(key_error(
                "weight_log.batch_rows",
                "must be at most weight_log.queue_rows, or a full batch could never be queued",
            ));
        }
        if !self.auth.jwt_secret.is_empty() && self.auth.jwt_secret.len() < MIN_JWT_SECRET_BYTES {
            return Err(key_error(
                "auth.jwt_secret",
                format!("must be empty (derived from the seal key) or at least {MIN_JWT_SECRET_BYTES} bytes"),
            ));
        }
        positive("auth.token_ttl_s", self.auth.token_ttl_s)?;
        // Far beyond any real session; keeps iat + ttl far from overflowing.
        positive("auth.shopper_token_ttl_s", self.auth.shopper_token_ttl_s)?;
        if self.auth.shopper_token_ttl_s > 30 * 86_400 {
            return Err(key_error("auth.shopper_token_ttl_s", "must be at most 30 days (2592000)"));
        }
        if self.auth.token_ttl_s > 30 * 86_400 {
            return Err(key_error("auth.token_ttl_s", "must be at most 30 days (2592000)"));
        }
        let (floor, cap) = (crate::domain::operator::PASSWORD_MIN_FLOOR, crate::domain::operator::PASSWORD_MAX_CHARS);
        if !(floor..=cap).contains(&self.auth.min_password_len) {
            return Err(key_error("auth.min_password_len", format!("must be between {floor} and {cap}")));
        }
        positive("auth.login_attempts_per_minute", u64::from(self.auth.login_attempts_per_minute))?;
        positive("auth.max_concurrent_hashes", self.auth.max_concurrent_hashes as u64)?;
        self.validate_messages()?;
        self.validate_payments()?;
        self.validate_orders()?;
        if tracing_subscriber::EnvFilter::try_new(&self.log.filter).is_err() {
            return Err(key_error("log.filter", "is not a valid tracing filter"));
        }
        Ok(())
    }

    fn validate_live(&self) -> Result<(), ConfigError> {
        let l = &self.live;
        for (key, v) in [
            ("live.max_sockets", l.max_sockets as u64),
            ("live.auth_timeout_ms", l.auth_timeout_ms),
            ("live.ping_s", l.ping_s),
            ("live.max_message_bytes", l.max_message_bytes as u64),
            ("live.max_subscriptions", l.max_subscriptions as u64),
            ("live.resync_window_s", l.resync_window_s),
            ("live.fleet_interval_ms", l.fleet_interval_ms),
            ("live.weights_interval_ms", l.weights_interval_ms),
            ("live.snapshot_rows", u64::try_from(l.snapshot_rows).unwrap_or(0)),
            ("live.event_backlog", l.event_backlog as u64),
        ] {
            if v == 0 {
                return Err(key_error(key, "must be greater than 0"));
            }
        }
        if l.idle_timeout_s <= l.ping_s {
            return Err(key_error("live.idle_timeout_s", "must be longer than live.ping_s, or every socket idles out"));
        }
        if l.queue_capacity < 16 {
            return Err(key_error("live.queue_capacity", "must be at least 16"));
        }
        if l.snapshot_rows > 1000 {
            return Err(key_error("live.snapshot_rows", "must be at most 1000"));
        }
        Ok(())
    }

    fn validate_messages(&self) -> Result<(), ConfigError> {
        let m = &self.messages;
        if !(m.url == "embedded://" || m.url.starts_with("amqp://") || m.url.starts_with("amqps://")) {
            return Err(key_error("messages.url", "must be embedded:// or start with amqp://"));
        }
        if m.prefix.is_empty() || !m.prefix.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(key_error("messages.prefix", "must be non-empty letters, digits, '-', '_' or '.'"));
        }
        for (key, v) in [
            ("messages.poll_ms", m.poll_ms),
            ("messages.batch", m.batch as u64),
            ("messages.confirm_timeout_ms", m.confirm_timeout_ms),
            ("messages.handler_timeout_ms", m.handler_timeout_ms),
            ("messages.max_attempts", u64::from(m.max_attempts)),
            ("messages.retry_base_ms", m.retry_base_ms),
            ("messages.prefetch", u64::from(m.prefetch)),
        ] {
            if v == 0 {
                return Err(key_error(key, "must be greater than 0"));
            }
        }
        if m.delays_ms.is_empty() || m.delays_ms.contains(&0) || !m.delays_ms.windows(2).all(|w| w[0] < w[1]) {
            return Err(key_error("messages.delays_ms", "must be a non-empty increasing list of delays > 0"));
        }
        Ok(())
    }

    fn validate_orders(&self) -> Result<(), ConfigError> {
        let o = &self.orders;
        for (key, v) in [
            ("orders.auth_timeout_s", o.auth_timeout_s),
            ("orders.unlock_s", o.unlock_s),
            ("orders.door_open_alert_s", o.door_open_alert_s),
            ("orders.settle_max_ms", o.settle_max_ms),
            ("orders.capture_retry_s", o.capture_retry_s),
            ("orders.collect_grace_s", o.collect_grace_s),
        ] {
            if v == 0 {
                return Err(key_error(key, "must be greater than 0"));
            }
        }
        if o.confirm_checks_s.contains(&0) || !o.confirm_checks_s.windows(2).all(|w| w[0] < w[1]) {
            return Err(key_error("orders.confirm_checks_s", "must be an increasing list of seconds > 0"));
        }
        if o.open_window_s == 0 {
            return Err(key_error("orders.open_window_s", "must be greater than 0"));
        }
        if o.capture_retry_max_s < o.capture_retry_s {
            return Err(key_error("orders.capture_retry_max_s", "must be at least orders.capture_retry_s"));
        }
        // The second door-open check cancels the order: by then every `open` sent (the first and
        // its retries, then the second and its retries) must have unlocked and locked again, or a
        // door could open after its order was cancelled.
        let p = &self.protocol;
        let last_unlock_ms = p
            .command_timeout_ms
            .saturating_mul(u64::from(p.command_retries) + 1)
            .saturating_add(o.unlock_s.saturating_mul(1000));
        if o.open_check_s.saturating_mul(1000) <= last_unlock_ms {
            return Err(key_error(
                "orders.open_check_s",
                format!(
                    "must be longer than orders.unlock_s plus the open command's retries \
                     (protocol.command_timeout_ms × (protocol.command_retries + 1)): {last_unlock_ms} ms"
                ),
            ));
        }
        if o.title.is_empty() || o.title.chars().count() > 20 {
            return Err(key_error("orders.title", "must be 1 to 20 characters"));
        }
        Ok(())
    }

    fn validate_payments(&self) -> Result<(), ConfigError> {
        if !self.payments.preauth_cap_fen.is_positive() {
            return Err(key_error("payments.preauth_cap_fen", "must be greater than 0"));
        }
        if self.payments.http_timeout_ms == 0 {
            return Err(key_error("payments.http_timeout_ms", "must be greater than 0"));
        }
        let base = &self.payments.notify_base_url;
        if !(base.is_empty() || base.starts_with("http://") || base.starts_with("https://")) || base.ends_with('/') {
            return Err(key_error("payments.notify_base_url", "must be empty or an http(s) URL without a trailing /"));
        }
        let w = &self.wechat;
        if w.apiv3_key.len() != 32 {
            return Err(key_error("wechat.apiv3_key", "must be exactly 32 bytes"));
        }
        let sim = |url: &str| url.starts_with("http://127.0.0.1") || url.starts_with("http://localhost");
        for (key, file, url) in [
            ("wechat.merchant_key_file", &w.merchant_key_file, &w.base_url),
            ("wechat.platform_public_key_file", &w.platform_public_key_file, &w.base_url),
            ("alipay.app_key_file", &self.alipay.app_key_file, &self.alipay.gateway_url),
            ("alipay.alipay_public_key_file", &self.alipay.alipay_public_key_file, &self.alipay.gateway_url),
        ] {
            if file == "sim" && !sim(url) {
                return Err(key_error(key, "is `sim` (the simulator's demo key) but the platform URL is not local"));
            }
        }
        if !(self.pay_sim.time_scale.is_finite() && self.pay_sim.time_scale >= 1.0) {
            return Err(key_error("pay_sim.time_scale", "must be a number ≥ 1"));
        }
        if self.pay_sim.callback_timeout_ms == 0 {
            return Err(key_error("pay_sim.callback_timeout_ms", "must be greater than 0"));
        }
        Ok(())
    }

    pub fn is_production_database(&self) -> bool {
        !self.database.url.starts_with("sqlite://")
    }
}

/// `HEFT__LIVENESS__CHECK_S=5` → `table.liveness.check_s = 5`. The new value takes the type of the
/// value it replaces (so `HEFT__NODE__ID=7` stays a string); a key absent from the file is parsed
/// as a TOML value when it looks like one, else taken as a string.
fn apply_override(table: &mut toml::Table, name: &str, value: &str) -> Result<(), ConfigError> {
    let path: Vec<String> = name[ENV_PREFIX.len()..].split("__").map(|p| p.to_ascii_lowercase()).collect();
    let dotted = path.join(".");
    if path.len() < 2 || path.iter().any(|p| p.is_empty()) {
        return Err(key_error(name, "environment override must look like HEFT__SECTION__KEY"));
    }
    let mut node = table;
    for part in &path[..path.len() - 1] {
        let entry = node.entry(part.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(key_error(&dotted, "is not a section")),
        };
    }
    let last = &path[path.len() - 1];
    let parsed = match node.get(last) {
        Some(toml::Value::String(_)) => toml::Value::String(value.to_string()),
        Some(existing) => parse_scalar(value)
            .filter(|v| v.same_type(existing))
            .ok_or_else(|| key_error(&dotted, format!("{name}={value:?} is not of type {}", existing.type_str())))?,
        None => parse_scalar(value).unwrap_or_else(|| toml::Value::String(value.to_string())),
    };
    node.insert(last.clone(), parsed);
    Ok(())
}

fn parse_scalar(value: &str) -> Option<toml::Value> {
    let doc: toml::Table = format!("v = {value}").parse().ok()?;
    doc.get("v").cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../config.toml");

    fn load(env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_toml_and_env(
            SHIPPED,
            Path::new("config.toml"),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn shipped_config_is_valid_and_embedded() {
        let c = load(&[]).expect("shipped config loads");
        assert!(c.database.url.starts_with("sqlite://"));
        assert_eq!(c.cache.url, "memory://");
        assert_eq!(c.mqtt.listen.port(), 1884, "1883 belongs to the system Mosquitto");
        assert!(c.auth.jwt_secret.is_empty(), "derived from the seal key unless set");
        assert_eq!((c.auth.token_ttl_s, c.auth.min_password_len, c.auth.login_attempts_per_minute), (43200, 10, 10));
    }

    #[test]
    fn env_overrides_keep_types() {
        let c = load(&[
            ("HEFT__LIVENESS__CHECK_S", "5"),
            ("HEFT__NODE__ID", "7"),
            ("HEFT__DATABASE__URL", "postgres://root@127.0.0.1/test"),
            ("OTHER__X", "ignored"),
        ])
        .expect("overrides apply");
        assert_eq!(c.liveness.check_s, 5);
        assert_eq!(c.node.id, "7");
        assert!(c.is_production_database());
    }

    #[test]
    fn bad_values_name_their_key() {
        let msg = |env: &[(&str, &str)]| load(env).expect_err("must fail").to_string();
        assert_eq!(
            msg(&[("HEFT__LIVENESS__CHECK_S", "soon")]),
            "config key liveness.check_s: HEFT__LIVENESS__CHECK_S=\"soon\" is not of type integer"
        );
        assert!(msg(&[("HEFT__LIVENESS__HEALTHY_RATIO", "1.5")]).starts_with("config key liveness.healthy_ratio:"));
        assert!(msg(&[("HEFT__MQTT__LISTEN", "nowhere")]).starts_with("config key mqtt.listen:"));
        assert!(msg(&[("HEFT__MQTT__LISTEN_PORT", "1")]).contains("listen_port"));
        assert!(msg(&[("HEFT__DATABASE__URL", "mysql://x")]).starts_with("config key database.url:"));
        assert!(msg(&[("HEFT__AUTH__JWT_SECRET", "short")]).starts_with("config key auth.jwt_secret:"));
        assert!(msg(&[("HEFT__AUTH__MIN_PASSWORD_LEN", "4")]).starts_with("config key auth.min_password_len:"));
        assert!(msg(&[("HEFT__AUTH__TOKEN_TTL_S", "0")]).starts_with("config key auth.token_ttl_s:"));
        assert!(msg(&[("HEFT__AUTH__LOGIN_ATTEMPTS_PER_MINUTE", "0")]).starts_with("config key auth."));
        assert!(msg(&[("HEFT__HTTP__OPS_TOKEN", "x")]).contains("ops_token"), "the static token is gone");
        assert!(msg(&[("HEFT__SECURITY__SEAL_KEY", "bm90IDMyIGJ5dGVz")]).starts_with("config key security.seal_key:"));
        assert!(msg(&[("HEFT__WEIGHT_LOG__FLUSH_MS", "0")]).starts_with("config key weight_log.flush_ms:"));
        assert!(msg(&[("HEFT__WEIGHT_LOG__RETRY_MS", "0")]).starts_with("config key weight_log.retry_ms:"));
        assert!(
            msg(&[("HEFT__WEIGHT_LOG__BATCH_ROWS", "300000")]).starts_with("config key weight_log.batch_rows:"),
            "batch_rows above queue_rows"
        );
        // The simulator's public demo keys against a real platform would sign with a known key.
        assert!(
            msg(&[("HEFT__WECHAT__BASE_URL", "https://api.mch.weixin.qq.com")])
                .starts_with("config key wechat.merchant_key_file:")
        );
        assert!(
            msg(&[("HEFT__ALIPAY__GATEWAY_URL", "https://openapi.alipay.com/gateway.do")])
                .starts_with("config key alipay.app_key_file:")
        );
        assert!(msg(&[("HEFT__WECHAT__APIV3_KEY", "short")]).starts_with("config key wechat.apiv3_key:"));
        assert!(msg(&[("HEFT__MESSAGES__URL", "kafka://x")]).starts_with("config key messages.url:"));
        assert!(msg(&[("HEFT__MESSAGES__MAX_ATTEMPTS", "0")]).starts_with("config key messages.max_attempts:"));
        for bad in ["[3, 3]", "[8, 3]", "[0, 3]"] {
            let m = msg(&[("HEFT__ORDERS__CONFIRM_CHECKS_S", bad)]);
            assert!(m.starts_with("config key orders.confirm_checks_s:"), "{bad}: {m}");
        }
        assert!(msg(&[("HEFT__ORDERS__OPEN_WINDOW_S", "0")]).starts_with("config key orders.open_window_s:"));
        assert!(msg(&[("HEFT__PAYMENTS__PREAUTH_CAP_FEN", "0")]).starts_with("config key payments.preauth_cap_fen:"));
        assert!(
            msg(&[("HEFT__PAYMENTS__NOTIFY_BASE_URL", "https://heft.example.com/")])
                .starts_with("config key payments.notify_base_url:")
        );
        assert!(msg(&[("HEFT__PAY_SIM__TIME_SCALE", "0.5")]).starts_with("config key pay_sim.time_scale:"));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = load(&[
            ("HEFT__WECHAT__APP_SECRET", "wx-app-secret-must-not-leak"),
            ("HEFT__MESSAGES__URL", "amqp://heft:mq-password-must-not-leak@mq:5672/%2f"),
        ])
        .expect("valid");
        let shown = format!("{c:?}");
        for leak in
            ["wx-app-secret-must-not-leak", "mq-password-must-not-leak", &c.wechat.apiv3_key, &c.wechat.apiv2_key]
        {
            assert!(!shown.contains(leak), "{leak} in {shown}");
        }
        let secret = "jwt-secret-that-must-not-leak-0123456789";
        let c = load(&[("HEFT__DATABASE__URL", "postgres://heft:hunter2@db/heft"), ("HEFT__AUTH__JWT_SECRET", secret)])
            .expect("loads");
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"));
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.contains("token_ttl_s"), "{shown}");
    }
}
