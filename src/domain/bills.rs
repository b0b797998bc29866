//! A platform's bill for one business day against what Heft recorded: which rows match, which
//! payments still wait for a later bill, and the cases a person must look at, each with what both
//! sides say. Pure: `flows` gathers the rows and the payments, and stores the answer.
//!
//! Matching is by the platform's transaction number, else by Heft's `out_order_no`. Cases:
//! - money the platform has that Heft does not know (长款: `platform_only`);
//! - money Heft was paid that no bill shows, once `wait_days` have passed (Pay Score may collect
//!   days after the order: `heft_only`);
//! - a bill's payment for an order Heft holds as not paid (`status`), of another amount
//!   (`amount`), or with a fee other than the configured rate gives (`fee`);
//! - a refund the bill shows that Heft never made (`refund_unknown`), or of another amount
//!   (`refund_amount`); one Heft made that no bill shows once `wait_days` have passed
//!   (`refund_missing`).

use std::collections::{BTreeMap, HashMap};

use chrono::{NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};

use super::names::named_enum;
use super::payment::{PaymentState, RefundStatus};
use super::units::Fen;

named_enum! {
    /// What a bill row records.
    pub enum EntryKind {
        Payment = "payment",
        Refund = "refund",
    }
}

named_enum! {
    /// Why a bill and Heft disagree.
    pub enum BillCaseKind {
        PlatformOnly = "platform_only",
        HeftOnly = "heft_only",
        Status = "status",
        Amount = "amount",
        Fee = "fee",
        RefundUnknown = "refund_unknown",
        RefundAmount = "refund_amount",
        RefundMissing = "refund_missing",
        /// The bill's own totals disagree with its rows: the file is incomplete or damaged.
        Totals = "totals",
    }
}

named_enum! {
    /// Where a bill case stands.
    pub enum BillCaseStatus {
        Open = "open",
        Resolved = "resolved",
    }
}

named_enum! {
    /// How an operator closed a bill case.
    pub enum Resolution {
        /// The difference is right as it is (a fee the platform was entitled to, say).
        Accept = "accept",
        /// Put right on one side or the other (Heft's record, or with the platform).
        Correct = "correct",
        /// Given up as a loss.
        WriteOff = "write_off",
    }
}

/// One row of a day's bill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillEntry {
    pub kind: EntryKind,
    /// The platform's number for the trade (a refund row carries its payment's).
    pub transaction_id: String,
    pub out_order_no: String,
    /// How much moved, positive for payments and refunds alike.
    pub amount_fen: Fen,
    /// The platform's fee as the bill shows it (a refund's is returned, so negative).
    pub fee_fen: Fen,
    /// Asia/Shanghai.
    pub at: NaiveDateTime,
}

/// A payment of Heft's that the bill may show: one the bill names, or one Heft holds as paid
/// that no earlier bill has shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeftPayment {
    pub out_order_no: String,
    pub transaction_id: Option<String>,
    pub state: PaymentState,
    pub amount_fen: Option<Fen>,
    /// The business day Heft learnt it was paid.
    pub paid_on: Option<NaiveDate>,
}

/// A refund of Heft's that the bill may show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeftRefund {
    pub out_refund_no: String,
    pub out_order_no: String,
    pub amount_fen: Fen,
    pub status: RefundStatus,
    /// The business day it succeeded.
    pub done_on: Option<NaiveDate>,
}

/// How bills are judged; `reconcile.*` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillRule {
    /// The platform's fee, in hundredths of a percent (60: 0.60 %), rounded half up to the fen.
    pub fee_basis_points: i64,
    /// Days a payment or refund Heft recorded may wait for a bill to show it.
    pub wait_days: i64,
}

impl BillRule {
    /// The fee the platform should take on a payment of `amount`.
    pub fn fee(&self, amount: Fen) -> Fen {
        fee(amount, self.fee_basis_points)
    }
}

