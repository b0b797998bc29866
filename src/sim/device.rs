//! A cabinet's side of device protocol v1 over a real MQTT connection (rumqttc): what the
//! simulator runs, and what the integration tests use to talk to Heft as a cabinet would.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, NetworkOptions, Packet, QoS};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::device::frame::{self, Envelope, Header, Heartbeat, Login, LoginAck};
use crate::device::topic::{self, UpKind};
use crate::provision::Credentials;

#[derive(Debug, thiserror::Error)]
pub enum DeviceClientError {
    #[error("frame key is not base64 of 32 bytes")]
    BadKey,
    #[error("connection refused or lost: {0}")]
    Connection(String),
    #[error("MQTT client: {0}")]
    Client(#[from] rumqttc::ClientError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("downstream frame failed verification: {0}")]
    Verify(frame::Reject),
    #[error("could not encode frame: {0}")]
    Encode(#[from] serde_json::Error),
}

/// A frame received from Heft, with its signature already checked.
#[derive(Debug, Clone)]
pub struct Down {
    pub topic: String,
    pub m: serde_json::Value,
}

impl Down {
    pub fn kind(&self) -> &str {
        self.topic.rsplit('/').next().unwrap_or_default()
    }
}

/// One connected cabinet.
pub struct DeviceClient {
    pub sn: String,
    key: Vec<u8>,
    client: AsyncClient,
    pub boot: u64,
    /// GCJ-02 (lat, lng) reported at login, if the cabinet has a positioning module.
    pub position: Option<(f64, f64)>,
    seq: u64,
    down: mpsc::UnboundedReceiver<Result<Down, DeviceClientError>>,
    /// Set when the connection ends (refused, dropped or closed).
    closed: Option<oneshot::Receiver<String>>,
}

#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub keep_alive: Duration,
    pub timeout: Duration,
    /// Override the password (to test a wrong one).
    pub password: Option<String>,
    /// Override the client id (to test a mismatch).
    pub client_id: Option<String>,
    /// Connect over TLS instead of plain TCP.
    pub tls: Option<ClientTls>,
}

/// TLS for a cabinet: the CA it trusts for the broker, and its own certificate when it has one.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// PEM of the CA the server certificate must chain to.
    pub ca_pem: Vec<u8>,
    /// PEM certificate chain and private key, for mTLS.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl ClientTls {
    fn config(&self) -> Result<rustls::ClientConfig, DeviceClientError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let bad = |e: &dyn std::fmt::Display| DeviceClientError::Connection(format!("TLS settings: {e}"));
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(&self.ca_pem) {
            roots.add(ca.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(&e))?
            .with_root_certificates(roots);
        match &self.client {
            None => Ok(builder.with_no_client_auth()),
            Some((cert, key)) => {
                let chain: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(cert).collect::<Result<_, _>>().map_err(|e| bad(&e))?;
                let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| bad(&e))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| bad(&e))
            }
        }
    }
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            keep_alive: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            password: None,
            client_id: None,
            tls: None,
        }
    }
}

