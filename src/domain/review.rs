//! The review queue: orders a person must look at.

use super::names::named_enum;
use super::order::OrderStatus;
use super::settlement::Line;
use super::units::Fen;

named_enum! {
    /// Why a person must look at an order (`review_cases.kind`).
    pub enum CaseKind {
        /// The settlement could not read the weights.
        Weights = "weights",
        /// The shopper disputes what they were charged.
        Appeal = "appeal",
    }
}

named_enum! {
    /// Where a review case stands (`review_cases.status`).
    pub enum CaseStatus {
        Open = "open",
        Resolved = "resolved",
    }
}

named_enum! {
    /// What a person decided on a review case.
    pub enum Decision {
        /// Charge the lines set (an order in review; none: release the pre-authorisation).
        Charge = "charge",
        /// The lines set are what a paid order should have charged: what was paid beyond them goes
        /// back (a refund), what they add is owed.
        Refund = "refund",
        /// Nothing to change (an appeal found unfounded).
        Dismiss = "dismiss",
    }
}

/// What a decision does to the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// An order in review gets the lines and goes to `paying` (or `no_purchase`).
    ChargeLines,
    /// A paid order's basket is replaced; stock and money follow the difference.
    CorrectPaid,
    /// Nothing changes but the case.
    NothingToChange,
}

/// Why a case cannot be resolved so: the message says what would be allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewRefusal {
    #[error("the order is {0}: only an order in review can be charged (a paid order is corrected with refund)")]
    ChargeNeedsReview(OrderStatus),
    #[error("the order is {0}: only a paid order can be refunded (an order in review is charged)")]
    RefundNeedsPaid(OrderStatus),
    #[error("an order in review must be charged (with no lines to release it)")]
    ReviewCannotBeDismissed,
    #[error("lane {0} is listed twice")]
    LaneTwice(String),
    #[error("lane {0}: a quantity cannot be negative")]
    NegativeQuantity(String),
    #[error("cabinet {sn} has no lane {lane}")]
    NoSuchLane { sn: String, lane: String },
    #[error("lane {lane} holds at most {capacity} units, not {qty}")]
    OverCapacity { lane: String, capacity: i64, qty: i64 },
    #[error("lane {lane} holds no product on cabinet {sn}")]
    NoProduct { sn: String, lane: String },
}

/// The decision table: what `decision` does to an order in `status`.
pub fn resolution(decision: Decision, status: OrderStatus) -> Result<Resolution, ReviewRefusal> {
    match (decision, status) {
        (Decision::Charge, OrderStatus::Review) => Ok(Resolution::ChargeLines),
        (Decision::Refund, OrderStatus::Paid) => Ok(Resolution::CorrectPaid),
        (Decision::Charge, other) => Err(ReviewRefusal::ChargeNeedsReview(other)),
        (Decision::Refund, other) => Err(ReviewRefusal::RefundNeedsPaid(other)),
        (Decision::Dismiss, OrderStatus::Review) => Err(ReviewRefusal::ReviewCannotBeDismissed),
        (Decision::Dismiss, _) => Ok(Resolution::NothingToChange),
    }
}

/// A lane of the cabinet as a reviewer's line is priced from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneOffer {
    pub lane: String,
    /// Units the lane holds when full.
    pub capacity: i64,
    /// The product it holds now: id, name and price (fen).
    pub product: Option<(i64, String, Fen)>,
}

