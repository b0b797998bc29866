//! Book stock: why a lane's stock changed (the ledger's reasons).

use super::names::named_enum;

named_enum! {
    /// Why book stock changed (`stock_ledger.reason`).
    pub enum StockReason {
        /// Sold in a settled purchase.
        Sale = "sale",
        /// Moved by a shopper from one lane to another (not sold).
        Move = "move",
        /// Set by a person in the review queue.
        Review = "review",
        /// Put in (or taken out) by a restocker, counted by weight.
        Restock = "restock",
        /// Set to what the shelf's weight implies by the nightly stocktake.
        Stocktake = "stocktake",
    }
}

use super::settlement::{Line, Move};

/// One lane's book-stock change: `delta` units, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockChange {
    pub lane: String,
    pub product_id: Option<i64>,
    pub delta: i64,
    pub reason: StockReason,
}

/// The stock changes of a basket (`reason` for its sold lines: a sale, or a person's review):
/// sold lines leave their lanes, moved units follow the shopper's hand.
pub fn basket_changes(lines: &[Line], moves: &[Move], reason: StockReason) -> Vec<StockChange> {
    let mut out: Vec<StockChange> = lines
        .iter()
        .map(|l| StockChange { lane: l.lane.clone(), product_id: Some(l.product_id), delta: -l.qty, reason })
        .collect();
    for m in moves {
        let product_id = Some(m.product_id);
        out.push(StockChange { lane: m.from_lane.clone(), product_id, delta: -m.qty, reason: StockReason::Move });
        out.push(StockChange { lane: m.to_lane.clone(), product_id, delta: m.qty, reason: StockReason::Move });
    }
    out
}

/// A paid basket corrected from `charged` to `corrected`: units the charge took and the person says
/// were not taken are back on the shelf, and the other way round. One change per lane that differs.
pub fn correction_changes(charged: &[Line], corrected: &[Line]) -> Vec<StockChange> {
    let mut changes: Vec<StockChange> = Vec::new();
    for lane in charged.iter().map(|l| &l.lane).chain(corrected.iter().map(|l| &l.lane)) {
        if changes.iter().any(|c| &c.lane == lane) {
            continue;
        }
        let was = charged.iter().find(|l| &l.lane == lane);
        let is = corrected.iter().find(|l| &l.lane == lane);
        let delta = was.map_or(0, |l| l.qty) - is.map_or(0, |l| l.qty);
        if delta != 0 {
            let product_id = is.map(|l| l.product_id).or(was.map(|l| l.product_id));
            changes.push(StockChange { lane: lane.clone(), product_id, delta, reason: StockReason::Review });
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::units::Fen;

    fn line(lane: &str, product_id: i64, qty: i64) -> Line {
        Line {
            lane: lane.into(),
            product_id,
            product_name: format!("p{product_id}"),
            qty,
            unit_fen: Fen(100),
            amount_fen: Fen(100) * qty,
        }
    }

    #[test]
    fn a_basket_leaves_its_lanes_and_moves_follow_the_hand() {
        let moves = [Move { product_id: 2, from_lane: "A2".into(), to_lane: "A3".into(), qty: 1 }];
        let changes = basket_changes(&[line("A1", 1, 2)], &moves, StockReason::Sale);
        let got: Vec<(&str, i64, StockReason)> = changes.iter().map(|c| (c.lane.as_str(), c.delta, c.reason)).collect();
        assert_eq!(got, [("A1", -2, StockReason::Sale), ("A2", -1, StockReason::Move), ("A3", 1, StockReason::Move)]);
    }

    #[test]
    fn a_correction_changes_only_the_lanes_that_differ() {
        let charged = [line("A1", 1, 2), line("A2", 2, 1)];
        let corrected = [line("A1", 1, 2), line("A3", 3, 1)];
        let changes = correction_changes(&charged, &corrected);
        let got: Vec<(&str, Option<i64>, i64)> =
            changes.iter().map(|c| (c.lane.as_str(), c.product_id, c.delta)).collect();
        assert_eq!(got, [("A2", Some(2), 1), ("A3", Some(3), -1)], "A2 back on the shelf, A3 taken");
        assert!(changes.iter().all(|c| c.reason == StockReason::Review));
        assert!(correction_changes(&charged, &charged).is_empty());
    }
}
