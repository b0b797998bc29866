//! The embedded rumqttd broker.
//!
//! The router runs on its own thread (rumqttd's design). The MQTT listener runs as a future on an
//! actix Arbiter we own, because rumqttd's own `Broker::start` can never be stopped; stopping the
//! Arbiter closes the listener and every client connection, so `serve` can restart on the same port.
//! The router thread stays, idle, until the process exits (rumqttd has no way to end it).

use std::sync::{Arc, Mutex};

use actix_rt::Arbiter;
use rumqttd::local::{LinkBuilder, LinkRx, LinkTx};
use rumqttd::{ConnectionSettings, LinkType, RouterConfig, Server, ServerSettings};

use super::DeviceError;
use crate::config::MqttConfig;

pub type AuthFn =
    Box<dyn Fn(String, String, String) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync + 'static>;

/// Opens a local link to the router under a client id (what [`Downlink::kick`] needs, without
/// naming rumqttd's private event type).
type Connect = Arc<dyn Fn(&str) -> Result<LinkTx, String> + Send + Sync>;

/// Publishes downstream frames through the broker's local link. Local publishes are QoS 0
/// (rumqttd's limit), which is why every command has its own ack in the protocol.
#[derive(Clone)]
pub struct Downlink {
    tx: Arc<Mutex<LinkTx>>,
    connect: Connect,
}

impl Downlink {
    pub fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), DeviceError> {
        let mut tx = self
            .tx
            .lock()
            .map_err(|_| DeviceError::Publish { topic: topic.clone(), reason: "link poisoned".into() })?;
        tx.try_publish(topic.clone(), payload)
            .map(|_| ())
            .map_err(|e| DeviceError::Publish { topic, reason: e.to_string() })
    }

    /// Drop the device connection with this client id, if the broker has one. The router drops
    /// a connection when another connects with its client id (MQTT 3.1.1 §3.1.4): a local link
    /// does so under the id, then disconnects itself.
    pub async fn kick(&self, client_id: &str) -> Result<(), DeviceError> {
        let (connect, id) = (self.connect.clone(), client_id.to_string());
        // Building a link waits for the router's answer on a blocking channel.
        let link = tokio::task::spawn_blocking(move || connect(&id))
            .await
            .map_err(|e| DeviceError::Link(e.to_string()))?
            .map_err(DeviceError::Link);
        let mut tx = link?;
        let bye =
            rumqttd::protocol::Disconnect { reason_code: rumqttd::protocol::DisconnectReasonCode::NormalDisconnection };
        tx.send(rumqttd::protocol::Packet::Disconnect(bye, None))
            .await
            .map_err(|e| DeviceError::Link(e.to_string()))?;
        Ok(())
    }
}

/// A running broker: the listener's Arbiter and the link the bridge reads.
pub struct Broker {
    listener: Arbiter,
    pub downlink: Downlink,
    /// Kept so the strays' link stays subscribed.
    _strays_tx: LinkTx,
}

/// What the broker hands the bridge: every cabinet's upstream frames, and frames on topics
/// outside the protocol (to be counted).
pub struct Links {
    pub up: LinkRx,
    pub strays: LinkRx,
}