/// The lines a person set on cabinet `sn`, priced: a lane the order charged keeps the product and
/// price it was charged at; any other is priced as its product is now. Each lane at most once, a
/// lane of the cabinet, never negative, and no more units than it holds when full; a lane set to
/// zero is left out. Checked lane by lane in the order given, so the first fault is the answer.
pub fn priced_lines(
    sn: &str,
    set: &[(String, i64)],
    lanes: &[LaneOffer],
    charged: &[Line],
) -> Result<Vec<Line>, ReviewRefusal> {
    let mut lines = Vec::new();
    for (i, (lane, qty)) in set.iter().enumerate() {
        let qty = *qty;
        if set[..i].iter().any(|(l, _)| l == lane) {
            return Err(ReviewRefusal::LaneTwice(lane.clone()));
        }
        if qty < 0 {
            return Err(ReviewRefusal::NegativeQuantity(lane.clone()));
        }
        let Some(offer) = lanes.iter().find(|l| &l.lane == lane) else {
            return Err(ReviewRefusal::NoSuchLane { sn: sn.into(), lane: lane.clone() });
        };
        if qty > offer.capacity {
            return Err(ReviewRefusal::OverCapacity { lane: lane.clone(), capacity: offer.capacity, qty });
        }
        if qty == 0 {
            continue;
        }
        let (product_id, product_name, unit_fen) = match (charged.iter().find(|l| &l.lane == lane), &offer.product) {
            (Some(was), _) => (was.product_id, was.product_name.clone(), was.unit_fen),
            (None, Some((id, name, price))) => (*id, name.clone(), *price),
            (None, None) => return Err(ReviewRefusal::NoProduct { sn: sn.into(), lane: lane.clone() }),
        };
        lines.push(Line { lane: lane.clone(), product_id, product_name, qty, unit_fen, amount_fen: unit_fen * qty });
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(lane: &str, capacity: i64, product: Option<(i64, &str, i64)>) -> LaneOffer {
        LaneOffer { lane: lane.into(), capacity, product: product.map(|(id, n, p)| (id, n.into(), Fen(p))) }
    }

    fn set(lines: &[(&str, i64)]) -> Vec<(String, i64)> {
        lines.iter().map(|(l, q)| (l.to_string(), *q)).collect()
    }

    #[test]
    fn the_decision_table() {
        use Decision::*;
        assert_eq!(resolution(Charge, OrderStatus::Review), Ok(Resolution::ChargeLines));
        assert_eq!(resolution(Refund, OrderStatus::Paid), Ok(Resolution::CorrectPaid));
        assert_eq!(resolution(Dismiss, OrderStatus::Paid), Ok(Resolution::NothingToChange));
        assert_eq!(resolution(Dismiss, OrderStatus::PaymentFailed), Ok(Resolution::NothingToChange));
        assert_eq!(resolution(Dismiss, OrderStatus::Review), Err(ReviewRefusal::ReviewCannotBeDismissed));
        assert_eq!(resolution(Charge, OrderStatus::Paid), Err(ReviewRefusal::ChargeNeedsReview(OrderStatus::Paid)));
        assert_eq!(
            resolution(Refund, OrderStatus::Review).map_err(|e| e.to_string()),
            Err("the order is review: only a paid order can be refunded (an order in review is charged)".into())
        );
        for &status in OrderStatus::ALL {
            let allowed: Vec<Decision> =
                Decision::ALL.iter().copied().filter(|d| resolution(*d, status).is_ok()).collect();
            assert!(allowed.len() <= 2, "{status}: {allowed:?}");
        }
    }

    #[test]
    fn lines_are_priced_from_the_charge_or_the_lane() {
        let lanes = [offer("A1", 10, Some((1, "water", 200))), offer("A2", 10, Some((2, "cola", 350)))];
        let charged = [Line {
            lane: "A1".into(),
            product_id: 1,
            product_name: "water (old name)".into(),
            qty: 2,
            unit_fen: Fen(180),
            amount_fen: Fen(360),
        }];
        let lines = priced_lines("CAB-1", &set(&[("A1", 3), ("A2", 1), ("A3", 0)][..2]), &lanes, &charged).expect("ok");
        assert_eq!(lines[0].product_name, "water (old name)", "charged lanes keep what they were charged at");
        assert_eq!((lines[0].unit_fen, lines[0].amount_fen), (Fen(180), Fen(540)));
        assert_eq!((lines[1].product_id, lines[1].unit_fen, lines[1].amount_fen), (2, Fen(350), Fen(350)));
        let zero = priced_lines("CAB-1", &set(&[("A1", 0)]), &lanes, &[]).expect("ok");
        assert!(zero.is_empty(), "a lane set to zero is no line");
    }

    #[test]
    fn the_first_fault_in_order_is_the_answer() {
        let lanes = [offer("A1", 5, Some((1, "water", 200))), offer("A2", 5, None)];
        let refused =
            |lines: &[(&str, i64)]| priced_lines("CAB-1", &set(lines), &lanes, &[]).map_err(|e| e.to_string());
        assert_eq!(refused(&[("A1", 1), ("A1", 2)]), Err("lane A1 is listed twice".into()));
        assert_eq!(refused(&[("A1", -1)]), Err("lane A1: a quantity cannot be negative".into()));
        assert_eq!(refused(&[("B9", 1)]), Err("cabinet CAB-1 has no lane B9".into()));
        assert_eq!(refused(&[("A1", 6)]), Err("lane A1 holds at most 5 units, not 6".into()));
        assert_eq!(refused(&[("A2", 1)]), Err("lane A2 holds no product on cabinet CAB-1".into()));
        assert_eq!(refused(&[("A1", 9), ("B9", 1)]), Err("lane A1 holds at most 5 units, not 9".into()));
    }
}
