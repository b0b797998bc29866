//! Setting a cabinet up: its configuration (checked by `domain::layout::validate`, stored whole),
//! the sessions that deliver the configuration and the shelf labels to the cabinet, what the
//! cabinet acknowledges, its calibration, and the lifecycle status these facts call for
//! (`domain::cabinet::readiness`).

use chrono::NaiveDateTime;

use super::{Effects, commands, sessions};
use crate::db::models::{CabinetType, CommandRow, NewSession, Session};
use crate::db::{self, AnyConnection, Db, DbError, DbResult, cabinets, layout, write_tx};
use crate::device::messages::{ConfigCmd, DoorConfig, LaneConfig, PriceTag, PriceTagsCmd};
use crate::domain::cabinet::{self, CabinetStatus};
use crate::domain::command::DownKind;
use crate::domain::layout::{self as layout_rules, LayoutInput, ProductState};
use crate::domain::session::SessionKind;
use crate::domain::validation::FieldError;

/// Why a configuration was not saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveFail {
    #[error("cabinet {0} not found")]
    NotFound(String),
    #[error("configuration is invalid")]
    Invalid(Vec<FieldError>),
    /// Another node's session holds the cabinet: nothing was saved.
    #[error("the cabinet is held by another session")]
    Busy(Box<Session>),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for SaveFail {
    fn from(e: diesel::result::Error) -> Self {
        SaveFail::Db(e.into())
    }
}

/// A delivery session just opened, with the command that delivers it (already stored).
#[derive(Debug, Clone)]
pub struct Opened {
    pub session: Session,
    pub version: i64,
    pub body: serde_json::Value,
    pub command: CommandRow,
}

/// What a configuration save did.
#[derive(Debug, Clone)]
pub struct Saved {
    pub version: i64,
    /// The delivery session opened with it (the cabinet was logged in), if any.
    pub delivery: Option<Opened>,
}

/// Check and store a configuration, whole or not at all, and refresh the cabinet's status (not
/// sellable on a lane map it has not acknowledged yet). `delivery`: the cabinet is logged in, and
/// the session that delivers the configuration opens in the same transaction, so the
/// configuration cannot be stored without the cabinet being held for its delivery; when another
/// node's session holds the cabinet, nothing is saved.
pub async fn save_config(
    db: &Db,
    sn: String,
    input: LayoutInput,
    node: String,
    delivery: Option<NewSession>,
) -> Result<Saved, SaveFail> {
    db.write(move |c| {
        let now = db::now();
        let cab = cabinets::find(c, &sn)?.ok_or_else(|| SaveFail::NotFound(sn.clone()))?;
        let channels = layout::channels_of(c, &cab.cabinet_type)?;
        let wanted: Vec<i64> = input.doors.iter().flat_map(|d| d.lanes.iter().filter_map(|l| l.product_id)).collect();
        let states = layout::product_states(c, &wanted)?;
        let state = |id: i64| states.get(&id).copied().unwrap_or(ProductState::Unknown);
        layout_rules::validate(&input, channels, state).map_err(SaveFail::Invalid)?;
        let version = layout::store(c, &cab, &input, now)?;
        refresh_status_in(c, &sn, &node, now)?;
        let delivery = match &delivery {
            Some(new) => {
                Some(open_delivery_in(c, new, SessionKind::Config)?.map_err(|held| SaveFail::Busy(Box::new(held)))?)
            }
            None => None,
        };
        Ok(Saved { version, delivery })
    })
    .await
}

/// Open a delivery session and store the command that delivers it, in one transaction.
/// `Err(held)` when another session holds the cabinet.
pub async fn open_delivery(db: &Db, new: NewSession, kind: SessionKind) -> DbResult<Result<Opened, Session>> {
    db.write(move |c| open_delivery_in(c, &new, kind)).await
}

fn open_delivery_in(
    conn: &mut AnyConnection,
    new: &NewSession,
    kind: SessionKind,
) -> DbResult<Result<Opened, Session>> {
    write_tx(conn, |c| {
        let session = match sessions::open_in(c, new)? {
            Ok(s) => s,
            Err(held) => return Ok(Err(held)),
        };
        let (version, body) = match kind {
            SessionKind::Config => config_payload(c, &new.sn)?,
            _ => tags_payload(c, &new.sn)?,
        };
        // Stored with the session, so its id can be returned to the operator at once.
        let command = commands::new_row(&new.sn, delivery_kind(kind), &body, Some(session.id));
        db::commands::insert(c, &command)?;
        Ok(Ok(Opened { session, version, body, command }))
    })
}

/// The command a delivery session sends.
pub fn delivery_kind(kind: SessionKind) -> DownKind {
    if kind == SessionKind::Config { DownKind::Config } else { DownKind::PriceTags }
}

