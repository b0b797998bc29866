//! Carrying out what flows return once their transaction has committed (`flows::Effects`): wake
//! the outbox relay, tell cabinet actors (here, or on the node that owns them) what became of
//! their orders and that their setup changed, and tell the live view what changed.

use super::registry::{self, Cabinets};
use super::relay::Relay;
use super::route::{self, Router, Tell};
use crate::domain::order::OrderStatus;
use crate::flows::{Effects, OrderMoved, Runner, SetupChanged};
use crate::mq::live::LiveBus;

/// The node's one runner of effects.
pub struct EffectRunner {
    pub relay: Relay,
    pub cabinets: Cabinets,
    pub live: LiveBus,
    pub router: Router,
}

impl EffectRunner {
    /// Tell the cabinet's actor what became of an order: authorised → open the door; cancelled →
    /// let go of the session. Without an actor anywhere there is nobody to tell: the order's
    /// timers finish it (`door.open_check`).
    fn tell(&self, moved: &OrderMoved) {
        if !matches!(moved.status, OrderStatus::Authorized | OrderStatus::Cancelled) {
            return;
        }
        let (router, cabinets, sn) = (self.router.clone(), self.cabinets.clone(), moved.sn.clone());
        let tell = Tell::OrderMoved { order_id: moved.order_id, status: moved.status };
        // A plain tokio task: the consumers run the effects outside any actix arbiter.
        tokio::spawn(async move { route::tell(&router, &cabinets, &sn, tell).await });
    }

    /// Every node's actors reload their setup.
    fn reload_everywhere(&self) {
        registry::all(&self.cabinets).iter().for_each(|a| a.do_send(super::cabinet::requests::SetupChanged));
        let router = self.router.clone();
        tokio::spawn(async move { router.everywhere(Tell::SetupChanged).await });
    }
}

impl Runner for EffectRunner {
    fn run(&self, effects: Effects) {
        if effects.wake_relay {
            self.relay.wake();
        }
        for moved in &effects.orders {
            self.tell(moved);
        }
        match effects.setup_changed {
            Some(SetupChanged::All) => self.reload_everywhere(),
            Some(SetupChanged::Cabinets(sns)) => {
                for sn in sns {
                    let (router, cabinets) = (self.router.clone(), self.cabinets.clone());
                    tokio::spawn(async move { route::tell(&router, &cabinets, &sn, Tell::SetupChanged).await });
                }
            }
            None => {}
        }
        for change in effects.live {
            self.live.publish(change);
        }
    }
}
