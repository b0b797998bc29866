//! What the live view sends, built from what the database and the cache hold.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::db::layout::LaneWithProduct;
use crate::db::live::FleetFacts;
use crate::db::models::{Alert, Cabinet, CabinetEvent, CommandRow, Lane, Order, RestockTask, Session};
use crate::domain::cabinet::CabinetStatus;
use crate::domain::liveness::Liveness;
use crate::domain::session::SessionKind;
use crate::domain::units::{Fen, Grams};

/// One cabinet in the `fleet` topic (and the `cabinet` delta of `cabinet/{sn}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetRow {
    pub sn: String,
    #[serde(rename = "type")]
    pub cabinet_type: String,
    pub status: CabinetStatus,
    pub liveness: Liveness,
    /// Ready and online: a shopper may use it.
    pub sellable: bool,
    /// The node holding its connection, as of its last login.
    pub node: Option<String>,
    /// GCJ-02.
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    pub address: Option<String>,
    /// Doors open now, as the cabinet last reported (heard since this node started).
    pub doors_open: Vec<u32>,
    /// The session holding it: a purchase, a restock, maintenance, calibration.
    pub session: Option<SessionBrief>,
    pub temperature_c: Option<f64>,
    pub open_alerts: u32,
    /// Lanes at or below their restock threshold.
    pub low_stock: u32,
    /// Configured (`config_acked_version` = `config_version` ≥ 1).
    pub configured: bool,
    pub liveness_changed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionBrief {
    pub id: i64,
    pub kind: SessionKind,
    pub door: Option<i32>,
    pub started_at: DateTime<Utc>,
}

impl SessionBrief {
    pub fn of(s: &Session) -> SessionBrief {
        SessionBrief { id: s.id, kind: s.kind, door: s.door, started_at: s.started_at.and_utc() }
    }
}

impl FleetRow {
    fn of(c: Cabinet) -> FleetRow {
        FleetRow {
            sellable: crate::domain::cabinet::sellable(c.status, c.liveness),
            configured: c.config_version >= 1 && c.config_acked_version == c.config_version,
            liveness_changed_at: c.liveness_changed_at.map(|t| t.and_utc()),
            sn: c.sn,
            cabinet_type: c.cabinet_type,
            status: c.status,
            liveness: c.liveness,
            node: c.node_id,
            lat: c.lat,
            lng: c.lng,
            address: c.address,
            doors_open: Vec::new(),
            session: None,
            temperature_c: None,
            open_alerts: 0,
            low_stock: 0,
        }
    }
}

/// Rows from the stored facts and each cabinet's cached ones (`temperature_c`), by serial number.
pub fn fleet_rows(facts: FleetFacts, cached: &HashMap<String, HashMap<String, String>>) -> BTreeMap<String, FleetRow> {
    let mut rows: BTreeMap<String, FleetRow> =
        facts.cabinets.into_iter().map(|c| (c.sn.clone(), FleetRow::of(c))).collect();
    for sn in facts.open_alerts {
        if let Some(r) = rows.get_mut(&sn) {
            r.open_alerts += 1;
        }
    }
    for sn in facts.low_lanes {
        if let Some(r) = rows.get_mut(&sn) {
            r.low_stock += 1;
        }
    }
    for s in &facts.sessions {
        if let Some(r) = rows.get_mut(&s.sn) {
            // The newest, should there be two for a moment.
            if r.session.as_ref().is_none_or(|b| b.id < s.id) {
                r.session = Some(SessionBrief::of(s));
            }
        }
    }
    for (sn, r) in rows.iter_mut() {
        r.temperature_c = cached.get(sn).and_then(|f| f.get("temperature_c")).and_then(|v| v.parse().ok());
    }
    rows
}

/// The snapshot of `cabinet/{sn}`.
#[derive(Debug, Serialize)]
pub struct CabinetSnapshot {
    pub cabinet: FleetRow,
    pub lanes: Vec<LaneOut>,
    /// Each lane's grams as last weighed with the door closed (lane → grams), if cached.
    pub closed_g: Option<BTreeMap<String, f64>>,
    /// Newest first.
    pub sessions: Vec<Session>,
    pub commands: Vec<CommandRow>,
    pub events: Vec<CabinetEvent>,
    /// Open ones.
    pub alerts: Vec<Alert>,
    pub orders: Vec<Order>,
    /// Not yet done.
    pub restock: Vec<RestockTask>,
}

/// A lane with its product, stock, threshold and calibration.
#[derive(Debug, Serialize)]
pub struct LaneOut {
    #[serde(flatten)]
    pub lane: Lane,
    pub calibrated: bool,
    pub product: Option<ProductBrief>,
}

#[derive(Debug, Serialize)]
pub struct ProductBrief {
    pub name: String,
    pub unit_g: Grams,
    pub tolerance_g: Grams,
    pub price_fen: Fen,
}

impl LaneOut {
    pub fn of((lane, product): LaneWithProduct) -> LaneOut {
        LaneOut {
            calibrated: lane.counts_per_g.is_some() && lane.zero_counts.is_some(),
            product: product.map(|(unit_g, tolerance_g, price_fen, name)| ProductBrief {
                name,
                unit_g,
                tolerance_g,
                price_fen,
            }),
            lane,
        }
    }
}
