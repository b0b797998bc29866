//! `heft provision`: create a cabinet and issue its credentials, shown once.

use crate::db::models::NewCabinet;
use crate::db::{AnyConnection, DbError, cabinets, now};
use crate::domain::cabinet::{CabinetStatus, Sn, SnError, validate_type};
use crate::domain::liveness::Liveness;
use crate::secrets::{self, SealKey};

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("invalid serial number: {0}")]
    Sn(#[from] SnError),
    #[error("invalid cabinet type: {0}")]
    Type(SnError),
    #[error("cabinet {0} is already provisioned; pass --rotate to issue new credentials")]
    Exists(String),
    #[error("cabinet {0} is not provisioned, so there is nothing to rotate")]
    Missing(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What the cabinet must be given. Heft keeps only the token's hash and the key sealed.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Credentials {
    pub sn: String,
    /// MQTT password (client id and username are the sn).
    pub token: String,
    /// Base64 of the 32-byte HMAC key that signs frames both ways.
    pub frame_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("sn", &self.sn).finish_non_exhaustive()
    }
}

/// Create the cabinet (status `initializing`, liveness `offline` until it logs in), or with
/// `rotate` replace the credentials of an existing one.
pub fn provision(
    conn: &mut AnyConnection,
    seal: &SealKey,
    sn: &str,
    cabinet_type: &str,
    rotate: bool,
) -> Result<Credentials, ProvisionError> {
    let sn = Sn::parse(sn)?;
    validate_type(cabinet_type).map_err(ProvisionError::Type)?;
    let token = secrets::new_token();
    let (key, frame_key) = secrets::new_frame_key();
    let token_hash = secrets::hash_token(&token);
    let sealed = seal.seal(&key);
    let at = now();
    if rotate {
        if !cabinets::rotate_credentials(conn, sn.as_str(), &token_hash, &sealed, at)? {
            return Err(ProvisionError::Missing(sn.to_string()));
        }
    } else {
        // Checked first because on PostgreSQL a failed insert would poison the caller's
        // transaction; the unique key still settles a race.
        if cabinets::find(conn, sn.as_str())?.is_some() {
            return Err(ProvisionError::Exists(sn.to_string()));
        }
        let new = NewCabinet {
            sn: sn.to_string(),
            cabinet_type: cabinet_type.to_string(),
            token_hash,
            frame_key_sealed: sealed,
            status: CabinetStatus::Initializing,
            liveness: Liveness::Offline,
            last_boot: 0,
            created_at: at,
            updated_at: at,
        };
        cabinets::insert(conn, &new).map_err(|e| {
            if e.is_unique_violation() { ProvisionError::Exists(sn.to_string()) } else { ProvisionError::Db(e) }
        })?;
    }
    Ok(Credentials { sn: sn.to_string(), token, frame_key })
}

impl From<diesel::result::Error> for ProvisionError {
    fn from(e: diesel::result::Error) -> Self {
        ProvisionError::Db(DbError::Query(e))
    }
}
