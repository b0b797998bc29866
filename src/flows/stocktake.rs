//! The nightly stocktake by weight. A cabinet at a time, in one transaction: gather each lane's
//! facts (its rest in the newest closed-door readings up to the day's end, less the drift its
//! cell followed since calibration; its sessions and book changes since the last night it
//! agreed; doors opened while nothing held the cabinet), let `domain::stocktake` decide, then
//! write once: the lane's record and findings, the book set to the shelf (`stocktake` in the
//! ledger), the shopper a finding names charged, alerts for unreadable lanes and losses.
//!
//! A shopper is charged as debt on the order, with a notice on it: by night the purchase's
//! pre-authorisation has been completed or cancelled on the platform, so nothing more can be
//! captured through it, and debt is what the next scan collects. A lane already recorded for the
//! day is left alone, so a day run again changes and charges nothing.

use std::collections::{BTreeMap, HashMap};

use chrono::{Duration, NaiveDate, NaiveDateTime};
use serde::Serialize;

use super::Ctx;
use super::order::owe_more;
use crate::config::Config;
use crate::db::stock::LedgerRefs;
use crate::db::stocktake::{self as store, BookChange, DoorSession, LaneSetup, NewFinding, NewLaneNight, Reading};
use crate::db::{self, AnyConnection, DbError, alerts};
use crate::domain::alert;
use crate::domain::calendar::{business_day, day_bounds};
use crate::domain::count;
use crate::domain::rest::{self, Unrest};
use crate::domain::session::SessionKind;
use crate::domain::stock::{StockChange, StockReason};
use crate::domain::stocktake::{
    Anchor, Decision, Finding, FindingKind, LaneNight, LaneStatus, Product, SessionRef, SessionWeights, Unreadable,
    Weighed, decide,
};
use crate::domain::texts::{self, NoticeCode};
use crate::domain::units::{Fen, Grams};
use crate::domain::weight::ReadingKind;

/// Cabinets read per page.
const PAGE: i64 = 200;
/// A 24-bit converter's limits: a cell reading there is broken or unplugged.
const RAIL: i64 = 8_388_607;

/// What a night's stocktake found, over the fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StockReport {
    pub cabinets: usize,
    pub lanes: usize,
    pub agree: usize,
    pub differ: usize,
    pub unreadable: usize,
    /// Lanes already taken for the day (a run again).
    pub already: usize,
    pub findings: usize,
    /// Charged to shoppers (as debt on their orders).
    pub charged_fen: Fen,
    /// Units gone that no shopper was charged for, and their value.
    pub loss_units: i64,
    pub loss_fen: Fen,
}

/// Take `day`'s stock on every cabinet.
pub async fn take_day(ctx: &Ctx, day: NaiveDate) -> Result<StockReport, DbError> {
    let cutoff = day_bounds(day).1.min(db::now());
    let mut report = StockReport::default();
    let mut after: Option<String> = None;
    loop {
        let from = after.clone();
        let page = ctx.db.run(move |c| store::cabinets_after(c, from.as_deref(), PAGE)).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.clone());
        for sn in page {
            let config = ctx.config.clone();
            let one = ctx.db.write(move |c| take_cabinet(c, &config, &sn, day, cutoff)).await?;
            report.add(one);
        }
    }
    Ok(report)
}

impl StockReport {
    fn add(&mut self, o: StockReport) {
        self.cabinets += o.cabinets;
        self.lanes += o.lanes;
        self.agree += o.agree;
        self.differ += o.differ;
        self.unreadable += o.unreadable;
        self.already += o.already;
        self.findings += o.findings;
        self.charged_fen = Fen(self.charged_fen.0 + o.charged_fen.0);
        self.loss_units += o.loss_units;
        self.loss_fen = Fen(self.loss_fen.0 + o.loss_fen.0);
    }
}

