//! Book stock changes: each lane's change and its ledger row, and `restock.check` for the lanes a
//! change took to their threshold — in the transaction of whatever caused it (a settlement, a
//! review, a restock).

use chrono::NaiveDateTime;

use crate::db::stock::{self, LedgerRefs};
use crate::db::{AnyConnection, DbResult};
use crate::domain::restock::crossed_threshold;
use crate::domain::stock::StockChange;
use crate::mq::topics::{Payload, RestockCheck};

/// Apply `changes` to cabinet `sn`'s book stock, inside the caller's transaction. Changes of
/// nothing are skipped; lanes that crossed their threshold get one `restock.check`.
pub fn change_in(
    conn: &mut AnyConnection,
    sn: &str,
    changes: &[StockChange],
    refs: LedgerRefs,
    now: NaiveDateTime,
) -> DbResult<()> {
    let mut low = Vec::new();
    for ch in changes.iter().filter(|c| c.delta != 0) {
        let changed = stock::change(conn, sn, ch, refs, now)?;
        if crossed_threshold(changed.before, changed.after, changed.threshold) {
            low.push(ch.lane.clone());
        }
    }
    if !low.is_empty() {
        RestockCheck { sn: sn.to_string(), lanes: low }.enqueue(conn)?;
    }
    Ok(())
}
