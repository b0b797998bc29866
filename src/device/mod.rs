//! The device side: the embedded MQTT broker, topics, signed frames, connection auth, and the
//! bridge that hands frames to the cabinet actors.

pub mod auth;
pub mod bridge;
pub mod broker;
pub mod frame;
pub mod messages;
pub mod tls;
pub mod topic;

pub use broker::{Broker, Downlink};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("MQTT listener {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("MQTT broker link: {0}")]
    Link(String),
    #[error("publishing to {topic}: {reason}")]
    Publish { topic: String, reason: String },
    #[error("MQTT TLS listener: {0}")]
    Tls(#[from] tls::TlsError),
}
