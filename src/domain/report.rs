//! A business day's settlement per cabinet and product: what was sold and earned, given back,
//! paid in fees, owed and recovered. Pure: `flows::report` pages through the day's orders and
//! feeds them in; memory grows with cabinets × products, not with orders.
//!
//! Money that belongs to an order rather than to a line (a refund, the platform's fee, debt) is
//! shared out over the order's products in proportion to what each was charged, by largest
//! remainder, so the shares always add up to the order's figure exactly.

use std::collections::BTreeMap;

use serde::Serialize;

use super::units::Fen;

/// One line of an order, as charged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineFact {
    pub lane: String,
    pub product_id: i64,
    pub product_name: String,
    pub qty: i64,
    pub amount: Fen,
}

/// An order and its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFact {
    pub order_id: i64,
    pub sn: String,
    pub lines: Vec<LineFact>,
}

/// A cabinet's product on one day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SettlementRow {
    pub sn: String,
    pub product_id: i64,
    pub product_name: String,
    /// Orders paid that day with the product.
    pub orders: i64,
    pub units_sold: i64,
    /// What the goods sold were charged at.
    pub gross_fen: Fen,
    pub refunds_fen: Fen,
    /// The platforms' fees, net of those returned with refunds.
    pub fees_fen: Fen,
    /// Gross less refunds and fees.
    pub net_fen: Fen,
    pub debt_opened_fen: Fen,
    pub debt_recovered_fen: Fen,
    pub loss_units: i64,
    pub loss_fen: Fen,
    /// Review cases opened that day on orders with the product.
    pub reviews: i64,
}

/// `total` shared in proportion to `weights`, largest remainder first (ties to the earlier), so
/// the shares add up to `total`. All weights zero: shared equally.
pub fn share(total: Fen, weights: &[Fen]) -> Vec<Fen> {
    if weights.is_empty() {
        return Vec::new();
    }
    let sum: i128 = weights.iter().map(|w| i128::from(w.0.max(0))).sum();
    let weights: Vec<i128> = match sum {
        0 => vec![1; weights.len()],
        _ => weights.iter().map(|w| i128::from(w.0.max(0))).collect(),
    };
    let sum: i128 = weights.iter().sum();
    let t = i128::from(total.0);
    let mut shares: Vec<i128> = weights.iter().map(|w| (t * w).div_euclid(sum)).collect();
    let mut left = t - shares.iter().sum::<i128>();
    let mut by_remainder: Vec<(usize, i128)> =
        weights.iter().enumerate().map(|(i, w)| (i, (t * w).rem_euclid(sum))).collect();
    by_remainder.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for (i, _) in by_remainder {
        if left == 0 {
            break;
        }
        shares[i] += 1;
        left -= 1;
    }
    shares.into_iter().map(|s| Fen(i64::try_from(s).unwrap_or(i64::MAX))).collect()
}

/// The day's rows being added up.
#[derive(Debug, Default)]
pub struct DayTotals {
    rows: BTreeMap<(String, i64), SettlementRow>,
}

impl DayTotals {
    fn row(&mut self, sn: &str, line: &LineFact) -> &mut SettlementRow {
        self.rows.entry((sn.to_string(), line.product_id)).or_insert_with(|| SettlementRow {
            sn: sn.to_string(),
            product_id: line.product_id,
            product_name: line.product_name.clone(),
            ..SettlementRow::default()
        })
    }

    /// `amount` of the order shared over its lines, each share added where `field` says.
    fn spread(&mut self, o: &OrderFact, amount: Fen, field: impl Fn(&mut SettlementRow) -> &mut Fen) {
        let weights: Vec<Fen> = o.lines.iter().map(|l| l.amount).collect();
        for (line, part) in o.lines.iter().zip(share(amount, &weights)) {
            let f = field(self.row(&o.sn, line));
            *f = Fen(f.0 + part.0);
        }
    }

    /// An order paid that day, and the platform's fee on it.
    pub fn paid(&mut self, o: &OrderFact, fee: Fen) {
        for line in &o.lines {
            let r = self.row(&o.sn, line);
            r.orders += 1;
            r.units_sold += line.qty;
            r.gross_fen = Fen(r.gross_fen.0 + line.amount.0);
        }
        self.spread(o, fee, |r| &mut r.fees_fen);
    }

    /// A refund that went through that day on an order charged for `o`'s lines and now holding
    /// `now` (a correction took some back), and the fee the platform gave back with it. The
    /// refund is shared over what the correction took back, else over what was charged.
    pub fn refunded(&mut self, o: &OrderFact, now: &[LineFact], amount: Fen, fee_back: Fen) {
        let taken_back: Vec<LineFact> = o
            .lines
            .iter()
            .map(|l| {
                let left = now.iter().find(|n| n.lane == l.lane).map_or(0, |n| n.amount.0);
                LineFact { amount: Fen((l.amount.0 - left).max(0)), ..l.clone() }
            })
            .collect();
        let basis = match taken_back.iter().any(|l| l.amount.0 > 0) {
            true => OrderFact { lines: taken_back, ..o.clone() },
            false => o.clone(),
        };
        self.spread(&basis, amount, |r| &mut r.refunds_fen);
        self.spread(&basis, Fen(-fee_back.0.abs()), |r| &mut r.fees_fen);
    }

