//! MQTT over TLS. Heft terminates TLS itself and hands each connection, as plain bytes, to the
//! broker's own listener on loopback: rumqttd's TLS can neither make client certificates optional
//! nor take a new certificate without a restart, and a fleet needs both.
//!
//! The certificate files are checked every `reload_check_s`; a changed certificate is used for
//! new connections, and connected cabinets keep theirs. A file that cannot be read or parsed
//! leaves the previous certificate in use, with an error in the log.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::config::{ClientCerts, MqttTlsConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("TLS settings: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate CA: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

fn file_error(path: &str, e: impl std::fmt::Display) -> TlsError {
    TlsError::File { path: path.to_string(), message: e.to_string() }
}

/// The rustls server settings the configured files describe.
pub fn server_config(cfg: &MqttTlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.cert_file)
        .map_err(|e| file_error(&cfg.cert_file, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(&cfg.cert_file, e))?;
    if certs.is_empty() {
        return Err(file_error(&cfg.cert_file, "no CERTIFICATE in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&cfg.key_file).map_err(|e| file_error(&cfg.key_file, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match cfg.client_certs {
        ClientCerts::Off => builder.with_no_client_auth(),
        mode => {
            let mut roots = RootCertStore::empty();
            for ca in
                CertificateDer::pem_file_iter(&cfg.client_ca_file).map_err(|e| file_error(&cfg.client_ca_file, e))?
            {
                roots.add(ca.map_err(|e| file_error(&cfg.client_ca_file, e))?)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if mode == ClientCerts::Optional { verifier.allow_unauthenticated() } else { verifier };
            builder.with_client_cert_verifier(verifier.build()?)
        }
    };
    Ok(Arc::new(builder.with_single_cert(certs, key)?))
}

/// When each file last changed: a new stamp means a new certificate to load.
fn stamp(cfg: &MqttTlsConfig) -> Vec<Option<SystemTime>> {
    [&cfg.cert_file, &cfg.key_file, &cfg.client_ca_file]
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

/// The acceptor in use, and when its files were last looked at.
struct Current {
    acceptor: TlsAcceptor,
    stamp: Vec<Option<SystemTime>>,
    checked: Instant,
}

impl Current {
    fn refresh(&mut self, cfg: &MqttTlsConfig) {
        if self.checked.elapsed() < Duration::from_secs(cfg.reload_check_s) {
            return;
        }
        self.checked = Instant::now();
        let stamp = stamp(cfg);
        if stamp == self.stamp {
            return;
        }
        match server_config(cfg) {
            Ok(config) => {
                self.acceptor = TlsAcceptor::from(config);
                self.stamp = stamp;
                tracing::info!(cert = %cfg.cert_file, "MQTT TLS certificate reloaded");
            }
            // Half-written files are common during a rotation: try again at the next check.
            Err(e) => tracing::error!(error = %e, "MQTT TLS certificate not reloaded; the previous one stays"),
        }
    }
}

/// Where the TLS listener hands connections: the plain listener, reached on loopback when it
/// listens on every address.
pub fn upstream_of(plain: SocketAddr) -> SocketAddr {
    let ip = match plain.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, plain.port())
}

/// Accept TLS connections until the task is dropped (with the broker's Arbiter). At most
/// `max_connections` at a time; more are closed at once.
pub async fn serve(listener: TcpListener, cfg: MqttTlsConfig, upstream: SocketAddr, max_connections: usize) {
    let Ok(config) = server_config(&cfg) else { return };
    let mut current = Current { acceptor: TlsAcceptor::from(config), stamp: stamp(&cfg), checked: Instant::now() };
    let slots = Arc::new(Semaphore::new(max_connections));
    let handshake = Duration::from_millis(cfg.handshake_timeout_ms);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "MQTT TLS accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        current.refresh(&cfg);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "MQTT TLS connection refused: at mqtt.max_connections");
            continue;
        };
        let acceptor = current.acceptor.clone();
        tokio::spawn(async move {
            if let Err(e) = relay(stream, acceptor, upstream, handshake).await {
                tracing::debug!(%peer, error = %e, "MQTT TLS connection ended");
            }
            drop(slot);
        });
    }
}

/// One connection: the handshake (in time), then bytes both ways until either side closes.
async fn relay(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    upstream: SocketAddr,
    handshake: Duration,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut tls = tokio::time::timeout(handshake, acceptor.accept(stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake took too long"))??;
    let mut broker = TcpStream::connect(upstream).await?;
    broker.set_nodelay(true)?;
    tokio::io::copy_bidirectional(&mut tls, &mut broker).await?;
    Ok(())
}
