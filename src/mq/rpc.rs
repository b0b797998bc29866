//! Requests between nodes: a request for a cabinet goes to the node that owns it, and its answer
//! comes back (DESIGN.md "Cluster"). The bytes are the caller's; this is only the transport.
//!
//! RabbitMQ: each node consumes its own queue, `{prefix}.node.{id}` (exclusive, auto-deleted, so
//! it goes with its node), and its replies on `{prefix}.reply.{id}`. A request is published to
//! the owner's queue through the default exchange, mandatory and confirmed: a node that is gone
//! has no queue, and the request comes back at once instead of waiting out the timeout. It
//! carries a correlation id and `reply_to`; it expires in its queue after the timeout, so a
//! node that wakes from a pause does not carry out requests nobody waits for any more.
//!
//! Embedded (one node): there is nobody to ask; every request is [`RpcError::Down`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation};
use tokio::sync::oneshot;

use super::MqError;

/// Longest pause between two attempts to reach RabbitMQ.
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// This node has no link to the others (embedded, or RabbitMQ unreachable now).
    #[error("no link to the other nodes")]
    Down,
    /// The node has no queue: it is gone.
    #[error("node {0} is not there")]
    Unroutable(String),
    #[error("node {node} did not answer within {after:?}")]
    Timeout { node: String, after: Duration },
    #[error(transparent)]
    Mq(#[from] MqError),
}

/// What answers the requests this node receives.
#[async_trait::async_trait]
pub trait Serve: Send + Sync + 'static {
    async fn serve(&self, request: Vec<u8>) -> Vec<u8>;
}

type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>>;

struct Linked {
    ch: Channel,
    reply_to: String,
}

/// This node's end of the requests between nodes; cheap to clone.
#[derive(Clone)]
pub struct Rpc {
    link: Option<Arc<Link>>,
}

struct Link {
    url: String,
    prefix: String,
    node: String,
    waiting: Waiting,
    linked: Mutex<Option<Arc<Linked>>>,
    server: OnceLock<Arc<dyn Serve>>,
}

impl Rpc {
    pub fn embedded() -> Rpc {
        Rpc { link: None }
    }

    /// Through RabbitMQ at `url`; links once [`serve`](Self::serve) is called.
    pub fn rabbit(url: String, prefix: &str, node: String) -> Rpc {
        let link = Link {
            url,
            prefix: prefix.to_string(),
            node,
            waiting: Arc::default(),
            linked: Mutex::new(None),
            server: OnceLock::new(),
        };
        Rpc { link: Some(Arc::new(link)) }
    }

    /// Answer requests with `server`, and link to the other nodes (again whenever the link drops).
    pub fn serve(&self, server: Arc<dyn Serve>) {
        let Some(link) = &self.link else { return };
        if link.server.set(server).is_ok() {
            tokio::spawn(link.clone().run());
        }
    }

    /// Send `request` to `node`'s queue and wait at most `timeout` for its answer.
    pub async fn call(&self, node: &str, request: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, RpcError> {
        let link = self.link.as_ref().ok_or(RpcError::Down)?;
        let linked = link.current().ok_or(RpcError::Down)?;
        let id = format!("{:032x}", rand::random::<u128>());
        let (tx, rx) = oneshot::channel();
        link.waiting().insert(id.clone(), tx);
        let answer = link.ask(&linked, node, &id, request, timeout).await;
        let answer = match answer {
            Ok(()) => match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(_)) => Err(RpcError::Down),
                Err(_) => Err(RpcError::Timeout { node: node.to_string(), after: timeout }),
            },
            Err(e) => Err(e),
        };
        link.waiting().remove(&id);
        answer
    }
}

