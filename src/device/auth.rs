//! MQTT connection auth: client id = username = a provisioned sn, password = its token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::db::{Db, cabinets};
use crate::domain::cabinet::Sn;
use crate::metrics::Metrics;
use crate::secrets;

/// Why a connection was refused (the `result` label of `heft_mqtt_auth_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    Accepted,
    ClientIdMismatch,
    BadSn,
    UnknownCabinet,
    WrongPassword,
    Unavailable,
}

impl AuthOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthOutcome::Accepted => "accepted",
            AuthOutcome::ClientIdMismatch => "client_id_mismatch",
            AuthOutcome::BadSn => "bad_sn",
            AuthOutcome::UnknownCabinet => "unknown_cabinet",
            AuthOutcome::WrongPassword => "wrong_password",
            AuthOutcome::Unavailable => "unavailable",
        }
    }
}

/// When each cabinet last connected with its own token. Only the holder of the token can move
/// it, so it tells a cabinet's actor when it may look for a new frame key at once: a cabinet
/// given new credentials reconnects with them, while forged frames (anyone can publish on any
/// topic) come over other connections and cannot. One entry per cabinet.
#[derive(Debug, Clone, Default)]
pub struct Connects(Arc<Mutex<HashMap<String, Instant>>>);

impl Connects {
    fn record(&self, sn: &str) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(sn.to_string(), Instant::now());
    }

    /// Whether `sn` connected with its token after `since` (or ever, without one).
    pub fn since(&self, sn: &str, since: Option<Instant>) -> bool {
        let at = self.0.lock().unwrap_or_else(PoisonError::into_inner).get(sn).copied();
        match (at, since) {
            (Some(at), Some(since)) => at > since,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// Check one CONNECT. A database failure refuses the connection: the cabinet retries.
pub async fn check(db: &Db, client_id: &str, username: &str, password: &str) -> AuthOutcome {
    if client_id != username {
        return AuthOutcome::ClientIdMismatch;
    }
    let Ok(sn) = Sn::parse(username) else {
        return AuthOutcome::BadSn;
    };
    let stored = db.run(move |c| cabinets::token_hash(c, sn.as_str())).await;
    match stored {
        Ok(Some(hash)) if secrets::token_matches(password, &hash) => AuthOutcome::Accepted,
        Ok(Some(_)) => AuthOutcome::WrongPassword,
        Ok(None) => AuthOutcome::UnknownCabinet,
        Err(e) => {
            tracing::warn!(error = %e, "mqtt auth: database unavailable");
            AuthOutcome::Unavailable
        }
    }
}

/// The callback handed to rumqttd.
pub fn handler(
    db: Db,
    metrics: Metrics,
    connects: Connects,
) -> impl Fn(String, String, String) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync + 'static {
    move |client_id, username, password| {
        let (db, metrics, connects) = (db.clone(), metrics.clone(), connects.clone());
        Box::pin(async move {
            let outcome = check(&db, &client_id, &username, &password).await;
            if outcome == AuthOutcome::Accepted {
                connects.record(&username);
            }
            metrics.mqtt_auth.with_label_values(&[outcome.as_str()]).inc();
            if outcome != AuthOutcome::Accepted {
                // The username is an sn or garbage; never log the password.
                tracing::info!(client_id = %client_id.chars().take(64).collect::<String>(), result = outcome.as_str(), "mqtt connection refused");
            }
            outcome == AuthOutcome::Accepted
        })
    }
}