/// The `config` command body for the stored configuration, and its version.
fn config_payload(c: &mut AnyConnection, sn: &str) -> DbResult<(i64, serde_json::Value)> {
    let cab = cabinets::find(c, sn)?.ok_or_else(|| DbError::Corrupt(format!("cabinet {sn} vanished")))?;
    let mut doors: Vec<DoorConfig> = Vec::new();
    for l in layout::lanes(c, sn)? {
        let door = u32::try_from(l.door).unwrap_or(0);
        let lane = LaneConfig { code: l.code, channel: u32::try_from(l.channel).unwrap_or(0) };
        match doors.last_mut() {
            Some(d) if d.door == door => d.lanes.push(lane),
            _ => doors.push(DoorConfig { door, lanes: vec![lane] }),
        }
    }
    let cmd = ConfigCmd { version: u64::try_from(cab.config_version).unwrap_or(0), doors };
    Ok((cab.config_version, serde_json::to_value(cmd).map_err(|e| DbError::Corrupt(e.to_string()))?))
}

/// The `price_tags` command body for the stored lanes and products, and its version.
fn tags_payload(c: &mut AnyConnection, sn: &str) -> DbResult<(i64, serde_json::Value)> {
    let (version, labels) = layout::price_tags(c, sn)?;
    let tags = labels.into_iter().map(|(lane, name, price_fen)| PriceTag { lane, name, price_fen }).collect();
    let cmd = PriceTagsCmd { version: u64::try_from(version).unwrap_or(0), tags };
    Ok((version, serde_json::to_value(cmd).map_err(|e| DbError::Corrupt(e.to_string()))?))
}

/// What an acknowledgement recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    /// The version acknowledged is the current one (not: a newer one was saved meanwhile, and is
    /// still to deliver).
    pub current: bool,
    /// The cabinet's status, when the acknowledgement changed it.
    pub status: Option<CabinetStatus>,
}

/// The cabinet acknowledged a configuration (`config`) or labels version: stored, and the status
/// refreshed.
pub async fn record_ack(db: &Db, sn: String, node: String, config: bool, version: i64) -> DbResult<Acked> {
    db.write(move |c| {
        let now = db::now();
        let current = match config {
            true => layout::record_config_ack(c, &sn, version, now)?,
            false => layout::record_tags_ack(c, &sn, version, now)?,
        };
        Ok(Acked { current, status: refresh_status_in(c, &sn, &node, now)? })
    })
    .await
}

/// A verified calibration of one door: (lane code, zero counts, counts per gram) per lane.
pub type DoorCalibration = Vec<(String, i64, f64)>;

/// Store a verified calibration and refresh the status: the status if it changed, and the status
/// as it is now.
pub async fn save_calibration(
    db: &Db,
    sn: String,
    node: String,
    cal: DoorCalibration,
) -> DbResult<(Option<CabinetStatus>, Option<CabinetStatus>)> {
    db.write(move |c| {
        layout::save_calibration(c, &sn, &cal, db::now())?;
        let changed = refresh_status_in(c, &sn, &node, db::now())?;
        let now = cabinets::find(c, &sn)?.map(|c| c.status);
        Ok((changed, now))
    })
    .await
}

/// Set `initializing` / `ready` from the facts (`domain::cabinet::readiness`): ready once the
/// current configuration is acknowledged and every lane is calibrated; `disabled` stays. One
/// `status` event on a change; the new status when it changed.
fn refresh_status_in(
    conn: &mut AnyConnection,
    sn: &str,
    node: &str,
    at: NaiveDateTime,
) -> DbResult<Option<CabinetStatus>> {
    let Some(cab) = cabinets::find(conn, sn)? else { return Ok(None) };
    let lanes = layout::lanes(conn, sn)?;
    let calibrated = lanes.iter().filter(|l| l.counts_per_g.is_some() && l.zero_counts.is_some()).count();
    let next = cabinet::readiness(cab.status, cab.config_version, cab.config_acked_version, lanes.len(), calibrated);
    if next == cab.status {
        return Ok(None);
    }
    let facts = serde_json::json!({
        "config_version": cab.config_version,
        "config_acked_version": cab.config_acked_version,
        "lanes": lanes.len(),
        "calibrated": calibrated,
    })
    .to_string();
    layout::set_status(conn, sn, (cab.status, next), &facts, node, at)?;
    Ok(Some(next))
}

/// Store a cabinet type. Every cabinet's actor reloads its setup: those of this type judge
/// temperature by the new range from now on.
pub async fn put_cabinet_type(db: &Db, t: CabinetType) -> DbResult<Effects> {
    db.write(move |c| layout::put_cabinet_type(c, &t)).await?;
    Ok(Effects::every_setup_changed())
}
