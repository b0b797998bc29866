//! The registry: starts one cabinet actor per cabinet that speaks to this node, keeps the routing
//! tables (the bridge's, of inboxes, and the node's own, of actors), and restarts an actor that
//! crashed (its state reloaded from storage).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use actix::prelude::*;

use super::Shared;
use super::cabinet::{CabinetActor, CabinetView, Crash, Gone, Inspect, LivenessChanged};
use crate::device::bridge::{Inbound, Routes};
use crate::domain::cabinet::Sn;
use crate::domain::liveness::Liveness;

/// sn → cabinet actor on this node, for what the node itself tells cabinets (effects, consumers,
/// the ops API); written only by the registry.
pub type Cabinets = Arc<RwLock<HashMap<String, Addr<CabinetActor>>>>;

/// The cabinet's actor on this node, if it has a live one.
pub fn cabinet(cabinets: &Cabinets, sn: &str) -> Option<Addr<CabinetActor>> {
    cabinets.read().ok().and_then(|r| r.get(sn).cloned()).filter(|a| a.connected())
}

/// Every cabinet actor on this node.
pub fn all(cabinets: &Cabinets) -> Vec<Addr<CabinetActor>> {
    cabinets.read().map(|r| r.values().filter(|a| a.connected()).cloned().collect()).unwrap_or_default()
}

pub struct Registry {
    svc: Shared,
    /// The bridge's table: sn → the actor's inbox for frames.
    routes: Routes,
    cabinets: Cabinets,
    /// Generation of the current actor per sn, so a late notice from an old actor is ignored.
    generations: HashMap<String, u64>,
}

impl Registry {
    pub fn new(svc: Shared, routes: Routes, cabinets: Cabinets) -> Self {
        Registry { svc, routes, cabinets, generations: HashMap::new() }
    }

    fn route(&self, sn: &str) -> Option<Addr<CabinetActor>> {
        cabinet(&self.cabinets, sn)
    }

    /// Start a cabinet actor; `first` (the frame that called for it) is queued before the bridge
    /// can see the new route, so the cabinet's frames keep their order.
    fn spawn(
        &mut self,
        sn: &Sn,
        restarted: bool,
        first: Option<Inbound>,
        ctx: &mut Context<Self>,
    ) -> Addr<CabinetActor> {
        let generation = self.generations.get(sn.as_str()).copied().unwrap_or(0) + 1;
        self.generations.insert(sn.to_string(), generation);
        let gone = ctx.address().recipient();
        let addr = CabinetActor::new(sn.clone(), self.svc.clone(), gone, generation, restarted).start();
        if let Some(f) = first {
            addr.do_send(f);
        }
        if let Ok(mut cabinets) = self.cabinets.write() {
            cabinets.insert(sn.to_string(), addr.clone());
        }
        if let Ok(mut routes) = self.routes.write() {
            routes.insert(sn.to_string(), addr.clone().recipient());
        }
        addr
    }

    fn forget(&mut self, sn: &str, generation: u64) -> bool {
        if self.generations.get(sn) != Some(&generation) {
            return false;
        }
        self.generations.remove(sn);
        if let Ok(mut cabinets) = self.cabinets.write() {
            cabinets.remove(sn);
        }
        if let Ok(mut routes) = self.routes.write() {
            routes.remove(sn);
        }
        true
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

/// A frame for a cabinet the bridge had no live route to.
impl Handler<Inbound> for Registry {
    type Result = ();

    fn handle(&mut self, f: Inbound, ctx: &mut Context<Self>) {
        match self.route(f.sn.as_str()) {
            Some(addr) => addr.do_send(f),
            None => {
                self.spawn(&f.sn.clone(), false, Some(f), ctx);
            }
        }
    }
}

/// A cabinet actor is gone: forgotten when it stopped on purpose, started again when it crashed.
impl Handler<Gone> for Registry {
    type Result = ();

    fn handle(&mut self, m: Gone, ctx: &mut Context<Self>) {
        if self.generations.get(&m.sn) != Some(&m.generation) {
            return;
        }
        if !m.crashed {
            self.forget(&m.sn, m.generation);
            return;
        }
        let Ok(sn) = Sn::parse(&m.sn) else { return };
        tracing::error!(sn = %m.sn, generation = m.generation, "cabinet actor crashed; restarting it");
        self.svc.metrics.actor_restarts.inc();
        self.spawn(&sn, true, None, ctx);
    }
}

/// Tell the cabinet's actor on this node, if any, that the watchdog changed its liveness.
#[derive(Message)]
#[rtype(result = "()")]
pub struct NotifyLiveness {
    pub sn: String,
    pub liveness: Liveness,
}

impl Handler<NotifyLiveness> for Registry {
    type Result = ();

    fn handle(&mut self, m: NotifyLiveness, _ctx: &mut Context<Self>) {
        if let Some(addr) = self.route(&m.sn) {
            addr.do_send(LivenessChanged(m.liveness));
        }
    }
}

/// Fault injection for the supervision tests.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct CrashCabinet(pub String);

impl Handler<CrashCabinet> for Registry {
    type Result = bool;

    fn handle(&mut self, m: CrashCabinet, _ctx: &mut Context<Self>) -> bool {
        match self.route(&m.0) {
            Some(addr) => {
                addr.do_send(Crash);
                true
            }
            None => false,
        }
    }
}

/// The actor's view of one cabinet, if it has an actor on this node.
#[derive(Message)]
#[rtype(result = "Option<Addr<CabinetActor>>")]
pub struct Lookup(pub String);

impl Handler<Lookup> for Registry {
    type Result = Option<Addr<CabinetActor>>;

    fn handle(&mut self, m: Lookup, _ctx: &mut Context<Self>) -> Self::Result {
        self.route(&m.0)
    }
}

/// The cabinet's actor on this node, started (state loaded from the database) when it has none:
/// operators may configure a cabinet that is not connected.
#[derive(Message)]
#[rtype(result = "Addr<CabinetActor>")]
pub struct Ensure(pub Sn);

impl Handler<Ensure> for Registry {
    type Result = MessageResult<Ensure>;

    fn handle(&mut self, m: Ensure, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(addr) = self.route(m.0.as_str()) {
            return MessageResult(addr);
        }
        MessageResult(self.spawn(&m.0, false, None, ctx))
    }
}

/// Ask a cabinet's actor for its view; `None` when it has none on this node.
pub async fn inspect(registry: &Addr<Registry>, sn: &str) -> Option<CabinetView> {
    let addr = registry.send(Lookup(sn.to_string())).await.ok().flatten()?;
    addr.send(Inspect).await.ok()
}
