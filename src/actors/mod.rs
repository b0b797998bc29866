//! actix actors: the registry (supervisor of cabinet actors), one actor per cabinet, and the
//! liveness watchdog.

pub mod cabinet;
pub mod purchase;
pub mod registry;
pub mod relay;
pub mod watchdog;
pub mod weight_log;

use std::sync::Arc;

use crate::cache::Cache;
use crate::config::Config;
use crate::db::Db;
use crate::device::Downlink;
use crate::metrics::Metrics;
use crate::secrets::SealKey;

/// What every actor needs, shared by the whole node.
pub struct Services {
    pub config: Arc<Config>,
    pub db: Db,
    pub cache: Arc<dyn Cache>,
    pub metrics: Metrics,
    pub seal: SealKey,
    pub downlink: Downlink,
    pub weight_log: weight_log::WeightLog,
    /// The outbox relay: wake it after committing a transaction that enqueued a message.
    pub relay: relay::Relay,
    /// WeChat Pay Score and Alipay (or the simulator of both).
    pub payments: crate::pay::Gateways,
}

pub type Shared = Arc<Services>;

impl Services {
    pub fn node_id(&self) -> &str {
        &self.config.node.id
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