/// A platform's fee of `basis_points` hundredths of a percent on `amount`, rounded half up to the
/// fen, as WeChat and Alipay compute it per trade.
pub fn fee(Fen(amount): Fen, basis_points: i64) -> Fen {
    Fen((amount * basis_points + 5_000).div_euclid(10_000))
}

/// What a bill says its rows add up to (WeChat's summary rows, Alipay's 合计 lines).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillTotals {
    /// Payment and refund rows together.
    pub rows: i64,
    pub payments_fen: Fen,
    /// Refunded, positive.
    pub refunds_fen: Fen,
    /// Fees net of those returned with refunds, where the bill states them.
    pub fee_fen: Option<Fen>,
}

impl BillTotals {
    /// What `entries` add up to.
    pub fn of(entries: &[BillEntry]) -> BillTotals {
        let sum = |kind: EntryKind| Fen(entries.iter().filter(|e| e.kind == kind).map(|e| e.amount_fen.0).sum());
        BillTotals {
            rows: entries.len() as i64,
            payments_fen: sum(EntryKind::Payment),
            refunds_fen: sum(EntryKind::Refund),
            fee_fen: Some(Fen(entries.iter().map(|e| e.fee_fen.0).sum())),
        }
    }
}

/// The bill's stated totals against its rows: a `totals` case when they differ.
pub fn check_totals(entries: &[BillEntry], stated: &BillTotals) -> Option<Case> {
    let found = BillTotals::of(entries);
    let mut differ = Vec::new();
    if found.rows != stated.rows {
        differ.push(format!("{} rows where the bill states {}", found.rows, stated.rows));
    }
    if found.payments_fen != stated.payments_fen {
        differ.push(format!("payments {} fen where it states {}", found.payments_fen.0, stated.payments_fen.0));
    }
    if found.refunds_fen != stated.refunds_fen {
        differ.push(format!("refunds {} fen where it states {}", found.refunds_fen.0, stated.refunds_fen.0));
    }
    // Alipay prints a trade's fee negative (taken from the merchant), WeChat positive.
    let fee_differs = |f: &Fen| Some(f.0.abs()) != found.fee_fen.map(|x| x.0.abs());
    if let Some(fee) = stated.fee_fen.filter(fee_differs) {
        differ.push(format!("fees {} fen where it states {}", found.fee_fen.unwrap_or_default().0, fee.0));
    }
    (!differ.is_empty()).then(|| Case {
        kind: BillCaseKind::Totals,
        out_order_no: String::new(),
        transaction_id: None,
        out_refund_no: None,
        heft_fen: Some(found.payments_fen),
        bill_fen: Some(stated.payments_fen),
        detail: format!("the bill's rows add up to {}", differ.join("; ")),
    })
}

/// A disagreement, with both sides' figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Case {
    pub kind: BillCaseKind,
    pub out_order_no: String,
    pub transaction_id: Option<String>,
    /// The refund a `refund_missing` case is about.
    pub out_refund_no: Option<String>,
    /// What Heft recorded (amount, or fee for `fee`).
    pub heft_fen: Option<Fen>,
    /// What the bill shows.
    pub bill_fen: Option<Fen>,
    /// In words, for the operator.
    pub detail: String,
}

/// What a day's bill came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Heft payments the bill showed, by `out_order_no`.
    pub matched: Vec<String>,
    /// Heft refunds the bill showed, by `out_refund_no`.
    pub refunds_matched: Vec<String>,
    /// Paid in Heft, not in a bill yet, still within `wait_days`.
    pub waiting: Vec<String>,
    pub cases: Vec<Case>,
}

