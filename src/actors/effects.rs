//! Carrying out what flows return once their transaction has committed (`flows::Effects`): wake
//! the outbox relay, tell cabinet actors on this node what became of their orders and that their
//! setup changed, and tell the live view what changed.

use super::cabinet::door::{OpenForOrder, OrderEnded};
use super::cabinet::requests::SetupChanged as Reload;
use super::registry::{self, Cabinets};
use super::relay::Relay;
use crate::domain::order::OrderStatus;
use crate::flows::{Effects, OrderMoved, Runner, SetupChanged};
use crate::mq::live::LiveBus;

/// The node's one runner of effects.
pub struct EffectRunner {
    pub relay: Relay,
    pub cabinets: Cabinets,
    pub live: LiveBus,
}

impl EffectRunner {
    /// Tell the cabinet's actor on this node what became of an order: authorised → open the door;
    /// cancelled → let go of the session. Without an actor here there is nobody to tell: the
    /// order's timers finish it (`door.open_check`).
    fn tell(&self, moved: &OrderMoved) {
        let Some(addr) = registry::cabinet(&self.cabinets, &moved.sn) else { return };
        match moved.status {
            OrderStatus::Authorized => addr.do_send(OpenForOrder { order_id: moved.order_id, send: true }),
            OrderStatus::Cancelled => addr.do_send(OrderEnded { order_id: moved.order_id }),
            _ => {}
        }
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
            Some(SetupChanged::All) => registry::all(&self.cabinets).iter().for_each(|a| a.do_send(Reload)),
            Some(SetupChanged::Cabinets(sns)) => {
                sns.iter().filter_map(|sn| registry::cabinet(&self.cabinets, sn)).for_each(|a| a.do_send(Reload))
            }
            None => {}
        }
        for change in effects.live {
            self.live.publish(change);
        }
    }
}