/// One cabinet's lanes not yet taken for `day`: gather, decide, write.
fn take_cabinet(
    c: &mut AnyConnection,
    config: &Config,
    sn: &str,
    day: NaiveDate,
    cutoff: NaiveDateTime,
) -> Result<StockReport, DbError> {
    let day_s = day.to_string();
    let done = store::done_lanes(c, &day_s, sn)?;
    let all = store::lanes_of(c, sn)?;
    let mut report = StockReport { cabinets: 1, already: done.len(), ..StockReport::default() };
    let todo: Vec<LaneSetup> = all.into_iter().filter(|l| l.product_id.is_some() && !done.contains(&l.lane)).collect();
    if todo.is_empty() {
        return Ok(report);
    }
    let facts = CabinetFacts::gather(c, config, sn, &day_s, cutoff)?;
    let rule = config.weights.count_rule();
    let mut unreadable = Vec::new();
    for lane in &todo {
        let Some(night) = facts.night(config, lane) else { continue };
        let decision = decide(&night, &rule);
        report.lanes += 1;
        match decision.status {
            LaneStatus::Agrees => report.agree += 1,
            LaneStatus::Differs => report.differ += 1,
            LaneStatus::Unreadable => report.unreadable += 1,
        }
        if let Some(why) = decision.unreadable {
            unreadable.push((lane.lane.clone(), why.as_str()));
        }
        write_lane(c, sn, &day_s, lane, &night, &decision, &mut report)?;
    }
    let now = db::now();
    if !unreadable.is_empty() {
        alerts::raise(c, &alert::stock_unreadable(sn, &day_s, &unreadable), 1, now)?;
    }
    if report.loss_units > 0 {
        alerts::raise(c, &alert::stock_loss(sn, &day_s, report.loss_units, report.loss_fen), 1, now)?;
    }
    Ok(report)
}

/// What a cabinet's lanes are decided from.
struct CabinetFacts {
    /// The newest run of closed-door readings, oldest first.
    closed: Vec<Reading>,
    /// lane → (day, drift followed) and its newest noise.
    drift: HashMap<String, Vec<(String, f64)>>,
    noise: HashMap<String, f64>,
    since: HashMap<String, Anchor>,
    window_from: NaiveDateTime,
    cutoff: NaiveDateTime,
    sessions: Vec<DoorSession>,
    ledger: Vec<BookChange>,
    unheld: Vec<NaiveDateTime>,
}

impl CabinetFacts {
    fn gather(
        c: &mut AnyConnection,
        config: &Config,
        sn: &str,
        day: &str,
        cutoff: NaiveDateTime,
    ) -> Result<CabinetFacts, DbError> {
        let r = &config.reconcile;
        let newest = store::readings_before(c, sn, cutoff, r.stock_readings)?;
        let mut closed: Vec<Reading> = newest.into_iter().take_while(|x| x.0 == ReadingKind::Closed).collect();
        closed.reverse();
        let (mut drift, mut noise) = (HashMap::<String, Vec<(String, f64)>>::new(), HashMap::new());
        for (lane, d, drift_g, noise_g) in store::health_of(c, sn)? {
            if let Some(n) = noise_g {
                noise.insert(lane.clone(), n);
            }
            drift.entry(lane).or_default().push((d, drift_g));
        }
        let since: HashMap<String, Anchor> = store::last_nights(c, sn, day)?
            .into_iter()
            .map(|(lane, g, at)| (lane, Anchor { g: Grams(g), at }))
            .collect();
        let earliest = cutoff - Duration::days(r.stock_trace_days);
        let window_from = since.values().map(|a| a.at).min().unwrap_or(earliest).max(earliest);
        let sessions = store::door_sessions(c, sn, window_from, cutoff)?;
        let ledger = store::ledger_since(c, sn, window_from)?;
        let unheld = store::unheld_open(c, sn, window_from, cutoff)?;
        Ok(CabinetFacts { closed, drift, noise, since, window_from, cutoff, sessions, ledger, unheld })
    }

