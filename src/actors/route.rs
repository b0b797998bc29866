//! Routing to a cabinet's owner (DESIGN.md "Cluster"). A cabinet's actor lives on the node that
//! owns it; what another node must tell or ask it goes to that node ([`mq::rpc`]). The owner is
//! looked up in this node's own table first, then in the cache. When the owner does not answer in
//! time, or answers that it no longer owns the cabinet, the owner is looked up once more and asked
//! again if it changed; otherwise the request fails as [`RouteError::Unreachable`].
//!
//! What travels is a [`Routed`]: something the node's own effects tell a cabinet ([`Tell`]), or
//! a request of the HTTP API (its body opaque here: the web layer reads and answers it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::cabinet::door::{OpenForOrder, OrderEnded};
use super::cabinet::requests::SetupChanged as Reload;
use super::ownership::Ownership;
use super::registry::{self, Cabinets};
use crate::cache::Cache;
use crate::domain::door::Opening;
use crate::domain::order::OrderStatus;
use crate::metrics::Metrics;
use crate::mq::rpc::{Rpc, RpcError};

/// A request to the node that owns `sn`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Routed {
    pub sn: String,
    pub what: What,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum What {
    Tell(Tell),
    /// Tell every cabinet's actor on the node (`sn` is empty).
    TellAll(Tell),
    /// A request of the HTTP API, as the web layer wrote it.
    Call(serde_json::Value),
}

/// What one node's effects and consumers tell a cabinet's actor on another.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tell {
    /// An order moved (authorised: open the door; cancelled: let go).
    OrderMoved { order_id: i64, status: OrderStatus },
    /// Reload the setup (a product or cabinet type changed).
    SetupChanged,
    /// Where does the order's door stand (and send `open` again when `send`)?
    OpenForOrder { order_id: i64, send: bool },
}

/// The owner's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// This node does not own the cabinet (any more).
    NotOwner,
    Done,
    Opening(Opening),
    /// The HTTP API's answer: its status and body.
    Answer {
        status: u16,
        body: serde_json::Value,
    },
    /// The request did not read.
    Refused(String),
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("cabinet {sn}'s node did not answer ({cause})")]
    Unreachable { sn: String, cause: String },
}

/// Where a cabinet's actor is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// On this node.
    Here,
    /// On another node.
    Node(String),
    /// Nowhere: the cabinet is not connected to any node.
    Nobody,
}

/// How a routed request went.
#[derive(Debug)]
pub enum Routing {
    /// The cabinet's actor is here, or nowhere: the caller acts locally.
    Local(Owner),
    Remote(Reply),
}

/// The node's router; cheap to clone.
#[derive(Clone)]
pub struct Router {
    pub rpc: Rpc,
    cache: Arc<dyn Cache>,
    ownership: Ownership,
    metrics: Metrics,
    timeout: Duration,
}

impl Router {
    pub fn new(rpc: Rpc, cache: Arc<dyn Cache>, ownership: Ownership, metrics: Metrics, timeout: Duration) -> Router {
        Router { rpc, cache, ownership, metrics, timeout }
    }

    /// Who owns the cabinet now.
    pub async fn owner(&self, sn: &str) -> Owner {
        if self.ownership.epoch(sn).is_some() {
            return Owner::Here;
        }
        match self.cache.owner(sn).await {
            // Held in the cache's name, not in this node's table: a lease of an earlier run of
            // this node, lapsing. Nobody serves it.
            Ok(Some((node, _))) if node == self.ownership.node() => Owner::Nobody,
            Ok(Some((node, _))) => Owner::Node(node),
            Ok(None) => Owner::Nobody,
            Err(e) => {
                tracing::warn!(%sn, error = %e, "cabinet owner not read; taking it as not connected");
                Owner::Nobody
            }
        }
    }

