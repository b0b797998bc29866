//! MQTT connection auth: client id = username = a provisioned sn, password = its token.

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
) -> impl Fn(String, String, String) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync + 'static {
    move |client_id, username, password| {
        let db = db.clone();
        let metrics = metrics.clone();
        Box::pin(async move {
            let outcome = check(&db, &client_id, &username, &password).await;
            metrics.mqtt_auth.with_label_values(&[outcome.as_str()]).inc();
            if outcome != AuthOutcome::Accepted {
                // The username is an sn or garbage; never log the password.
                tracing::info!(client_id = %client_id.chars().take(64).collect::<String>(), result = outcome.as_str(), "mqtt connection refused");
            }
            outcome == AuthOutcome::Accepted
        })
    }
}
