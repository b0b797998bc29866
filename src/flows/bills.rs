//! A platform's bill for one business day against Heft's payments and refunds: download it,
//! keep the file and its rows, gather what Heft holds that the bill may show, let
//! `domain::bills` decide, and open the cases it finds (each once, however often the day runs).

use std::collections::{HashMap, HashSet};

use chrono::{Duration, NaiveDate, NaiveDateTime};
use serde::Serialize;

use super::Ctx;
use crate::db::bills::{self as stored, BillRowRecord, NewBillCase, NewBillFile};
use crate::db::models::{Payment, Refund};
use crate::db::{self, DbError};
use crate::domain::bills::{
    self as decide, BillCaseStatus, BillEntry, BillTotals, Case, EntryKind, HeftPayment, HeftRefund, Reconciled,
};
use crate::domain::calendar::{business_day, day_bounds};
use crate::domain::payment::{Channel, PaymentState};
use crate::domain::units::Fen;
use crate::pay::{BillFile, BillRow, PayError};

#[derive(Debug, thiserror::Error)]
pub enum BillsError {
    /// The bill is not out yet, or the platform could not be reached: try again later.
    #[error("{channel} bill for {day} not available yet: {reason}")]
    NotYet { channel: Channel, day: NaiveDate, reason: String },
    #[error("{channel} bill for {day}: {source}")]
    Platform { channel: Channel, day: NaiveDate, source: PayError },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("bill totals: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<diesel::result::Error> for BillsError {
    fn from(e: diesel::result::Error) -> Self {
        BillsError::Db(e.into())
    }
}

/// What a day's bill came to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BillReport {
    pub file_id: Option<i64>,
    pub sha256: String,
    pub size_bytes: i64,
    pub rows: usize,
    pub matched: usize,
    pub refunds_matched: usize,
    /// Paid in Heft, still within `reconcile.wait_days` for a bill to show it.
    pub waiting: usize,
    /// Cases this day has (found again on a re-run too).
    pub cases: usize,
    /// Of those, opened by this run.
    pub opened: usize,
    /// Whether the bill stated totals to check its rows by.
    pub totals_checked: bool,
}

/// Reconcile `channel`'s bill of `day`.
pub async fn reconcile_day(ctx: &Ctx, channel: Channel, day: NaiveDate) -> Result<BillReport, BillsError> {
    let file = match ctx.payments.get(channel).download_bill(day).await {
        Ok(f) => f,
        Err(PayError::Retryable(reason)) => return Err(BillsError::NotYet { channel, day, reason }),
        Err(source) => return Err(BillsError::Platform { channel, day, source }),
    };
    reconcile_file(ctx, channel, day, file).await
}

/// Bill rows decided at once: the payments and refunds they name are read a chunk at a time.
const CHUNK: usize = 2_000;
/// Payments and refunds no bill shows, read a page at a time.
const PAGE: i64 = 2_000;

/// Reconcile a downloaded bill: what [`reconcile_day`] does once it has the file (the
/// reconciliation benchmark hands it a bill of its own making). Memory grows with the bill's
/// rows, never with Heft's orders: those are read a chunk or a page at a time.
pub async fn reconcile_file(
    ctx: &Ctx,
    channel: Channel,
    day: NaiveDate,
    file: BillFile,
) -> Result<BillReport, BillsError> {
    let rule = ctx.config.reconcile.bill_rule(channel);
    ctx.db
        .run(move |c| {
            // The file's bytes move into the row that keeps them: a bill can be tens of MB.
            let BillFile { raw, rows, totals } = file;
            let entries = entries(c, channel, &rows)?;
            let records = records(channel, day, &entries, &rows);
            let kept = new_file(channel, day, raw, rows.len(), totals.as_ref())?;
            let (sha256, size_bytes) = (kept.sha256.clone(), kept.size_bytes);
            let file_id = stored::store_file(c, &kept, &records)?;
            drop((kept, records));
            let mut tally = Tally { file_id, ..Tally::default() };
            for chunk in by_order(&entries, CHUNK) {
                let (payments, refunds) = named(c, channel, day, &chunk)?;
                tally.add(c, channel, day, decide::reconcile(day, &chunk, &payments, &refunds, &rule))?;
            }
            unshown(c, channel, day, &rule, &mut tally)?;
            if let Some(case) = totals.as_ref().and_then(|t| decide::check_totals(&entries, t)) {
                tally.add(c, channel, day, Reconciled { cases: vec![case], ..Reconciled::default() })?;
            }
            Ok(BillReport {
                file_id: Some(file_id),
                sha256,
                size_bytes,
                rows: rows.len(),
                matched: tally.matched,
                refunds_matched: tally.refunds_matched,
                waiting: tally.waiting,
                cases: tally.cases,
                opened: tally.opened,
                totals_checked: totals.is_some(),
            })
        })
        .await
}

