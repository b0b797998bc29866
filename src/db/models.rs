//! Rows as stored. Typed domain values are made from them at the edges of `db/`.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use super::schema::{alerts, cabinet_events, cabinets};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = cabinets, primary_key(sn))]
pub struct Cabinet {
    pub sn: String,
    pub cabinet_type: String,
    pub token_hash: String,
    pub frame_key_sealed: String,
    pub status: String,
    pub liveness: String,
    pub last_boot: i64,
    pub node_id: Option<String>,
    pub firmware: Option<String>,
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    pub last_login_at: Option<NaiveDateTime>,
    pub liveness_changed_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = cabinets)]
pub struct NewCabinet {
    pub sn: String,
    pub cabinet_type: String,
    pub token_hash: String,
    pub frame_key_sealed: String,
    pub status: String,
    pub liveness: String,
    pub last_boot: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = cabinet_events)]
pub struct CabinetEvent {
    pub id: i64,
    pub sn: String,
    pub kind: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub detail: Option<String>,
    pub node_id: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = cabinet_events)]
pub struct NewCabinetEvent {
    pub sn: String,
    pub kind: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub detail: Option<String>,
    pub node_id: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = alerts)]
pub struct Alert {
    pub id: i64,
    pub audience: String,
    pub severity: String,
    pub code: String,
    pub sn: Option<String>,
    pub message: String,
    pub detail: Option<String>,
    pub occurrences: i64,
    pub created_at: NaiveDateTime,
    pub last_seen_at: NaiveDateTime,
    pub resolved_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = alerts)]
pub struct NewAlert {
    pub audience: String,
    pub severity: String,
    pub code: String,
    pub sn: Option<String>,
    pub message: String,
    pub detail: Option<String>,
    pub occurrences: i64,
    pub created_at: NaiveDateTime,
    pub last_seen_at: NaiveDateTime,
}
