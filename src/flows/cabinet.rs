//! A cabinet's connection as the database records it: its logins, and its liveness — back online
//! when it is heard from, suspect or offline when the watchdog's plan says so
//! (`domain::liveness::plan_round`). Each change is one conditional update with its event, so a
//! racing heartbeat or a second node cannot record it twice.

use super::alerts;
use crate::cache::Cache;
use crate::db::cabinets::{self, LoginRecord, LoginResult};
use crate::db::{self, Db, DbResult, write_tx};
use crate::domain::alert::{self, AlertCode};
use crate::domain::liveness::{Liveness, Transition};

/// Record a login (`cabinets::record_login`); a cabinet that was offline has its offline alert
/// resolved with it.
pub async fn login(db: &Db, record: LoginRecord) -> DbResult<LoginResult> {
    db.write(move |c| {
        write_tx(c, |c| {
            let result = cabinets::record_login(c, &record)?;
            if let LoginResult::Accepted { previous: Liveness::Offline, .. } = &result {
                alerts::resolve_in(c, AlertCode::CabinetOffline, Some(&record.sn))?;
            }
            Ok(result)
        })
    })
    .await
}

/// A cabinet marked suspect or offline was heard from: back online, with one event. Returns
/// whether this call changed it, and its liveness as stored now (`None`: no such cabinet).
pub async fn back_online(db: &Db, sn: String, node: String) -> DbResult<(bool, Option<Liveness>)> {
    db.write(move |c| {
        let Some(current) = cabinets::liveness(c, &sn)? else { return Ok((false, None)) };
        let at = db::now();
        let changed = cabinets::change_liveness(c, &sn, current, Liveness::Online, &node, at, Some("heartbeat"))?;
        if changed && current == Liveness::Offline {
            alerts::resolve_in(c, AlertCode::CabinetOffline, Some(&sn))?;
        }
        Ok((changed, cabinets::liveness(c, &sn)?))
    })
    .await
}

/// Apply the watchdog's planned changes; the ones that went through (a heartbeat may have beaten
/// one of them). A cabinet gone offline raises its alert for the people who visit cabinets.
pub async fn apply_liveness(
    db: &Db,
    planned: Vec<Transition>,
    node: String,
    offline_after_s: u64,
) -> DbResult<Vec<Transition>> {
    db.write(move |c| {
        let mut applied = Vec::new();
        for t in planned {
            let at = db::now();
            if cabinets::change_liveness(c, &t.sn, t.from, t.to, &node, at, Some("watchdog"))? {
                if t.to == Liveness::Offline {
                    alerts::raise_in(c, &alert::cabinet_offline(&t.sn, offline_after_s))?;
                }
                applied.push(t);
            }
        }
        Ok(applied)
    })
    .await
}

/// Fill the GEO index from the database when it holds fewer cabinets than the database has
/// positions for: a node that just started (the in-memory index starts empty), or a Redis that
/// was flushed or restarted. Nearby search then finds every cabinet again. Returns how many were
/// indexed (0 when nothing was missing).
pub async fn index_positions(db: &Db, cache: &dyn Cache) -> usize {
    let known = match (db.run(crate::db::layout::count_positioned).await, cache.geo_count().await) {
        (Ok(known), Ok(indexed)) if u64::try_from(known).unwrap_or(0) <= indexed => return 0,
        (Ok(known), Ok(_)) => known,
        (Err(e), _) => {
            tracing::warn!(error = %e, "cabinet positions not counted; GEO index not checked");
            return 0;
        }
        (_, Err(e)) => {
            tracing::warn!(error = %e, "GEO index not counted");
            return 0;
        }
    };
    let rows = match db.run(crate::db::layout::positions).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "cabinet positions not read; GEO index not filled");
            return 0;
        }
    };
    for (sn, lat, lng) in &rows {
        if let Err(e) = cache.geo_add(sn, *lng, *lat).await {
            tracing::warn!(error = %e, "GEO index not filled");
            return 0;
        }
    }
    tracing::info!(cabinets = known, "GEO index filled from the database");
    rows.len()
}

/// Add what the cabinet's actor saw of its lanes' cells since it last wrote (`lane_health`).
pub async fn record_lane_health(db: &Db, rows: Vec<crate::db::lane_health::LaneHealth>) -> DbResult<()> {
    db.write(move |c| crate::db::lane_health::add(c, &rows)).await
}