impl Link {
    fn waiting(&self) -> MutexGuard<'_, HashMap<String, oneshot::Sender<Vec<u8>>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn current(&self) -> Option<Arc<Linked>> {
        self.linked.lock().unwrap_or_else(PoisonError::into_inner).clone().filter(|l| l.ch.status().connected())
    }

    fn queue_of(&self, node: &str) -> String {
        format!("{}.node.{node}", self.prefix)
    }

    /// Publish the request, mandatory, and wait for RabbitMQ to confirm it reached a queue.
    async fn ask(&self, l: &Linked, node: &str, id: &str, body: Vec<u8>, timeout: Duration) -> Result<(), RpcError> {
        let props = BasicProperties::default()
            .with_correlation_id(id.into())
            .with_reply_to(l.reply_to.as_str().into())
            .with_expiration(timeout.as_millis().to_string().as_str().into())
            .with_app_id(self.node.as_str().into());
        let opts = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
        let confirm = l.ch.basic_publish("".into(), self.queue_of(node).as_str().into(), opts, &body, props).await;
        let confirm = confirm.map_err(MqError::from)?;
        match tokio::time::timeout(timeout, confirm).await {
            Err(_) => Err(RpcError::Timeout { node: node.to_string(), after: timeout }),
            Ok(Err(e)) => Err(MqError::from(e).into()),
            Ok(Ok(Confirmation::Ack(None))) => Ok(()),
            Ok(Ok(Confirmation::Ack(Some(_)))) => Err(RpcError::Unroutable(node.to_string())),
            Ok(Ok(Confirmation::Nack(_) | Confirmation::NotRequested)) => Err(MqError::Refused("nack").into()),
        }
    }

    async fn run(self: Arc<Self>) {
        let mut pause = Duration::from_millis(200);
        loop {
            if let Err(e) = self.clone().link().await {
                tracing::warn!(error = %e, "link to the other nodes down; reconnecting");
            }
            *self.linked.lock().unwrap_or_else(PoisonError::into_inner) = None;
            // Whoever waits for an answer over the old link will not get it.
            self.waiting().clear();
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_RECONNECT_PAUSE);
        }
    }

    /// Declare this node's queues and serve until the connection fails.
    async fn link(self: Arc<Self>) -> Result<(), MqError> {
        let conn = super::rabbit::connect(&self.url).await?;
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        let own = QueueDeclareOptions { exclusive: true, auto_delete: true, ..QueueDeclareOptions::default() };
        let requests = self.queue_of(&self.node);
        let replies = format!("{}.reply.{}", self.prefix, self.node);
        for name in [&requests, &replies] {
            ch.queue_declare(name.as_str().into(), own, FieldTable::default()).await?;
        }
        let consume = |queue: String, tag: &str| {
            let ch = ch.clone();
            let tag = format!("{tag}-{}", self.node);
            async move {
                let opts = BasicConsumeOptions { no_ack: false, exclusive: true, ..BasicConsumeOptions::default() };
                ch.basic_consume(queue.as_str().into(), tag.as_str().into(), opts, FieldTable::default()).await
            }
        };
        let mut incoming = consume(requests, "rpc").await?;
        let mut answers = consume(replies.clone(), "rpc-reply").await?;
        *self.linked.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Arc::new(Linked { ch: ch.clone(), reply_to: replies }));
        tracing::info!(node = %self.node, "linked to the other nodes for routed requests");
        loop {
            tokio::select! {
                d = incoming.next() => {
                    let d = d.ok_or(MqError::Closed)??;
                    d.ack(BasicAckOptions::default()).await?;
                    tokio::spawn(self.clone().answer(ch.clone(), d.properties, d.data));
                }
                d = answers.next() => {
                    let d = d.ok_or(MqError::Closed)??;
                    d.ack(BasicAckOptions::default()).await?;
                    let id = d.properties.correlation_id().as_ref().map(ShortString::to_string).unwrap_or_default();
                    if let Some(tx) = self.waiting().remove(&id) {
                        let _ = tx.send(d.data);
                    }
                }
            }
        }
    }

    /// Carry out one request and send its answer back.
    async fn answer(self: Arc<Self>, ch: Channel, props: BasicProperties, body: Vec<u8>) {
        let (Some(reply_to), Some(id)) = (props.reply_to().clone(), props.correlation_id().clone()) else { return };
        let Some(server) = self.server.get() else { return };
        let reply = server.serve(body).await;
        let props = BasicProperties::default().with_correlation_id(id).with_app_id(self.node.as_str().into());
        let sent = ch.basic_publish("".into(), reply_to.as_str().into(), BasicPublishOptions::default(), &reply, props);
        if let Err(e) = sent.await {
            tracing::warn!(error = %e, "answer to a routed request not sent");
        }
    }
}
