//! actix actors and the node's other edges: the registry (supervisor of cabinet actors), one actor
//! per cabinet, the liveness watchdog, the outbox relay and its consumers, and the runner of the
//! flows' effects.

pub mod cabinet;
pub mod consumers;
pub mod effects;
pub mod live;
pub mod ownership;
pub mod registry;
pub mod relay;
pub mod route;
pub mod scheduler;
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
    /// Carries out what flows return after their commit.
    pub effects: Arc<dyn crate::flows::Runner>,
    /// When each cabinet last connected with its own token (a new frame key may come with it).
    pub connects: crate::device::auth::Connects,
    /// What changed, for the operators' live view on every node.
    pub live: crate::mq::live::LiveBus,
    /// The cabinets this node owns, and the renewal of their leases.
    pub ownership: ownership::Ownership,
    /// Requests to the node that owns a cabinet.
    pub router: route::Router,
}

pub type Shared = Arc<Services>;

impl Services {
    pub fn node_id(&self) -> &str {
        &self.config.node.id
    }

    /// What the flows work with.
    pub fn flows(&self) -> crate::flows::Ctx {
        crate::flows::Ctx {
            db: self.db.clone(),
            cache: self.cache.clone(),
            payments: self.payments.clone(),
            config: self.config.clone(),
        }
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