    /// Send `what` to the cabinet's owner, or say that it is local.
    pub async fn route(&self, sn: &str, what: What) -> Result<Routing, RouteError> {
        let body = serde_json::to_vec(&Routed { sn: sn.to_string(), what })
            .map_err(|e| RouteError::Unreachable { sn: sn.to_string(), cause: e.to_string() })?;
        let mut tried: Option<String> = None;
        loop {
            let node = match self.owner(sn).await {
                Owner::Node(node) if tried.as_deref() != Some(node.as_str()) => node,
                Owner::Node(node) => return Err(self.unreachable(sn, format!("{node} still named as owner"))),
                local => return Ok(Routing::Local(local)),
            };
            let started = Instant::now();
            let reply = self.rpc.call(&node, body.clone(), self.timeout).await;
            self.metrics.route_seconds.observe(started.elapsed().as_secs_f64());
            let outcome = match &reply {
                Ok(bytes) => match serde_json::from_slice::<Reply>(bytes) {
                    Ok(Reply::NotOwner) => Err("not_owner".to_string()),
                    Ok(reply) => Ok(reply),
                    Err(e) => return Err(self.unreachable(sn, format!("answer from {node} does not read: {e}"))),
                },
                Err(RpcError::Down) => return Err(self.unreachable(sn, RpcError::Down.to_string())),
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(reply) => {
                    self.metrics.route_requests.with_label_values(&["ok"]).inc();
                    return Ok(Routing::Remote(reply));
                }
                Err(cause) if tried.is_some() => return Err(self.unreachable(sn, cause)),
                Err(cause) => {
                    let label = if cause == "not_owner" { "not_owner" } else { "unreachable" };
                    self.metrics.route_requests.with_label_values(&[label]).inc();
                    tracing::info!(%sn, %node, %cause, "routed request failed; looking the owner up again");
                    tried = Some(node);
                }
            }
        }
    }

    /// Tell every other node's actors (the nodes that reported themselves lately).
    pub async fn everywhere(&self, tell: Tell) {
        let nodes = match self.cache.node_reports().await {
            Ok(nodes) => nodes,
            Err(e) => return tracing::warn!(error = %e, "nodes not read; the other nodes' actors are not told"),
        };
        let Ok(body) = serde_json::to_vec(&Routed { sn: String::new(), what: What::TellAll(tell) }) else { return };
        for (node, _) in nodes.into_iter().filter(|(n, _)| n != self.ownership.node()) {
            if let Err(e) = self.rpc.call(&node, body.clone(), self.timeout).await {
                tracing::warn!(%node, error = %e, "node not told");
            }
        }
    }

    fn unreachable(&self, sn: &str, cause: String) -> RouteError {
        self.metrics.route_requests.with_label_values(&["unreachable"]).inc();
        RouteError::Unreachable { sn: sn.to_string(), cause }
    }
}

/// Tell the cabinet's actor on the node that owns the cabinet; when nobody does, its actor here if
/// it has one. Without either nobody is told, and the order's own timers finish what it would
/// have done. (An actor here that does not own the cabinet, say one started to configure it
/// while it was offline, is never told: the owner elsewhere holds its sessions.)
pub async fn tell(router: &Router, cabinets: &Cabinets, sn: &str, tell: Tell) -> Reply {
    match router.route(sn, What::Tell(tell.clone())).await {
        Ok(Routing::Remote(reply)) => reply,
        Ok(Routing::Local(_)) => told_here(cabinets, sn, &tell).await.unwrap_or(Reply::NotOwner),
        Err(e) => {
            tracing::warn!(%sn, error = %e, "cabinet not told");
            Reply::NotOwner
        }
    }
}

/// Answer what another node tells this one's actors; `None` for an HTTP API request (the web
/// layer's to answer).
pub async fn serve_tell(cabinets: &Cabinets, ownership: &Ownership, routed: &Routed) -> Option<Reply> {
    match &routed.what {
        What::TellAll(Tell::SetupChanged) => {
            registry::all(cabinets).iter().for_each(|a| a.do_send(Reload));
            Some(Reply::Done)
        }
        What::TellAll(_) => Some(Reply::Refused("only a setup change is told to every cabinet".into())),
        What::Tell(_) | What::Call(_) if ownership.epoch(&routed.sn).is_none() => Some(Reply::NotOwner),
        What::Tell(tell) => Some(told_here(cabinets, &routed.sn, tell).await.unwrap_or(Reply::NotOwner)),
        What::Call(_) => None,
    }
}

/// Tell the cabinet's actor on this node, if it has one.
pub async fn told_here(cabinets: &Cabinets, sn: &str, tell: &Tell) -> Option<Reply> {
    let addr = registry::cabinet(cabinets, sn)?;
    Some(match *tell {
        Tell::OrderMoved { order_id, status: OrderStatus::Authorized } => {
            addr.do_send(OpenForOrder { order_id, send: true });
            Reply::Done
        }
        Tell::OrderMoved { order_id, status: OrderStatus::Cancelled } => {
            addr.do_send(OrderEnded { order_id });
            Reply::Done
        }
        Tell::OrderMoved { .. } => Reply::Done,
        Tell::SetupChanged => {
            addr.do_send(Reload);
            Reply::Done
        }
        Tell::OpenForOrder { order_id, send } => {
            Reply::Opening(addr.send(OpenForOrder { order_id, send }).await.unwrap_or(Opening::NotHeld))
        }
    })
}
