//! The use cases: one module per thing that happens (a scan, an authorisation, a settlement, a
//! charge…). Each flow owns its database transaction, asks `domain/` what to do, stores it
//! through `db/`, enqueues its typed messages (`mq::topics`) in the same transaction, and returns
//! what must happen once that transaction has committed ([`Effects`]). The edges — HTTP handlers,
//! queue consumers, the cabinet actors — call flows and hand the effects to one [`Runner`].

pub mod alerts;
pub mod authorise;
pub mod bills;
pub mod cabinet;
pub mod callbacks;
pub mod capture;
pub mod catalogue;
pub mod commands;
pub mod door;
pub mod messages;
pub mod operators;
pub mod order;
pub mod reconcile;
pub mod refund;
pub mod release;
pub mod report;
pub mod restock;
pub mod review;
pub mod scan;
pub mod sessions;
pub mod settle;
pub mod setup;
pub mod stock;
pub mod stocktake;

use std::sync::Arc;

use crate::cache::Cache;
use crate::config::Config;
use crate::db::Db;
use crate::domain::live::Change;
use crate::domain::order::OrderStatus;
use crate::pay::Gateways;

/// What the flows work with, shared by the whole node.
#[derive(Clone)]
pub struct Ctx {
    pub db: Db,
    pub cache: Arc<dyn Cache>,
    pub payments: Gateways,
    pub config: Arc<Config>,
}

/// An order moved in a way its cabinet's actor must hear of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderMoved {
    pub sn: String,
    pub order_id: i64,
    pub status: OrderStatus,
}

/// What must happen once a flow's transaction has committed. Nothing in it may be lost if it is
/// not carried out: messages are in the outbox (waking the relay only makes them go now), and an
/// actor that is not told finds out from its own timers.
#[derive(Debug, Default, PartialEq)]
#[must_use = "effects must be handed to the runner after the commit"]
pub struct Effects {
    /// Messages were enqueued: the relay should look now rather than at its next poll.
    pub wake_relay: bool,
    /// Orders whose cabinet's actor must be told (authorised: open the door; cancelled: let go).
    pub orders: Vec<OrderMoved>,
    /// Cabinets whose actors on this node must reload their setup (new labels, a changed cabinet
    /// type). One in a session reloads when it is free; one not connected, at its next login.
    pub setup_changed: Option<SetupChanged>,
    /// What changed, for the operators' live view (`actors::live`): published once committed.
    pub live: Vec<Change>,
}

/// Whose setup changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupChanged {
    /// Every cabinet's (a cabinet type, which any of them may be).
    All,
    /// These cabinets' (by serial number).
    Cabinets(Vec<String>),
}

impl Effects {
    pub fn none() -> Effects {
        Effects::default()
    }

    /// Messages were enqueued.
    pub fn wake() -> Effects {
        Effects { wake_relay: true, ..Effects::default() }
    }

    /// Tell the order's cabinet (and wake the relay: every order move enqueues something).
    pub fn order_moved(mut self, moved: OrderMoved) -> Effects {
        self.wake_relay = true;
        self.orders.push(moved);
        self
    }

    /// Tell these cabinets' actors to reload their setup (none: nothing to do).
    pub fn setup_changed(sns: Vec<String>) -> Effects {
        let setup_changed = (!sns.is_empty()).then_some(SetupChanged::Cabinets(sns));
        Effects { setup_changed, ..Effects::default() }
    }

    /// Tell every cabinet's actor to reload its setup.
    pub fn every_setup_changed() -> Effects {
        Effects { setup_changed: Some(SetupChanged::All), ..Effects::default() }
    }

    /// Tell the live view that `change` happened.
    pub fn changed(mut self, change: Change) -> Effects {
        if !self.live.contains(&change) {
            self.live.push(change);
        }
        self
    }

    /// Messages were enqueued for order `id`, which changed.
    pub fn order_changed(id: i64) -> Effects {
        Effects::wake().changed(Change::Order { id })
    }

    /// Both sets of effects.
    pub fn and(mut self, other: Effects) -> Effects {
        self.wake_relay |= other.wake_relay;
        self.orders.extend(other.orders);
        for change in other.live {
            self = self.changed(change);
        }
        self.setup_changed = match (self.setup_changed, other.setup_changed) {
            (Some(SetupChanged::All), _) | (_, Some(SetupChanged::All)) => Some(SetupChanged::All),
            (Some(SetupChanged::Cabinets(mut a)), Some(SetupChanged::Cabinets(b))) => {
                a.extend(b);
                Some(SetupChanged::Cabinets(a))
            }
            (a, b) => a.or(b),
        };
        self
    }
}

/// Carries effects out (`actors::effects::EffectRunner`). Handed around as a trait object so that
/// flows and consumers need not know the actors.
pub trait Runner: Send + Sync {
    fn run(&self, effects: Effects);
}

/// Why a flow could not finish: storage, the cache, or a payment platform failed. Refusals a
/// person can act on are each flow's own error type.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    #[error(transparent)]
    Platform(#[from] crate::pay::PayError),
}

impl From<diesel::result::Error> for FlowError {
    fn from(e: diesel::result::Error) -> Self {
        FlowError::Db(e.into())
    }
}

/// `s` seconds as a chrono duration (saturating).
pub(crate) fn secs(s: u64) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000))
}