impl Broker {
    /// Start the router, open the bridge's local links and the listener. Returns the broker and
    /// the links' receiving halves for the bridge.
    pub async fn start(cfg: &MqttConfig, auth: AuthFn) -> Result<(Broker, Links), DeviceError> {
        // Fail fast, with the address, when the port is taken; rumqttd would only log it. (tokio
        // sets SO_REUSEADDR like rumqttd's own bind does, so a restart is not refused for sockets
        // of the previous run in TIME_WAIT.)
        drop(
            tokio::net::TcpListener::bind(cfg.listen)
                .await
                .map_err(|source| DeviceError::Bind { addr: cfg.listen, source })?,
        );

        let router = rumqttd::Router::new(0, router_config(cfg));
        let router_tx = router.spawn();
        let link = |id: &str| {
            LinkBuilder::new(id, router_tx.clone())
                .dynamic_filters(true)
                .build()
                .map_err(|e| DeviceError::Link(e.to_string()))
        };
        let (link_tx, up) = subscribed(link("heft-bridge"), &[super::topic::UP_FILTER])?;
        let (strays_tx, strays) = subscribed(link("heft-strays"), &super::topic::STRAY_FILTERS)?;

        let mut connections = ConnectionSettings {
            connection_timeout_ms: cfg.connection_timeout_ms,
            max_payload_size: cfg.max_packet_bytes,
            max_inflight_count: cfg.max_inflight_count,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        };
        connections.set_auth_handler(auth);
        let settings = ServerSettings {
            name: "heft-mqtt".into(),
            listen: cfg.listen,
            tls: None,
            next_connection_delay_ms: cfg.next_connection_delay_ms,
            connections,
        };
        // The TLS listener's files are checked now, so a bad certificate stops `serve` with a
        // message instead of a listener that refuses every handshake.
        let tls = match cfg.tls.listen {
            Some(addr) => {
                super::tls::server_config(&cfg.tls)?;
                let listener =
                    std::net::TcpListener::bind(addr).map_err(|source| DeviceError::Bind { addr, source })?;
                listener.set_nonblocking(true).map_err(|source| DeviceError::Bind { addr, source })?;
                Some(listener)
            }
            None => None,
        };
        let kicker = router_tx.clone();
        let listener = Arbiter::new();
        let listen = cfg.listen;
        listener.spawn(async move {
            let mut server = Server::new(settings, router_tx, rumqttd::protocol::v4::V4);
            if let Err(e) = server.start(LinkType::Remote).await {
                tracing::error!(%listen, error = %e, "MQTT listener stopped");
            }
        });
        tracing::info!(listen = %cfg.listen, "MQTT broker listening");
        if let Some(std_listener) = tls {
            let (tls_cfg, upstream, max) = (cfg.tls.clone(), super::tls::upstream_of(cfg.listen), cfg.max_connections);
            listener.spawn(async move {
                match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => super::tls::serve(l, tls_cfg, upstream, max).await,
                    Err(e) => tracing::error!(error = %e, "MQTT TLS listener could not start"),
                }
            });
            tracing::info!(listen = ?cfg.tls.listen, client_certs = ?cfg.tls.client_certs, "MQTT TLS listening");
        }
        let connect: Connect = Arc::new(move |id: &str| {
            LinkBuilder::new(id, kicker.clone()).build().map(|(tx, _, _)| tx).map_err(|e| e.to_string())
        });
        let broker = Broker {
            listener,
            downlink: Downlink { tx: Arc::new(Mutex::new(link_tx)), connect },
            _strays_tx: strays_tx,
        };
        Ok((broker, Links { up, strays }))
    }

    /// Close the listener and every device connection, and wait until they are closed (so the
    /// port can be bound again at once).
    pub async fn stop(self) {
        stop_arbiter(self.listener).await;
    }
}

/// A local link just built, subscribed to `filters`.
fn subscribed(
    built: Result<(LinkTx, LinkRx, rumqttd::Notification), DeviceError>,
    filters: &[&str],
) -> Result<(LinkTx, LinkRx), DeviceError> {
    let (mut tx, rx, _ack) = built?;
    for filter in filters {
        tx.subscribe(*filter).map_err(|e| DeviceError::Link(e.to_string()))?;
    }
    Ok((tx, rx))
}

/// The bridge's log is dropped a segment at a time once full: four keep three quarters of it.
const BRIDGE_LOG_SEGMENTS: usize = 4;

fn router_config(cfg: &MqttConfig) -> RouterConfig {
    RouterConfig {
        // Two more than the devices: the bridge's two local links count as connections.
        max_connections: cfg.max_connections + 2,
        max_outgoing_packet_count: cfg.max_outgoing_packet_count,
        max_segment_size: cfg.max_segment_size,
        max_segment_count: cfg.max_segment_count,
        // The bridge's log: its filter is the only one this key matches (not the cabinets'
        // `cabinets/{sn}/down/+`, nor the strays').
        custom_segment: Some(std::collections::HashMap::from([(
            super::topic::UP_FILTER.to_string(),
            rumqttd::SegmentConfig {
                max_segment_size: cfg.bridge_log_bytes / BRIDGE_LOG_SEGMENTS,
                max_segment_count: BRIDGE_LOG_SEGMENTS,
            },
        )])),
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    }
}

/// Stop an Arbiter and wait for its thread to end (its runtime, and every task on it, dropped).
pub async fn stop_arbiter(arbiter: Arbiter) {
    arbiter.stop();
    let _ = tokio::task::spawn_blocking(move || arbiter.join()).await;
}
