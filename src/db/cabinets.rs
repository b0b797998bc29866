//! Cabinets and their events. Writes happen on provisioning, login and liveness changes only,
//! never per heartbeat.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::{Cabinet, CabinetEvent, NewCabinet, NewCabinetEvent};
use super::schema::{cabinet_events, cabinets};
use super::{AnyConnection, DbError, DbResult, write_tx};
use crate::domain::cabinet::{CabinetEventKind, CabinetStatus};
use crate::domain::liveness::Liveness;

pub fn insert(conn: &mut AnyConnection, new: &NewCabinet) -> DbResult<()> {
    diesel::insert_into(cabinets::table).values(new).execute(conn)?;
    Ok(())
}

/// Replace a cabinet's credentials. Returns false when there is no such cabinet.
pub fn rotate_credentials(
    conn: &mut AnyConnection,
    sn: &str,
    token_hash: &str,
    frame_key_sealed: &str,
    at: NaiveDateTime,
) -> DbResult<bool> {
    let n = diesel::update(cabinets::table.find(sn))
        .set((
            cabinets::token_hash.eq(token_hash),
            cabinets::frame_key_sealed.eq(frame_key_sealed),
            cabinets::updated_at.eq(at),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

pub fn token_hash(conn: &mut AnyConnection, sn: &str) -> DbResult<Option<String>> {
    Ok(cabinets::table.find(sn).select(cabinets::token_hash).first(conn).optional()?)
}

/// Whether the cabinet is known.
pub fn exists(conn: &mut AnyConnection, sn: &str) -> DbResult<bool> {
    Ok(diesel::select(diesel::dsl::exists(cabinets::table.filter(cabinets::sn.eq(sn)))).get_result(conn)?)
}

pub fn find(conn: &mut AnyConnection, sn: &str) -> DbResult<Option<Cabinet>> {
    Ok(cabinets::table.find(sn).select(Cabinet::as_select()).first(conn).optional()?)
}

#[derive(Debug, Default, Clone)]
pub struct CabinetFilter {
    pub status: Option<CabinetStatus>,
    pub liveness: Option<Liveness>,
    /// Keyset paging: only serial numbers after this one.
    pub after: Option<String>,
}

/// Ordered by serial number.
pub fn list(conn: &mut AnyConnection, f: &CabinetFilter, limit: i64) -> DbResult<Vec<Cabinet>> {
    let mut q = cabinets::table.select(Cabinet::as_select()).into_boxed();
    if let Some(status) = f.status {
        q = q.filter(cabinets::status.eq(status));
    }
    if let Some(liveness) = f.liveness {
        q = q.filter(cabinets::liveness.eq(liveness));
    }
    if let Some(after) = &f.after {
        q = q.filter(cabinets::sn.gt(after.clone()));
    }
    Ok(q.order(cabinets::sn.asc()).limit(limit).load(conn)?)
}

/// Serial numbers of cabinets the database does not consider offline.
pub fn not_offline(conn: &mut AnyConnection) -> DbResult<Vec<String>> {
    Ok(cabinets::table.select(cabinets::sn).filter(cabinets::liveness.ne(Liveness::Offline)).load(conn)?)
}

/// How many cabinets the database does not consider offline.
pub fn count_not_offline(conn: &mut AnyConnection) -> DbResult<i64> {
    Ok(cabinets::table.filter(cabinets::liveness.ne(Liveness::Offline)).count().get_result(conn)?)
}

/// What a login records.
#[derive(Debug, Clone)]
pub struct LoginRecord {
    pub sn: String,
    pub boot: i64,
    pub node_id: String,
    pub firmware: Option<String>,
    /// GCJ-02, from the cabinet; only used when the operator has not set a position.
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    pub at: NaiveDateTime,
}

#[derive(Debug, Clone)]
pub enum LoginResult {
    /// Accepted; the cabinet's liveness before the login and its row after it.
    Accepted {
        previous: Liveness,
        cabinet: Box<Cabinet>,
    },
    /// Another login with this boot or a later one was accepted first.
    StaleBoot {
        last_boot: i64,
    },
    Unknown,
}

/// Accept a login inside the caller's transaction: advance `last_boot` (refusing a boot not
/// greater than the last), record node and firmware, bring liveness back online with one event if
/// it was not, and log the login itself.
pub fn record_login(conn: &mut AnyConnection, r: &LoginRecord) -> DbResult<LoginResult> {
    write_tx(conn, |c| {
        // The boot condition is in the UPDATE itself, so two racing logins cannot both win; and
        // the row is read after it (locked, on PostgreSQL), so the liveness seen is current.
        let advanced = diesel::update(cabinets::table.find(&r.sn).filter(cabinets::last_boot.lt(r.boot)))
            .set((
                cabinets::last_boot.eq(r.boot),
                cabinets::node_id.eq(Some(&r.node_id)),
                cabinets::firmware.eq(r.firmware.as_ref()),
                cabinets::last_login_at.eq(Some(r.at)),
                cabinets::updated_at.eq(r.at),
            ))
            .execute(c)?;
        let Some(before) = find(c, &r.sn)? else {
            return Ok(LoginResult::Unknown);
        };
        if advanced == 0 {
            return Ok(LoginResult::StaleBoot { last_boot: before.last_boot });
        }
        if let (None, None, Some(lat), Some(lng)) = (before.lat, before.lng, r.lat, r.lng) {
            diesel::update(cabinets::table.find(&r.sn))
                .set((cabinets::lat.eq(Some(lat)), cabinets::lng.eq(Some(lng))))
                .execute(c)?;
        }
        let previous = before.liveness;
        change_liveness(c, &r.sn, previous, Liveness::Online, &r.node_id, r.at, Some("login"))?;
        diesel::insert_into(cabinet_events::table)
            .values(NewCabinetEvent {
                sn: r.sn.clone(),
                kind: CabinetEventKind::Login,
                from_state: None,
                to_state: None,
                detail: Some(
                    serde_json::json!({"boot": r.boot, "firmware": r.firmware, "node": r.node_id}).to_string(),
                ),
                node_id: r.node_id.clone(),
                created_at: r.at,
            })
            .execute(c)?;
        let cabinet = find(c, &r.sn)?.ok_or(DbError::Query(diesel::result::Error::NotFound))?;
        Ok(LoginResult::Accepted { previous, cabinet: Box::new(cabinet) })
    })
}

/// Move a cabinet's liveness from `from` to `to`, with one `liveness` event, only if it is still
/// `from` (so two nodes, or a heartbeat racing the watchdog, cannot record the change twice).
/// Returns whether it changed.
pub fn change_liveness(
    conn: &mut AnyConnection,
    sn: &str,
    from: Liveness,
    to: Liveness,
    node_id: &str,
    at: NaiveDateTime,
    cause: Option<&str>,
) -> DbResult<bool> {
    if from == to {
        return Ok(false);
    }
    write_tx(conn, |c| {
        let n = diesel::update(cabinets::table.find(sn).filter(cabinets::liveness.eq(from)))
            .set((cabinets::liveness.eq(to), cabinets::liveness_changed_at.eq(Some(at)), cabinets::updated_at.eq(at)))
            .execute(c)?;
        if n == 0 {
            return Ok(false);
        }
        diesel::insert_into(cabinet_events::table)
            .values(NewCabinetEvent {
                sn: sn.to_string(),
                kind: CabinetEventKind::Liveness,
                from_state: Some(from.as_str().into()),
                to_state: Some(to.as_str().into()),
                detail: cause.map(|s| serde_json::json!({"cause": s}).to_string()),
                node_id: node_id.to_string(),
                created_at: at,
            })
            .execute(c)?;
        Ok(true)
    })
}

/// The current liveness as stored.
pub fn liveness(conn: &mut AnyConnection, sn: &str) -> DbResult<Option<Liveness>> {
    Ok(cabinets::table.find(sn).select(cabinets::liveness).first(conn).optional()?)
}

/// Newest first.
pub fn events(
    conn: &mut AnyConnection,
    sn: &str,
    kind: Option<CabinetEventKind>,
    limit: i64,
) -> DbResult<Vec<CabinetEvent>> {
    let mut q = cabinet_events::table
        .select(CabinetEvent::as_select())
        .filter(cabinet_events::sn.eq(sn.to_string()))
        .into_boxed();
    if let Some(kind) = kind {
        q = q.filter(cabinet_events::kind.eq(kind));
    }
    Ok(q.order(cabinet_events::id.desc()).limit(limit).load(conn)?)
}

/// Stored liveness of each of these cabinets (unknown serial numbers are left out).
pub fn liveness_of(conn: &mut AnyConnection, sns: &[String]) -> DbResult<Vec<(String, Liveness)>> {
    Ok(cabinets::table
        .select((cabinets::sn, cabinets::liveness))
        .filter(cabinets::sn.eq_any(sns.to_vec()))
        .load(conn)?)
}
