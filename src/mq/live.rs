//! The live bus: what changed ([`Change`]), from the flows and cabinet actors that changed it to
//! every node's live hub (`actors::live`). Unlike the outbox's messages these are news, not
//! work: at most once, never stored. A node that may have missed some (its link to the others
//! was down, or its hub fell behind) is told [`Heard::Missed`] and reads everything again.
//!
//! Embedded: an in-process broadcast. Production (`messages.url = amqp://…`): besides that, a
//! RabbitMQ fanout exchange `{prefix}.live`, with one exclusive, auto-deleted queue per node, so
//! a browser on one node sees a cabinet held by another. A node skips its own changes coming
//! back from the exchange (it heard them in-process already).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, ExchangeKind};
use tokio::sync::{broadcast, mpsc};

use super::MqError;
use crate::domain::live::Change;

/// What a hub hears.
#[derive(Debug, Clone, PartialEq)]
pub enum Heard {
    Change(Arc<Change>),
    /// Changes may have been lost on the way: read everything again.
    Missed,
}

/// Longest pause between two attempts to reach RabbitMQ.
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(10);

/// The node's live bus; cheap to clone.
#[derive(Clone)]
pub struct LiveBus {
    local: broadcast::Sender<Heard>,
    /// To the other nodes (production); full means the link is down or slow: dropped.
    out: Option<mpsc::Sender<Arc<Change>>>,
}

impl LiveBus {
    /// This node only; `backlog` changes may wait for a hub before it counts as behind.
    pub fn embedded(backlog: usize) -> LiveBus {
        let (local, _) = broadcast::channel(backlog.max(1));
        LiveBus { local, out: None }
    }

    /// Every node through RabbitMQ at `url`, under `prefix`; `node` names this one. Connects in
    /// the background, and again whenever the link drops.
    pub fn rabbit(backlog: usize, url: String, prefix: &str, node: String) -> LiveBus {
        let (local, _) = broadcast::channel(backlog.max(1));
        let (out, rx) = mpsc::channel(backlog.max(1));
        let link = Link { url, exchange: format!("{prefix}.live"), node, local: local.clone() };
        tokio::spawn(link.run(rx));
        LiveBus { local, out: Some(out) }
    }

    /// Tell every hub. Never waits: a change nobody can take now is dropped (a hub that missed it
    /// hears [`Heard::Missed`]).
    pub fn publish(&self, change: Change) {
        let change = Arc::new(change);
        let _ = self.local.send(Heard::Change(change.clone()));
        if let Some(out) = &self.out
            && out.try_send(change).is_err()
        {
            let _ = self.local.send(Heard::Missed);
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Heard> {
        self.local.subscribe()
    }
}

/// This node's link to the others.
struct Link {
    url: String,
    exchange: String,
    node: String,
    local: broadcast::Sender<Heard>,
}

impl Link {
    async fn run(self, mut rx: mpsc::Receiver<Arc<Change>>) {
        let mut pause = Duration::from_millis(200);
        loop {
            match self.serve(&mut rx).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, "live bus link down; reconnecting"),
            }
            // Whatever other nodes published meanwhile was not heard here.
            let _ = self.local.send(Heard::Missed);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_RECONNECT_PAUSE);
            // Changes waiting to go out are stale by now; the other nodes are told they missed
            // some when their own link sees this one's queue gone.
            while rx.try_recv().is_ok() {}
        }
    }

    /// Publish and consume until the connection fails; `Ok` once the bus is dropped.
    async fn serve(&self, rx: &mut mpsc::Receiver<Arc<Change>>) -> Result<(), MqError> {
        let conn = super::rabbit::connect(&self.url).await?;
        let ch = conn.create_channel().await?;
        let queue = self.declare(&ch).await?;
        let mut consumer = ch
            .basic_consume(
                queue.as_str().into(),
                format!("live-{}", self.node).as_str().into(),
                BasicConsumeOptions { no_ack: false, exclusive: true, ..BasicConsumeOptions::default() },
                FieldTable::default(),
            )
            .await?;
        // Connected now: anything before this was not heard.
        let _ = self.local.send(Heard::Missed);
        tracing::info!(exchange = %self.exchange, "live bus linked to the other nodes");
        loop {
            tokio::select! {
                change = rx.recv() => {
                    let Some(change) = change else { return Ok(()) };
                    self.send(&ch, &change).await?;
                }
                delivery = consumer.next() => {
                    let Some(delivery) = delivery else { return Err(MqError::Closed) };
                    let delivery = delivery?;
                    let from = delivery.properties.app_id().as_ref().map(|s| s.as_str().to_string());
                    if from.as_deref() != Some(self.node.as_str()) {
                        match serde_json::from_slice::<Change>(&delivery.data) {
                            Ok(change) => {
                                let _ = self.local.send(Heard::Change(Arc::new(change)));
                            }
                            Err(e) => tracing::warn!(error = %e, "a live change from another node does not read"),
                        }
                    }
                    delivery.ack(BasicAckOptions::default()).await?;
                }
            }
        }
    }

    /// The fanout exchange (durable, so it outlives every node) and this node's own queue.
    async fn declare(&self, ch: &Channel) -> Result<String, lapin::Error> {
        let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
        ch.exchange_declare(self.exchange.as_str().into(), ExchangeKind::Fanout, durable, FieldTable::default())
            .await?;
        let own = QueueDeclareOptions { exclusive: true, auto_delete: true, ..QueueDeclareOptions::default() };
        let queue = ch.queue_declare("".into(), own, FieldTable::default()).await?;
        let name = queue.name().as_str().to_string();
        ch.queue_bind(
            name.as_str().into(),
            self.exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        Ok(name)
    }

    async fn send(&self, ch: &Channel, change: &Change) -> Result<(), lapin::Error> {
        let body = serde_json::to_vec(change).unwrap_or_default();
        let props = BasicProperties::default().with_app_id(self.node.as_str().into());
        // Not confirmed: news, not work; one lost is what `Missed` is for.
        ch.basic_publish(self.exchange.as_str().into(), "".into(), BasicPublishOptions::default(), &body, props)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_hub_of_the_node_hears_a_change() {
        let bus = LiveBus::embedded(8);
        let (mut a, mut b) = (bus.subscribe(), bus.subscribe());
        bus.publish(Change::Order { id: 7 });
        for rx in [&mut a, &mut b] {
            assert_eq!(rx.recv().await.expect("heard"), Heard::Change(Arc::new(Change::Order { id: 7 })));
        }
    }
}