/// What the chunks and pages came to so far.
#[derive(Debug, Default)]
struct Tally {
    file_id: i64,
    matched: usize,
    refunds_matched: usize,
    waiting: usize,
    cases: usize,
    opened: usize,
}

impl Tally {
    /// Count a decided chunk and open its cases.
    fn add(
        &mut self,
        c: &mut db::AnyConnection,
        channel: Channel,
        day: NaiveDate,
        d: Reconciled,
    ) -> Result<(), BillsError> {
        self.matched += d.matched.len();
        self.refunds_matched += d.refunds_matched.len();
        self.waiting += d.waiting.len();
        self.cases += d.cases.len();
        self.opened += stored::open_cases(c, &new_cases(channel, day, self.file_id, &d.cases))?;
        Ok(())
    }
}

/// The bill's rows as the decision reads them, with Heft's number for each trade Heft knows.
fn entries(c: &mut db::AnyConnection, channel: Channel, rows: &[BillRow]) -> Result<Vec<BillEntry>, BillsError> {
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(CHUNK) {
        let mut keys: Vec<String> =
            chunk.iter().flat_map(|r| [r.transaction_id.clone(), r.out_order_no.clone()]).collect();
        keys.sort();
        keys.dedup();
        let known = Known::of(stored::payments_named(c, channel, &keys)?);
        out.extend(chunk.iter().map(|r| entry(r, &known)));
    }
    Ok(out)
}

/// `entries` in chunks of about `size`, ordered by order number, an order's rows never split.
fn by_order(entries: &[BillEntry], size: usize) -> Vec<Vec<BillEntry>> {
    let mut idx: Vec<usize> = (0..entries.len()).collect();
    idx.sort_by(|&a, &b| entries[a].out_order_no.cmp(&entries[b].out_order_no));
    let mut chunks: Vec<Vec<BillEntry>> = Vec::new();
    let mut current: Vec<BillEntry> = Vec::new();
    for i in idx {
        let e = &entries[i];
        if current.len() >= size && current.last().is_some_and(|l| l.out_order_no != e.out_order_no) {
            chunks.push(std::mem::take(&mut current));
        }
        current.push(e.clone());
    }
    chunks.extend((!current.is_empty()).then_some(current));
    chunks
}

/// The payments and refunds a chunk of rows names.
fn named(
    c: &mut db::AnyConnection,
    channel: Channel,
    day: NaiveDate,
    chunk: &[BillEntry],
) -> Result<(Vec<HeftPayment>, Vec<HeftRefund>), BillsError> {
    // A refund row names its payment too, but that payment was shown (or not) by a bill of
    // its own day: only payment rows bring their payments in.
    let mut paid: Vec<String> =
        chunk.iter().filter(|e| e.kind == EntryKind::Payment).map(|e| e.out_order_no.clone()).collect();
    paid.dedup();
    let payments = stored::payments_named(c, channel, &paid)?;
    let refunded: Vec<String> =
        chunk.iter().filter(|e| e.kind == EntryKind::Refund).map(|e| e.out_order_no.clone()).collect();
    let refunds = stored::refunds_of(c, &refunded, &day.to_string())?;
    Ok((payments.iter().map(heft_payment).collect(), refunds.iter().map(heft_refund).collect()))
}