impl DeviceClient {
    /// Connect and subscribe to the cabinet's downstream topics. Fails when the broker refuses
    /// (rumqttd closes the socket without a CONNACK reason, so a refusal looks like a lost link).
    pub async fn connect(
        broker: &str,
        creds: &Credentials,
        boot: u64,
        opts: ConnectOptions,
    ) -> Result<DeviceClient, DeviceClientError> {
        let key = B64.decode(&creds.frame_key).map_err(|_| DeviceClientError::BadKey)?;
        if key.len() != 32 {
            return Err(DeviceClientError::BadKey);
        }
        let (host, port) = broker
            .rsplit_once(':')
            .and_then(|(h, p)| p.parse::<u16>().ok().map(|p| (h.to_string(), p)))
            .ok_or_else(|| DeviceClientError::Connection(format!("broker address {broker:?} is not HOST:PORT")))?;
        let client_id = opts.client_id.clone().unwrap_or_else(|| creds.sn.clone());
        let mut mqtt = MqttOptions::new(client_id, host, port);
        mqtt.set_credentials(creds.sn.clone(), opts.password.clone().unwrap_or_else(|| creds.token.clone()));
        mqtt.set_keep_alive(opts.keep_alive);
        mqtt.set_clean_session(true);
        mqtt.set_max_packet_size(64 * 1024, 128 * 1024);
        mqtt.set_inflight(32);
        if let Some(tls) = &opts.tls {
            let config = std::sync::Arc::new(tls.config()?);
            mqtt.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(config)));
        }
        let (client, mut eventloop) = AsyncClient::new(mqtt, 64);
        let mut net = NetworkOptions::new();
        net.set_tcp_nodelay(true);
        net.set_connection_timeout(opts.timeout.as_secs().max(1));
        eventloop.set_network_options(net);

        let (down_tx, down) = mpsc::unbounded_channel();
        let (connected_tx, connected_rx) = oneshot::channel();
        let (closed_tx, closed) = oneshot::channel();
        tokio::spawn(drive(eventloop, key.clone(), down_tx, connected_tx, closed_tx));
        match tokio::time::timeout(opts.timeout, connected_rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(DeviceClientError::Connection(e)),
            Ok(Err(_)) => return Err(DeviceClientError::Connection("event loop ended".into())),
            Err(_) => return Err(DeviceClientError::Timeout(opts.timeout)),
        }
        client.subscribe(format!("cabinets/{}/down/+", creds.sn), QoS::AtLeastOnce).await?;
        Ok(DeviceClient { sn: creds.sn.clone(), key, client, boot, position: None, seq: 0, down, closed: Some(closed) })
    }

    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Continue numbering after `seq` (when frames were sent around this client).
    pub fn skip_to_seq(&mut self, seq: u64) {
        self.seq = self.seq.max(seq);
    }

    pub fn header(&mut self) -> Header {
        Header { boot: self.boot, seq: self.next_seq(), ts: Some(chrono::Utc::now().timestamp_millis()) }
    }

    /// Sign `m` for this cabinet's `kind` topic and publish it (QoS 1).
    pub async fn send<T: Serialize>(&mut self, kind: UpKind, m: &T) -> Result<(), DeviceClientError> {
        let topic = topic::up(&self.sn, kind);
        let payload = frame::sign(&self.key, &topic, m)?;
        self.publish_raw(&topic, payload).await
    }

    /// Publish bytes as they are, on any topic (for bad-input tests and fault injection).
    pub async fn publish_raw(&self, topic: &str, payload: Vec<u8>) -> Result<(), DeviceClientError> {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload).await?;
        Ok(())
    }

    /// The signature this cabinet's key gives `m` on `topic`.
    pub fn sign_raw(&self, topic: &str, m: &str) -> String {
        frame::signature(&self.key, topic, m)
    }

    /// Send `login` with the current boot and wait for `login_ack`.
    pub async fn login(&mut self, timeout: Duration) -> Result<LoginAck, DeviceClientError> {
        self.send_login().await?;
        self.wait_login_ack(timeout).await
    }

    /// Send `login` with the current boot (seq starts again at 1).
    pub async fn send_login(&mut self) -> Result<(), DeviceClientError> {
        self.seq = 0;
        let h = self.header();
        let (lat, lng) = (self.position.map(|p| p.0), self.position.map(|p| p.1));
        let login = Login { h, proto: frame::PROTOCOL_VERSION, fw: Some("sim-1.0".into()), lat, lng };
        self.send(UpKind::Login, &login).await
    }

    pub async fn wait_login_ack(&mut self, timeout: Duration) -> Result<LoginAck, DeviceClientError> {
        loop {
            let down = self.next_down(timeout).await?;
            if down.kind() == "login_ack" {
                return serde_json::from_value(down.m).map_err(DeviceClientError::Encode);
            }
        }
    }

    pub async fn heartbeat(&mut self, temp_c: f64, heating: bool) -> Result<(), DeviceClientError> {
        let h = self.header();
        self.send(UpKind::Heartbeat, &Heartbeat { h, temp_c, heating }).await
    }

    /// The next verified downstream frame.
    pub async fn next_down(&mut self, timeout: Duration) -> Result<Down, DeviceClientError> {
        match tokio::time::timeout(timeout, self.down.recv()).await {
            Ok(Some(r)) => r,
            Ok(None) => Err(DeviceClientError::Connection("connection closed".into())),
            Err(_) => Err(DeviceClientError::Timeout(timeout)),
        }
    }

    /// A downstream frame if one is already waiting.
    pub fn try_down(&mut self) -> Option<Result<Down, DeviceClientError>> {
        self.down.try_recv().ok()
    }

    /// Wait until the connection ends; returns why.
    pub async fn closed(&mut self, timeout: Duration) -> Result<String, DeviceClientError> {
        let rx = self.closed.take().ok_or_else(|| DeviceClientError::Connection("already closed".into()))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(why)) => Ok(why),
            Ok(Err(_)) => Ok("event loop dropped".into()),
            Err(_) => Err(DeviceClientError::Timeout(timeout)),
        }
    }

    pub async fn disconnect(&self) {
        let _ = self.client.disconnect().await;
    }
}

/// Poll the event loop: report the CONNACK (or the failure), verify and forward downstream
/// frames, and end on the first connection error (the caller reconnects if it wants to).
async fn drive(
    mut eventloop: EventLoop,
    key: Vec<u8>,
    down: mpsc::UnboundedSender<Result<Down, DeviceClientError>>,
    connected: oneshot::Sender<Result<(), String>>,
    closed: oneshot::Sender<String>,
) {
    let mut connected = Some(connected);
    let why = loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if let Some(tx) = connected.take() {
                    let _ = tx.send(Ok(()));
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let _ = down.send(verify_down(&key, &p.topic, &p.payload));
            }
            Ok(_) => {}
            Err(e) => break e.to_string(),
        }
    };
    if let Some(tx) = connected.take() {
        let _ = tx.send(Err(why.clone()));
    }
    let _ = closed.send(why);
}

fn verify_down(key: &[u8], topic: &str, payload: &Bytes) -> Result<Down, DeviceClientError> {
    let env = Envelope::parse(payload).map_err(DeviceClientError::Verify)?;
    env.verify(topic.as_bytes(), key).map_err(DeviceClientError::Verify)?;
    let m: serde_json::Value = env.message().map_err(DeviceClientError::Verify)?;
    Ok(Down { topic: topic.to_string(), m })
}