    /// Lane `l`'s night; `None` for a lane with no product.
    fn night(&self, config: &Config, l: &LaneSetup) -> Option<LaneNight> {
        let product = Product {
            id: l.product_id?,
            unit_g: Grams(l.unit_g?),
            tolerance_g: Grams(l.tolerance_g.unwrap_or(config.weights.default_tolerance_g.0)),
            price_fen: l.price_fen?,
        };
        let since = self.since.get(&l.lane).copied().filter(|a| a.at >= self.window_from);
        let from = since.map_or(self.window_from, |a| a.at);
        let sessions: Vec<Weighed> =
            self.sessions.iter().filter(|s| s.started_at > from).filter_map(|s| self.weighed(s, &l.lane)).collect();
        // The book as it stood at the cutoff: changes made since (a morning's sales) taken off.
        let later: i64 = self.ledger_after(&l.lane, self.cutoff);
        Some(LaneNight {
            product,
            book: i64::from(l.stock) - later,
            rest: self.rest(config, l, &product),
            taken_at: self.cutoff,
            since,
            sessions,
            unheld_doors: self.unheld.iter().copied().filter(|t| *t > from).collect(),
        })
    }

    /// What the book of `lane` moved by after `at`.
    fn ledger_after(&self, lane: &str, at: NaiveDateTime) -> i64 {
        self.ledger.iter().filter(|b| b.0 == lane && b.4 > at).map(|b| i64::from(b.1)).sum()
    }

    /// Lane `l`'s rest, net of the drift its cell followed since calibration.
    fn rest(&self, config: &Config, l: &LaneSetup, p: &Product) -> Result<(Grams, Grams), Unreadable> {
        let calibrated = l.calibrated_at.ok_or(Unreadable::NoCalibration)?;
        let channel = usize::try_from(l.channel).unwrap_or(usize::MAX);
        let mut grams = Vec::new();
        for (_, counts, g, _) in &self.closed {
            let counts: Vec<i64> = serde_json::from_str(counts).unwrap_or_default();
            if counts.get(channel).is_some_and(|c| c.abs() >= RAIL) {
                return Err(Unreadable::DeadCell);
            }
            let map: BTreeMap<String, Grams> =
                g.as_deref().and_then(|g| serde_json::from_str(g).ok()).unwrap_or_default();
            if let Some(v) = map.get(&l.lane) {
                grams.push(v.0);
            }
        }
        let w = &config.weights;
        let need = count::needed_sem(Some(p.unit_g), p.tolerance_g, &w.count_rule(), w.rest_sem_max_g);
        let rest =
            rest::at_rest(&grams, self.noise.get(&l.lane).copied(), need, &w.rest_rule()).map_err(|e| match e {
                Unrest::TooFew { .. } => Unreadable::NoReadings,
                Unrest::Moving | Unrest::Imprecise { .. } => Unreadable::NotStable,
            })?;
        let from_day = business_day(calibrated.and_utc()).to_string();
        let drift: f64 = self
            .drift
            .get(&l.lane)
            .map_or(0.0, |days| days.iter().filter(|(d, _)| *d >= from_day).map(|(_, g)| g).sum());
        Ok((rest.mean_g - Grams(drift), rest.sem_g))
    }

    /// Session `s` as it weighed `lane`, with what the book took for it; `None` when it did not
    /// weigh the lane (another door).
    fn weighed(&self, s: &DoorSession, lane: &str) -> Option<Weighed> {
        let weights: SessionWeights = match (&s.kind, &s.order) {
            (SessionKind::Purchase, Some((_, _, before, after))) => SessionWeights {
                before_g: before.as_deref().and_then(|b| serde_json::from_str(b).ok()).unwrap_or_default(),
                after_g: after.as_deref().and_then(|a| serde_json::from_str(a).ok()).unwrap_or_default(),
            },
            (SessionKind::Restock | SessionKind::Maintenance, _) => {
                s.evidence.as_deref().and_then(|e| serde_json::from_str(e).ok()).unwrap_or_default()
            }
            _ => return None,
        };
        if !weights.before_g.contains_key(lane) && !weights.after_g.contains_key(lane) {
            return None;
        }
        let session = match (s.kind, s.order.as_ref()) {
            (SessionKind::Purchase, Some((order_id, user_id, ..))) => {
                SessionRef::Purchase { session_id: s.id, order_id: *order_id, user_id: *user_id }
            }
            (SessionKind::Restock, _) => SessionRef::Restock { session_id: s.id },
            _ => SessionRef::Maintenance { session_id: s.id },
        };
        let order_id = s.order.as_ref().map(|o| o.0);
        let booked: i64 = self
            .ledger
            .iter()
            .filter(|(l, _, sid, oid, _)| l == lane && (*sid == Some(s.id) || (order_id.is_some() && *oid == order_id)))
            .map(|b| i64::from(b.1))
            .sum();
        Some(Weighed {
            session,
            started_at: s.started_at,
            ended_at: s.ended_at,
            before_g: weights.before_g.get(lane).copied(),
            after_g: weights.after_g.get(lane).copied().flatten(),
            booked,
        })
    }
}