/// Judge `day`'s bill (`entries`) against Heft's `payments` and `refunds` (those the bill names,
/// and those no earlier bill showed).
pub fn reconcile(
    day: NaiveDate,
    entries: &[BillEntry],
    payments: &[HeftPayment],
    refunds: &[HeftRefund],
    rule: &BillRule,
) -> Reconciled {
    let mut out = Reconciled::default();
    let by_tx: HashMap<&str, &HeftPayment> =
        payments.iter().filter_map(|p| Some((p.transaction_id.as_deref()?, p))).collect();
    let by_no: HashMap<&str, &HeftPayment> = payments.iter().map(|p| (p.out_order_no.as_str(), p)).collect();
    let mut shown: Vec<&str> = Vec::new();
    for e in entries.iter().filter(|e| e.kind == EntryKind::Payment) {
        let found = by_tx.get(e.transaction_id.as_str()).or_else(|| by_no.get(e.out_order_no.as_str()));
        match found {
            None => out.cases.push(case(
                BillCaseKind::PlatformOnly,
                e,
                None,
                "the platform was paid for a trade Heft does not know",
            )),
            Some(p) => {
                shown.push(p.out_order_no.as_str());
                match judge_payment(p, e, rule) {
                    Some(c) => out.cases.push(c),
                    None => out.matched.push(p.out_order_no.clone()),
                }
            }
        }
    }
    for p in payments.iter().filter(|p| p.state == PaymentState::Paid && !shown.contains(&p.out_order_no.as_str())) {
        match p.paid_on {
            Some(on) if (day - on).num_days() < rule.wait_days => out.waiting.push(p.out_order_no.clone()),
            _ => out.cases.push(Case {
                kind: BillCaseKind::HeftOnly,
                out_order_no: p.out_order_no.clone(),
                transaction_id: p.transaction_id.clone(),
                out_refund_no: None,
                heft_fen: p.amount_fen,
                bill_fen: None,
                detail: format!("paid in Heft, and no bill shows it after {} days", rule.wait_days),
            }),
        }
    }
    reconcile_refunds(day, entries, refunds, rule, &mut out);
    out
}

/// A bill's payment row against the payment it names: a case, or nothing when they agree.
fn judge_payment(p: &HeftPayment, e: &BillEntry, rule: &BillRule) -> Option<Case> {
    // Capturing: the platform collected before Heft heard; Heft's own query catches up.
    if !matches!(p.state, PaymentState::Paid | PaymentState::Capturing) {
        let detail = format!("the platform was paid for an order Heft holds as {}", p.state);
        return Some(case(BillCaseKind::Status, e, p.amount_fen, &detail));
    }
    if p.amount_fen != Some(e.amount_fen) {
        return Some(case(BillCaseKind::Amount, e, p.amount_fen, "the bill's amount is not what Heft charged"));
    }
    let fee = rule.fee(e.amount_fen);
    if e.fee_fen.0.abs() != fee.0 {
        let detail = format!(
            "fee {} fen where {} bp of {} fen is {} fen",
            e.fee_fen.0.abs(),
            rule.fee_basis_points,
            e.amount_fen.0,
            fee.0
        );
        return Some(Case {
            heft_fen: Some(fee),
            bill_fen: Some(Fen(e.fee_fen.0.abs())),
            ..case(BillCaseKind::Fee, e, None, &detail)
        });
    }
    None
}

fn case(kind: BillCaseKind, e: &BillEntry, heft_fen: Option<Fen>, detail: &str) -> Case {
    Case {
        kind,
        out_order_no: e.out_order_no.clone(),
        transaction_id: Some(e.transaction_id.clone()),
        out_refund_no: None,
        heft_fen,
        bill_fen: Some(e.amount_fen),
        detail: detail.to_string(),
    }
}

