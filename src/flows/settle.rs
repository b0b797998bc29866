//! The door closed and every lane settled (or the wait ran out): the settlement. The cabinet's
//! actor gathers each lane's weights; `domain::settlement` reads them as a basket or a case for a
//! person; one transaction writes the lines and total, `paying` (or `no_purchase`, or `review`),
//! stock and ledger, the messages (`payment.capture`, `payment.release`, `restock.check`) and the
//! session's end.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;

use super::order::{self, Moved};
use super::{Effects, alerts, sessions, stock};
use crate::db::models::Order;
use crate::db::orders::{self, OrderChanges};
use crate::db::stock::LedgerRefs;
use crate::db::{self, AnyConnection, Db, DbResult, reviews, write_tx};
use crate::domain::alert;
use crate::domain::live::Change;
use crate::domain::order::{OrderEvent, OrderStatus, Stay};
use crate::domain::review::CaseKind;
use crate::domain::session::Outcome;
use crate::domain::settlement::{self, LaneReading, SettleRule, Settlement};
use crate::domain::stock::{StockReason, basket_changes};
use crate::domain::units::Grams;

/// How a settlement ended.
#[derive(Debug, Clone)]
pub enum Settled {
    /// Stored now: the order after it (`paying`, `no_purchase` or `review`).
    Now(Box<Order>),
    /// Stored before, though the write that stored it reported an error.
    Already(Box<Order>),
    /// The order could not take it (it was ended meanwhile): the goods taken are for a person to
    /// book and charge from the weight trace (`settlement_refused` is raised).
    Refused(Box<Order>, Stay),
}

/// Settle purchase `order_id` of cabinet `sn` from its lanes' weights before and after.
pub async fn settle(
    db: &Db,
    sn: &str,
    order_id: i64,
    readings: Vec<LaneReading>,
    evidence: String,
    rule: &SettleRule,
) -> DbResult<(Settled, Effects)> {
    let outcome = settlement::settle(&readings, rule);
    let after: BTreeMap<String, Option<Grams>> = readings.iter().map(|r| (r.lane.clone(), r.after_g)).collect();
    let after_g = serde_json::to_string(&after).unwrap_or_default();
    let reasons = match &outcome {
        Settlement::Review { reasons } => serde_json::json!({ "reasons": reasons, "lanes": readings }).to_string(),
        Settlement::Settled { .. } => String::new(),
    };
    let after_copy = after_g.clone();
    let moved = db
        .write(move |c| {
            let moved = settle_in(c, order_id, &outcome, &reasons, &after_copy, db::now())?;
            // The evidence goes with the settlement, in its transaction (`Db::write` is one),
            // whatever happens after.
            if let (Moved::To(_), Some(session)) = (&moved, moved.order().session_id) {
                crate::db::sessions::set_evidence(c, session, &evidence)?;
            }
            Ok::<_, crate::db::DbError>(moved)
        })
        .await?;
    match moved {
        Moved::To(o) => {
            let effects = Effects::order_changed(o.id).changed(Change::Cabinet { sn: o.sn.clone() });
            Ok((Settled::Now(o), effects))
        }
        Moved::Stayed(o, Stay::AlreadyThere) => Ok((Settled::Already(o), Effects::none())),
        Moved::Stayed(o, why) => {
            refused(db, sn, &o, why, after_g).await?;
            let id = o.id;
            Ok((Settled::Refused(o, why), Effects::none().changed(Change::Order { id })))
        }
    }
}

fn settle_in(
    conn: &mut AnyConnection,
    id: i64,
    outcome: &Settlement,
    reasons: &str,
    after_g: &str,
    now: NaiveDateTime,
) -> DbResult<Moved> {
    write_tx(conn, |conn| {
        record_missed_door_events(conn, id, now)?;
        let event = match outcome {
            Settlement::Settled { lines, .. } => OrderEvent::Settled { empty: lines.is_empty() },
            Settlement::Review { .. } => OrderEvent::Ambiguous,
        };
        order::apply(conn, id, event, now, |conn, o, to| {
            let settled =
                OrderChanges { settled_at: Some(Some(now)), after_g: Some(Some(after_g.into())), ..Default::default() };
            orders::update(conn, id, &settled, now)?;
            match outcome {
                Settlement::Settled { lines, moves, total_fen } => {
                    orders::write_lines(conn, id, lines)?;
                    orders::update(
                        conn,
                        id,
                        &OrderChanges { total_fen: Some(Some(*total_fen)), ..Default::default() },
                        now,
                    )?;
                    order::owe_excess(conn, o, *total_fen, now)?;
                    let refs = LedgerRefs { order_id: Some(o.id), session_id: o.session_id, task_id: None };
                    stock::change_in(conn, &o.sn, &basket_changes(lines, moves, StockReason::Sale), refs, now)?;
                    order::charge_or_release(conn, o, to, now)?;
                }
                Settlement::Review { .. } => {
                    reviews::open_case(conn, id, CaseKind::Weights, reasons, "system", now)?;
                }
            }
            if let Some(s) = o.session_id {
                let detail = serde_json::json!({ "order_id": id, "status": to }).to_string();
                sessions::close_in(conn, s, Outcome::Done, Some(&detail), now)?;
            }
            Ok(())
        })
    })
}

/// The open and the close are recorded on their own writes; if one was lost, it is recorded here
/// (the cabinet did report both, or there would be nothing to settle).
fn record_missed_door_events(conn: &mut AnyConnection, id: i64, now: NaiveDateTime) -> DbResult<()> {
    let status = orders::find(conn, id)?.map(|o| o.status);
    if status == Some(OrderStatus::Authorized) {
        order::door_opened(conn, id, None, now)?;
    }
    if matches!(status, Some(OrderStatus::Authorized | OrderStatus::DoorOpen)) {
        order::door_closed(conn, id, now)?;
    }
    Ok(())
}

/// Goods were taken on an order that could not take them: a person must look, and the session
/// ends failed.
async fn refused(db: &Db, sn: &str, o: &Order, why: Stay, after_g: String) -> DbResult<()> {
    tracing::error!(%sn, order = o.id, status = %o.status, %why, "settlement refused");
    let spec = alert::settlement_refused(sn, o.id, o.status.as_str(), &why.to_string(), &after_g);
    let session = o.session_id;
    db.write(move |c| {
        alerts::raise_in(c, &spec)?;
        if let Some(s) = session {
            sessions::close_in(c, s, Outcome::Failed, None, db::now())?;
        }
        Ok(())
    })
    .await
}