/// Keep lane `l`'s night and findings; set its book to the shelf; charge the shoppers named.
fn write_lane(
    c: &mut AnyConnection,
    sn: &str,
    day: &str,
    l: &LaneSetup,
    night: &LaneNight,
    d: &Decision,
    report: &mut StockReport,
) -> Result<(), DbError> {
    let now = db::now();
    let trace = serde_json::json!({
        "decision": d,
        "since": night.since,
        "sessions": night.sessions,
        "unheld_doors": night.unheld_doors,
        "rest_g": night.rest.ok().map(|r| r.0),
        "rest_sem_g": night.rest.ok().map(|r| r.1),
    });
    let row = NewLaneNight {
        day: day.to_string(),
        sn: sn.to_string(),
        lane: l.lane.clone(),
        product_id: l.product_id,
        status: d.status,
        unreadable: d.unreadable,
        book: i32::try_from(night.book).unwrap_or(i32::MAX),
        implied: d.implied.and_then(|i| i32::try_from(i).ok()),
        difference: i32::try_from(d.difference).unwrap_or(0),
        night_g: night.rest.ok().map(|r| r.0.0),
        taken_at: night.taken_at,
        trace: trace.to_string(),
        created_at: now,
    };
    let mut findings = Vec::with_capacity(d.findings.len());
    for f in &d.findings {
        findings.push(settle_finding(c, sn, day, l, f, report)?);
    }
    report.findings += findings.len();
    store::record(c, &row, &mut findings)?;
    if d.status == LaneStatus::Differs {
        let change = StockChange {
            lane: l.lane.clone(),
            product_id: l.product_id,
            delta: d.difference,
            reason: StockReason::Stocktake,
        };
        super::stock::change_in(c, sn, &[change], LedgerRefs { order_id: None, session_id: None, task_id: None }, now)?;
    }
    Ok(())
}

/// A finding as kept: its shopper charged, or its units counted as a loss.
fn settle_finding(
    c: &mut AnyConnection,
    sn: &str,
    day: &str,
    l: &LaneSetup,
    f: &Finding,
    report: &mut StockReport,
) -> Result<NewFinding, DbError> {
    let (session_id, order_id, user_id) = match f.session {
        Some(SessionRef::Purchase { session_id, order_id, user_id }) => {
            (Some(session_id), Some(order_id), Some(user_id))
        }
        Some(SessionRef::Restock { session_id } | SessionRef::Maintenance { session_id }) => {
            (Some(session_id), None, None)
        }
        None => (None, None, None),
    };
    let charged = match (f.kind, order_id, user_id) {
        (FindingKind::Shopper, Some(o), Some(_)) if f.value_fen.0 > 0 => {
            let notice = texts::stocktake_charge(-f.units, f.value_fen);
            owe_more(c, o, f.value_fen, NoticeCode::StocktakeCharge, &notice, db::now())?
        }
        _ => Fen(0),
    };
    if f.kind != FindingKind::Shopper {
        report.loss_units -= f.units;
        report.loss_fen = Fen(report.loss_fen.0 + f.value_fen.0);
    }
    report.charged_fen = Fen(report.charged_fen.0 + charged.0);
    Ok(NewFinding {
        stocktake_id: 0,
        day: day.to_string(),
        sn: sn.to_string(),
        lane: l.lane.clone(),
        product_id: l.product_id,
        kind: f.kind,
        units: i32::try_from(f.units).unwrap_or(0),
        value_fen: f.value_fen,
        charged_fen: charged,
        session_id,
        order_id,
        user_id,
        from_at: f.from,
        to_at: f.to,
        from_g: f.from_g,
        to_g: f.to_g,
    })
}