/// Each refund row to a refund Heft made on that order for that amount; the ones left over on
/// either side are cases.
fn reconcile_refunds(
    day: NaiveDate,
    entries: &[BillEntry],
    refunds: &[HeftRefund],
    rule: &BillRule,
    out: &mut Reconciled,
) {
    let mut open: BTreeMap<&str, Vec<&HeftRefund>> = BTreeMap::new();
    for r in refunds.iter().filter(|r| r.status != RefundStatus::Failed) {
        open.entry(r.out_order_no.as_str()).or_default().push(r);
    }
    for e in entries.iter().filter(|e| e.kind == EntryKind::Refund) {
        let of_order = open.get_mut(e.out_order_no.as_str());
        match of_order {
            None => out.cases.push(case(
                BillCaseKind::RefundUnknown,
                e,
                None,
                "the platform refunded an order Heft made no refund on",
            )),
            Some(list) => match list.iter().position(|r| r.amount_fen == e.amount_fen) {
                Some(i) => out.refunds_matched.push(list.remove(i).out_refund_no.clone()),
                None => {
                    let heft = list.first().map(|r| r.amount_fen);
                    out.cases.push(case(
                        BillCaseKind::RefundAmount,
                        e,
                        heft,
                        "the bill's refund is not what Heft refunded",
                    ));
                    if !list.is_empty() {
                        list.remove(0);
                    }
                }
            },
        }
    }
    for r in open.into_values().flatten().filter(|r| r.status == RefundStatus::Succeeded) {
        if r.done_on.is_some_and(|on| (day - on).num_days() < rule.wait_days) {
            continue;
        }
        out.cases.push(Case {
            kind: BillCaseKind::RefundMissing,
            out_order_no: r.out_order_no.clone(),
            transaction_id: None,
            out_refund_no: Some(r.out_refund_no.clone()),
            heft_fen: Some(r.amount_fen),
            bill_fen: None,
            detail: format!(
                "refund {} succeeded in Heft, and no bill shows it after {} days",
                r.out_refund_no, rule.wait_days
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RULE: BillRule = BillRule { fee_basis_points: 60, wait_days: 3 };

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, d).expect("a day")
    }

    fn paid(n: u32, fen: i64, on: u32) -> HeftPayment {
        HeftPayment {
            out_order_no: format!("HO{n}"),
            transaction_id: Some(format!("TX{n}")),
            state: PaymentState::Paid,
            amount_fen: Some(Fen(fen)),
            paid_on: Some(day(on)),
        }
    }

    /// The row the platform's bill has for `p`, as it should.
    fn row(p: &HeftPayment) -> BillEntry {
        let amount = p.amount_fen.unwrap_or_default();
        BillEntry {
            kind: EntryKind::Payment,
            transaction_id: p.transaction_id.clone().unwrap_or_default(),
            out_order_no: p.out_order_no.clone(),
            amount_fen: amount,
            fee_fen: RULE.fee(amount),
            at: day(3).and_hms_opt(12, 0, 0).expect("a time"),
        }
    }

    fn refund(n: u32, fen: i64, on: u32) -> HeftRefund {
        HeftRefund {
            out_refund_no: format!("HR{n}"),
            out_order_no: format!("HO{n}"),
            amount_fen: Fen(fen),
            status: RefundStatus::Succeeded,
            done_on: Some(day(on)),
        }
    }

    fn refund_row(r: &HeftRefund) -> BillEntry {
        BillEntry {
            kind: EntryKind::Refund,
            transaction_id: format!("TX-{}", r.out_order_no),
            out_order_no: r.out_order_no.clone(),
            amount_fen: r.amount_fen,
            fee_fen: Fen(-RULE.fee(r.amount_fen).0),
            at: day(3).and_hms_opt(13, 0, 0).expect("a time"),
        }
    }

    fn kinds(r: &Reconciled) -> Vec<BillCaseKind> {
        r.cases.iter().map(|c| c.kind).collect()
    }

    #[test]
    fn the_fee_rounds_half_up_to_the_fen() {
        assert_eq!(RULE.fee(Fen(1000)), Fen(6));
        assert_eq!(RULE.fee(Fen(250)), Fen(2), "1.5 fen rounds up");
        assert_eq!(RULE.fee(Fen(249)), Fen(1), "1.494 fen rounds down");
        assert_eq!(RULE.fee(Fen(0)), Fen(0));
    }

    #[test]
    fn a_clean_bill_matches_everything() {
        let payments = [paid(1, 1200, 3), paid(2, 350, 3)];
        let refunds = [refund(1, 600, 3)];
        let entries: Vec<BillEntry> = payments.iter().map(row).chain(refunds.iter().map(refund_row)).collect();
        let r = reconcile(day(3), &entries, &payments, &refunds, &RULE);
        assert!(r.cases.is_empty(), "{:?}", r.cases);
        assert_eq!((r.matched.len(), r.refunds_matched.len()), (2, 1));
    }

    #[test]
    fn a_payment_matches_by_its_number_when_the_transaction_is_unknown_to_heft() {
        let mut p = paid(1, 1200, 3);
        let entries = [row(&p)];
        p.transaction_id = None;
        let r = reconcile(day(3), &entries, &[p], &[], &RULE);
        assert_eq!((r.matched.len(), r.cases.len()), (1, 0));
    }

    #[test]
    fn each_mismatch_is_one_case() {
        let p = paid(1, 1200, 3);
        let unknown = BillEntry { transaction_id: "TX9".into(), out_order_no: "HO9".into(), ..row(&p) };
        assert_eq!(kinds(&reconcile(day(3), &[unknown], &[], &[], &RULE)), [BillCaseKind::PlatformOnly]);
        let wrong_amount = BillEntry { amount_fen: Fen(1100), fee_fen: RULE.fee(Fen(1100)), ..row(&p) };
        assert_eq!(
            kinds(&reconcile(day(3), &[wrong_amount], std::slice::from_ref(&p), &[], &RULE)),
            [BillCaseKind::Amount]
        );
        let wrong_fee = BillEntry { fee_fen: Fen(9), ..row(&p) };
        let r = reconcile(day(3), &[wrong_fee], std::slice::from_ref(&p), &[], &RULE);
        assert_eq!(kinds(&r), [BillCaseKind::Fee]);
        assert_eq!((r.cases[0].heft_fen, r.cases[0].bill_fen), (Some(Fen(7)), Some(Fen(9))));
        let cancelled = HeftPayment { state: PaymentState::Cancelled, ..p.clone() };
        assert_eq!(kinds(&reconcile(day(3), &[row(&p)], &[cancelled], &[], &RULE)), [BillCaseKind::Status]);
    }

    #[test]
    fn a_payment_no_bill_shows_waits_then_is_a_case() {
        let p = paid(1, 1200, 3);
        let r = reconcile(day(5), &[], std::slice::from_ref(&p), &[], &RULE);
        assert_eq!((r.waiting.len(), r.cases.len()), (1, 0), "two days: Pay Score may still collect");
        assert_eq!(kinds(&reconcile(day(6), &[], &[p], &[], &RULE)), [BillCaseKind::HeftOnly]);
    }

    #[test]
    fn refunds_missing_unknown_or_of_another_amount() {
        let r1 = refund(1, 600, 3);
        assert_eq!(
            kinds(&reconcile(day(6), &[], &[], std::slice::from_ref(&r1), &RULE)),
            [BillCaseKind::RefundMissing]
        );
        assert!(
            reconcile(day(4), &[], &[], std::slice::from_ref(&r1), &RULE).cases.is_empty(),
            "still within the wait"
        );
        assert_eq!(kinds(&reconcile(day(3), &[refund_row(&r1)], &[], &[], &RULE)), [BillCaseKind::RefundUnknown]);
        let other = BillEntry { amount_fen: Fen(500), ..refund_row(&r1) };
        assert_eq!(
            kinds(&reconcile(day(6), &[other], &[], std::slice::from_ref(&r1), &RULE)),
            [BillCaseKind::RefundAmount]
        );
        let failed = HeftRefund { status: RefundStatus::Failed, ..r1 };
        assert!(reconcile(day(6), &[], &[], &[failed], &RULE).cases.is_empty(), "a failed refund moved nothing");
    }

    #[test]
    fn totals_that_disagree_with_the_rows_are_one_case() {
        let payments = [paid(1, 1200, 3), paid(2, 350, 3)];
        let refunds = [refund(1, 600, 3)];
        let entries: Vec<BillEntry> = payments.iter().map(row).chain(refunds.iter().map(refund_row)).collect();
        let stated = BillTotals::of(&entries);
        assert_eq!((stated.rows, stated.payments_fen, stated.refunds_fen), (3, Fen(1550), Fen(600)));
        assert_eq!(stated.fee_fen, Some(Fen(7 + 2 - 4)), "refunded fees come back");
        assert!(check_totals(&entries, &stated).is_none());
        assert!(check_totals(&entries, &BillTotals { fee_fen: None, ..stated }).is_none(), "no stated fee");
        let short = check_totals(&entries[1..], &stated).expect("a row is missing");
        assert_eq!(short.kind, BillCaseKind::Totals);
        assert!(short.detail.contains("2 rows where the bill states 3"), "{}", short.detail);
    }

    /// One fault put into an otherwise clean day.
    #[derive(Debug, Clone, Copy)]
    enum Fault {
        Missing,
        Unknown,
        Amount,
        Fee,
        RefundMissing,
        RefundUnknown,
        RefundAmount,
    }

    fn faults() -> impl Strategy<Value = Fault> {
        prop_oneof![
            Just(Fault::Missing),
            Just(Fault::Unknown),
            Just(Fault::Amount),
            Just(Fault::Fee),
            Just(Fault::RefundMissing),
            Just(Fault::RefundUnknown),
            Just(Fault::RefundAmount),
        ]
    }

    proptest! {
        /// A clean day has no case; a day with one fault has exactly one, of its kind, and every
        /// other payment and refund still matches.
        #[test]
        fn one_fault_one_case(amounts in proptest::collection::vec(1i64..100_000, 2..40), pick in any::<prop::sample::Index>(), fault in faults()) {
            let payments: Vec<HeftPayment> = amounts.iter().enumerate().map(|(i, a)| paid(i as u32, *a, 1)).collect();
            let refunds: Vec<HeftRefund> = payments.iter().enumerate().filter(|(i, _)| i % 3 == 0).map(|(i, p)| refund(i as u32, (p.amount_fen.unwrap_or_default().0 / 2).max(1), 1)).collect();
            let mut entries: Vec<BillEntry> = payments.iter().map(row).chain(refunds.iter().map(refund_row)).collect();
            let clean = reconcile(day(4), &entries, &payments, &refunds, &RULE);
            prop_assert!(clean.cases.is_empty(), "{:?}", clean.cases);
            let mut heft_refunds = refunds.clone();
            let refund_rows: Vec<usize> = (0..entries.len()).filter(|&i| entries[i].kind == EntryKind::Refund).collect();
            let i = pick.index(payments.len());
            let j = refund_rows[pick.index(refund_rows.len())];
            let expected = match fault {
                Fault::Missing => { entries.remove(i); BillCaseKind::HeftOnly }
                Fault::Unknown => { entries.push(BillEntry { transaction_id: "TX-NEW".into(), out_order_no: "HO-NEW".into(), ..entries[i].clone() }); BillCaseKind::PlatformOnly }
                Fault::Amount => { entries[i].amount_fen = Fen(entries[i].amount_fen.0 + 1); entries[i].fee_fen = RULE.fee(entries[i].amount_fen); BillCaseKind::Amount }
                Fault::Fee => { entries[i].fee_fen = Fen(entries[i].fee_fen.0 + 1); BillCaseKind::Fee }
                Fault::RefundMissing => { entries.remove(j); BillCaseKind::RefundMissing }
                Fault::RefundUnknown => { heft_refunds.retain(|r| r.out_order_no != entries[j].out_order_no); BillCaseKind::RefundUnknown }
                Fault::RefundAmount => { entries[j].amount_fen = Fen(entries[j].amount_fen.0 + 1); BillCaseKind::RefundAmount }
            };
            let r = reconcile(day(4), &entries, &payments, &heft_refunds, &RULE);
            prop_assert_eq!(kinds(&r), vec![expected]);
        }
    }
}