/// Heft's payments and refunds of the last `wait_days` that no kept bill shows: waiting, or
/// cases once the wait is over.
fn unshown(
    c: &mut db::AnyConnection,
    channel: Channel,
    day: NaiveDate,
    rule: &decide::BillRule,
    tally: &mut Tally,
) -> Result<(), BillsError> {
    let (from, to) = window(day, rule.wait_days);
    let mut after = String::new();
    loop {
        let page = stored::paid_unshown(c, channel, (from, to), &after, PAGE)?;
        let Some(last) = page.last() else { break };
        after = last.out_order_no.clone();
        let payments: Vec<HeftPayment> = page.iter().map(heft_payment).collect();
        tally.add(c, channel, day, decide::reconcile(day, &[], &payments, &[], rule))?;
    }
    let mut after = String::new();
    loop {
        let page = stored::refunds_unshown(c, channel, (from, to), &day.to_string(), &after, PAGE)?;
        let Some(last) = page.last() else { break };
        after = last.out_refund_no.clone();
        let refunds: Vec<HeftRefund> = page.iter().map(heft_refund).collect();
        tally.add(c, channel, day, decide::reconcile(day, &[], &[], &refunds, rule))?;
    }
    Ok(())
}

/// Payments by each number a bill may show for them.
struct Known {
    by_transaction: HashMap<String, String>,
    by_trade_no: HashMap<String, String>,
    by_order_no: HashSet<String>,
}

impl Known {
    fn of(payments: Vec<Payment>) -> Known {
        let mut k = Known { by_transaction: HashMap::new(), by_trade_no: HashMap::new(), by_order_no: HashSet::new() };
        for p in payments {
            if let Some(t) = p.transaction_id {
                k.by_transaction.insert(t, p.out_order_no.clone());
            }
            if let Some(t) = p.out_trade_no {
                k.by_trade_no.insert(t, p.out_order_no.clone());
            }
            k.by_order_no.insert(p.out_order_no);
        }
        k
    }

    /// Heft's number for the row's trade, when Heft knows it.
    fn order_no(&self, row: &BillRow) -> Option<String> {
        self.by_transaction
            .get(&row.transaction_id)
            .or_else(|| self.by_trade_no.get(&row.out_order_no))
            .cloned()
            .or_else(|| self.by_order_no.contains(&row.out_order_no).then(|| row.out_order_no.clone()))
    }
}

/// UTC bounds of the business days `day - wait_days` ..= `day`.
fn window(day: NaiveDate, wait_days: i64) -> (NaiveDateTime, NaiveDateTime) {
    (day_bounds(day - Duration::days(wait_days)).0, day_bounds(day).1)
}

/// A bill row as the decision reads it: Heft's number for the trade where Heft knows it (Alipay
/// bills show the `out_trade_no`), amounts positive.
fn entry(row: &BillRow, known: &Known) -> BillEntry {
    BillEntry {
        kind: if row.amount_fen < 0 { EntryKind::Refund } else { EntryKind::Payment },
        transaction_id: row.transaction_id.clone(),
        out_order_no: known.order_no(row).unwrap_or_else(|| row.out_order_no.clone()),
        amount_fen: Fen(row.amount_fen.abs()),
        fee_fen: Fen(row.fee_fen),
        at: row.time,
    }
}

fn heft_payment(p: &Payment) -> HeftPayment {
    HeftPayment {
        out_order_no: p.out_order_no.clone(),
        transaction_id: p.transaction_id.clone(),
        state: p.state,
        amount_fen: p.amount_fen,
        paid_on: (p.state == PaymentState::Paid).then(|| business_day(p.updated_at.and_utc())),
    }
}