    /// A change of what the order's shopper owes: positive opened, negative recovered.
    pub fn debt(&mut self, o: &OrderFact, delta: Fen) {
        match delta.0 >= 0 {
            true => self.spread(o, delta, |r| &mut r.debt_opened_fen),
            false => self.spread(o, Fen(-delta.0), |r| &mut r.debt_recovered_fen),
        }
    }

    /// Units of a product gone from cabinet `sn` that no shopper was charged for (the night's
    /// stocktake), and their value; negative for units found.
    pub fn lost(&mut self, sn: &str, product_id: i64, product_name: &str, units: i64, value: Fen) {
        let key =
            LineFact { lane: String::new(), product_id, product_name: product_name.into(), qty: 0, amount: Fen(0) };
        let r = self.row(sn, &key);
        r.loss_units += units;
        r.loss_fen = Fen(r.loss_fen.0 + value.0);
    }

    /// A review case opened on the order.
    pub fn reviewed(&mut self, o: &OrderFact) {
        for line in &o.lines {
            self.row(&o.sn, line).reviews += 1;
        }
    }

    /// The rows, by cabinet then product, with their net worked out.
    pub fn rows(self) -> Vec<SettlementRow> {
        self.rows
            .into_values()
            .map(|mut r| {
                r.net_fen = Fen(r.gross_fen.0 - r.refunds_fen.0 - r.fees_fen.0);
                r
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(product_id: i64, qty: i64, amount: i64) -> LineFact {
        LineFact {
            lane: format!("A{product_id}"),
            product_id,
            product_name: format!("P{product_id}"),
            qty,
            amount: Fen(amount),
        }
    }

    fn order(id: i64, lines: Vec<LineFact>) -> OrderFact {
        OrderFact { order_id: id, sn: "SN-1".into(), lines }
    }

    #[test]
    fn shares_follow_the_lines_and_add_up() {
        assert_eq!(share(Fen(10), &[Fen(700), Fen(600)]), [Fen(5), Fen(5)]);
        assert_eq!(share(Fen(7), &[Fen(700), Fen(600)]), [Fen(4), Fen(3)]);
        assert_eq!(share(Fen(3), &[Fen(0), Fen(0), Fen(0)]), [Fen(1), Fen(1), Fen(1)]);
        assert_eq!(share(Fen(-5), &[Fen(1), Fen(1)]), [Fen(-2), Fen(-3)], "a fee given back shares out too");
    }

    #[test]
    fn a_day_adds_up_per_product() {
        let mut day = DayTotals::default();
        let two_colas_and_chips = order(1, vec![line(1, 2, 700), line(2, 1, 600)]);
        day.paid(&two_colas_and_chips, Fen(8));
        // Corrected to one cola and the chips: the cola's 350 comes back.
        day.refunded(&two_colas_and_chips, &[line(1, 1, 350), line(2, 1, 600)], Fen(350), Fen(2));
        day.paid(&order(2, vec![line(1, 1, 350)]), Fen(2));
        day.debt(&order(3, vec![line(2, 1, 600)]), Fen(600));
        day.reviewed(&two_colas_and_chips);
        let rows = day.rows();
        let cola = &rows[0];
        assert_eq!((cola.orders, cola.units_sold, cola.gross_fen), (2, 3, Fen(1050)));
        assert_eq!(cola.refunds_fen, Fen(350), "the refund is the cola taken back");
        let chips = &rows[1];
        assert_eq!((chips.refunds_fen, chips.debt_opened_fen, chips.reviews), (Fen(0), Fen(600), 1));
        let mut other = DayTotals::default();
        other.refunded(&two_colas_and_chips, &two_colas_and_chips.lines, Fen(130), Fen(0));
        let shares: Vec<Fen> = other.rows().iter().map(|r| r.refunds_fen).collect();
        assert_eq!(shares, [Fen(70), Fen(60)], "no line taken back: shared over what was charged");
        let fees: i64 = rows.iter().map(|r| r.fees_fen.0).sum();
        assert_eq!(fees, 8 + 2 - 2, "a refund's fee comes back");
        for r in &rows {
            assert_eq!(r.net_fen.0, r.gross_fen.0 - r.refunds_fen.0 - r.fees_fen.0);
        }
    }

    proptest! {
        /// Shares always add up to the total, and none strays more than a fen from its exact
        /// proportion.
        #[test]
        fn shares_are_exact(total in -100_000i64..100_000, weights in proptest::collection::vec(0i64..50_000, 1..12)) {
            let fen: Vec<Fen> = weights.iter().map(|w| Fen(*w)).collect();
            let shares = share(Fen(total), &fen);
            prop_assert_eq!(shares.iter().map(|s| s.0).sum::<i64>(), total);
            let sum: i64 = weights.iter().sum();
            if sum > 0 {
                for (s, w) in shares.iter().zip(&weights) {
                    let exact = total as f64 * *w as f64 / sum as f64;
                    prop_assert!((s.0 as f64 - exact).abs() < 1.0 + 1e-9, "{} vs {}", s.0, exact);
                }
            }
        }
    }
}