fn heft_refund(r: &Refund) -> HeftRefund {
    HeftRefund {
        out_refund_no: r.out_refund_no.clone(),
        out_order_no: r.out_order_no.clone(),
        amount_fen: r.amount_fen,
        status: r.status,
        done_on: r.finished_at.map(|t| business_day(t.and_utc())),
    }
}

fn new_file(
    channel: Channel,
    day: NaiveDate,
    raw: Vec<u8>,
    rows: usize,
    totals: Option<&BillTotals>,
) -> Result<NewBillFile, BillsError> {
    Ok(NewBillFile {
        channel,
        day: day.to_string(),
        sha256: crate::pay::sha256_hex(&raw),
        size_bytes: raw.len() as i64,
        row_count: rows as i64,
        totals: totals.map(serde_json::to_string).transpose()?,
        raw,
        fetched_at: db::now(),
    })
}

fn records(channel: Channel, day: NaiveDate, entries: &[BillEntry], rows: &[BillRow]) -> Vec<BillRowRecord> {
    entries
        .iter()
        .zip(rows)
        .map(|(e, row)| BillRowRecord {
            channel,
            day: day.to_string(),
            kind: e.kind,
            transaction_id: e.transaction_id.clone(),
            out_order_no: e.out_order_no.clone(),
            amount_fen: e.amount_fen,
            fee_fen: e.fee_fen,
            status: row.status.clone(),
            at: e.at,
        })
        .collect()
}

fn new_cases(channel: Channel, day: NaiveDate, file_id: i64, cases: &[Case]) -> Vec<NewBillCase> {
    let now = db::now();
    cases
        .iter()
        .map(|c| NewBillCase {
            channel,
            day: day.to_string(),
            kind: c.kind,
            out_order_no: c.out_order_no.clone(),
            subject: c.out_refund_no.clone().or_else(|| c.transaction_id.clone()).unwrap_or_default(),
            transaction_id: c.transaction_id.clone(),
            out_refund_no: c.out_refund_no.clone(),
            heft_fen: c.heft_fen,
            bill_fen: c.bill_fen,
            detail: c.detail.clone(),
            file_id: Some(file_id),
            status: BillCaseStatus::Open,
            created_at: now,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("time")
    }

    #[test]
    fn chunks_never_split_an_order() {
        let at = utc("2026-12-03 12:00:00");
        let row = |no: &str, kind| BillEntry {
            kind,
            transaction_id: format!("T{no}"),
            out_order_no: no.into(),
            amount_fen: Fen(100),
            fee_fen: Fen(1),
            at,
        };
        let entries = [
            row("B", EntryKind::Payment),
            row("A", EntryKind::Payment),
            row("A", EntryKind::Refund),
            row("C", EntryKind::Payment),
        ];
        let chunks = by_order(&entries, 1);
        let chunks: Vec<Vec<&str>> =
            chunks.iter().map(|c| c.iter().map(|e| e.out_order_no.as_str()).collect()).collect();
        assert_eq!(chunks, [vec!["A", "A"], vec!["B"], vec!["C"]]);
    }

    #[test]
    fn a_day_is_beijing_midnight_to_midnight() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 3).expect("day");
        assert_eq!(window(day, 0), (utc("2026-12-02 16:00:00"), utc("2026-12-03 16:00:00")));
        assert_eq!(window(day, 3).0, utc("2026-11-29 16:00:00"), "three days back");
        // 23:59:59 and 00:00:00 in Beijing are on two days.
        let paid = |at: &str| Payment {
            out_order_no: "HO1".into(),
            channel: Channel::Wechat,
            user_id: 1,
            state: PaymentState::Paid,
            cap_fen: Fen(5000),
            amount_fen: Some(Fen(350)),
            platform_order_id: None,
            payer_id: None,
            out_trade_no: None,
            transaction_id: None,
            created_at: utc(at),
            updated_at: utc(at),
        };
        assert_eq!(heft_payment(&paid("2026-12-03 15:59:59")).paid_on, Some(day));
        assert_eq!(heft_payment(&paid("2026-12-03 16:00:00")).paid_on, day.succ_opt());
    }
}
