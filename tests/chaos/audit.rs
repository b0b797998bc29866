//! What is checked after each fault: orders ended in time, charges against the truth, the
//! platforms' bills and holds, book stock against the shelves.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, NaiveDateTime};
use heft::config::Config;
use heft::pay::Channel;
use heft::pay::sim::Hold;
use serde_json::json;

use super::world::{OrderRow, World};

/// Statuses an order ends in by itself.
const TERMINAL: [&str; 3] = ["paid", "cancelled", "no_purchase"];
/// Statuses that wait for a person: a review case, or a debt with its alert.
const FOR_A_PERSON: [&str; 2] = ["review", "payment_failed"];

/// The longest an order may take to end once the fault is over (or, for an order scanned after
/// it, from its scan), as the configuration implies, and how it was reckoned.
#[derive(Debug, Clone)]
pub struct Bound {
    pub secs: u64,
    pub how: String,
}

/// The slowest path an order can take through the shipped timers, plus one later round of a
/// money message:
/// - the authorisation learnt at the latest `open_window_s` after the scan (later is released),
///   then a door never opened: checked after `open_check_s`, `open` once more, checked again;
///   an order never authorised is cancelled at `auth_timeout_s`, and a charge a killed node
///   was making waits for its lease to lapse (`handler_timeout_ms` + 5 s), both inside that;
/// - the release or capture that follows: its own backoff (`retry_base_ms` doubling, over
///   `max_attempts`), then at most one later round (`capture_retry_max_s`) once the platform is
///   back;
/// - a settlement waits at most `settle_max_ms`;
/// - 30 s of slack for a debug build on two busy cores (cabinets reconnecting with backoff,
///   the node's restart).
pub fn bound(c: &Config) -> Bound {
    let o = &c.orders;
    let m = &c.messages;
    let lease = (m.handler_timeout_ms + 5000).div_ceil(1000);
    let door = (o.open_window_s + 2 * o.open_check_s).max(o.auth_timeout_s).max(lease);
    let backoff_ms: u64 = (0..m.max_attempts.saturating_sub(1)).map(|k| m.retry_base_ms << k).sum();
    let backoff = backoff_ms.div_ceil(1000);
    let settle = o.settle_max_ms.div_ceil(1000);
    let slack = 30;
    let secs = door + backoff + o.capture_retry_max_s + settle + slack;
    let how = format!(
        "max(open_window_s {} + 2 × open_check_s {}, auth_timeout_s {}, capture lease {lease} s) + backoff \
         {backoff} s (retry_base_ms {} doubling over max_attempts {}) + capture_retry_max_s {} + settle_max_ms {} \
         + slack {slack} s",
        o.open_window_s,
        o.open_check_s,
        o.auth_timeout_s,
        m.retry_base_ms,
        m.max_attempts,
        o.capture_retry_max_s,
        o.settle_max_ms
    );
    Bound { secs, how }
}

/// How one experiment's orders ended.
#[derive(Debug, Default)]
pub struct Ended {
    pub orders: Vec<OrderRow>,
    /// From the fault's end (or the order's scan, if later) to the order's last change: the
    /// slowest order, seconds.
    pub slowest_s: f64,
    /// From the fault's end until every order had ended, seconds.
    pub drain_s: f64,
}

fn ended(o: &OrderRow) -> bool {
    TERMINAL.contains(&o.status.as_str()) || FOR_A_PERSON.contains(&o.status.as_str())
}

fn seconds(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

/// Until every order above `after` has ended; fails naming the orders still open past the bound
/// (counted from `fault_end`, or from an order's scan when that is later).
pub async fn wait_ended(world: &World, after: i64, fault_end: NaiveDateTime, bound: &Bound) -> Ended {
    let started = Instant::now();
    loop {
        let orders: Vec<OrderRow> = world.orders().await.into_iter().filter(|o| o.id > after).collect();
        let now = chrono::Utc::now().naive_utc();
        let limit = |o: &OrderRow| o.created_at.max(fault_end) + chrono::Duration::seconds(bound.secs as i64);
        if orders.iter().all(ended) {
            let slowest =
                orders.iter().map(|o| seconds(o.updated_at - o.created_at.max(fault_end))).fold(0.0, f64::max);
            let late: Vec<String> = orders
                .iter()
                .filter(|o| o.updated_at > limit(o))
                .map(|o| format!("order {} {} at {}", o.id, o.status, o.updated_at))
                .collect();
            assert!(late.is_empty(), "orders that ended after the bound of {} s: {late:?}", bound.secs);
            let drain =
                orders.iter().map(|o| o.updated_at).max().map_or(0.0, |last| seconds(last - fault_end).max(0.0));
            return Ended { orders, slowest_s: slowest, drain_s: drain };
        }
        let overdue: Vec<String> = orders
            .iter()
            .filter(|o| !ended(o) && now > limit(o))
            .map(|o| format!("order {} {} ({}) since {}", o.id, o.status, o.out_order_no, o.updated_at))
            .collect();
        assert!(
            overdue.is_empty(),
            "orders not ended within {} s ({}): {overdue:?}; waited {:.0} s",
            bound.secs,
            bound.how,
            started.elapsed().as_secs_f64()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Reviews decided as a person with the video would: the lines the shopper took (none for a
/// visit nobody made). Returns how many; waits until those orders end again.
pub async fn resolve_reviews(world: &World, orders: &[OrderRow]) -> usize {
    let reviews: Vec<&OrderRow> = orders.iter().filter(|o| o.status == "review").collect();
    if reviews.is_empty() {
        return 0;
    }
    let cases = world.ops.get("/ops/reviews?status=open&limit=500").await;
    for o in &reviews {
        let case = cases["cases"].as_array().and_then(|c| c.iter().find(|c| c["order_id"] == o.id).cloned());
        let case_id = case.and_then(|c| c["id"].as_i64()).unwrap_or_else(|| panic!("no case for order {}", o.id));
        let lines: Vec<_> = world
            .truths
            .get(&o.id)
            .map(|t| t.taken.iter().map(|l| json!({"lane": l.lane, "qty": l.qty})).collect())
            .unwrap_or_default();
        let body = json!({"decision": "charge", "lines": lines});
        let (status, v) =
            world.ops.call(reqwest::Method::POST, &format!("/ops/reviews/{case_id}/resolve"), Some(body)).await;
        assert_eq!(status, 200, "resolve the review of order {}: {v}", o.id);
    }
    let ids: BTreeSet<i64> = reviews.iter().map(|o| o.id).collect();
    let started = Instant::now();
    loop {
        let all = world.orders().await;
        if all.iter().filter(|o| ids.contains(&o.id)).all(|o| TERMINAL.contains(&o.status.as_str())) {
            return ids.len();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "reviewed orders did not end: {ids:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// What one order should have cost: what its shopper took, by the shelf labels; nothing when no
/// shopper's visit got past the scan (there is no truth for it then, and nobody took anything).
fn expected_fen(world: &World, o: &OrderRow) -> i64 {
    world.truths.get(&o.id).map_or(0, |t| t.expected_fen)
}

/// What Heft made each order come to: its total once settled (charged, or owed), nothing for an
/// order that ended before a basket.
fn heft_fen(o: &OrderRow) -> i64 {
    match o.status.as_str() {
        "paid" | "payment_failed" | "paying" => o.total_fen.unwrap_or(0),
        _ => 0,
    }
}

/// Each order's charge against the truth, and the needs-a-person orders against their alerts.
/// Problems found, one line each.
pub async fn charges(world: &World, orders: &[OrderRow]) -> Vec<String> {
    let mut problems = Vec::new();
    for o in orders {
        let (want, got) = (expected_fen(world, o), heft_fen(o));
        if want != got {
            problems.push(format!("order {} ({} {}) came to {got} fen, the shopper took {want}", o.id, o.sn, o.status));
        }
        if o.status == "paid" && o.paid_fen != o.total_fen {
            problems.push(format!("order {} paid {:?} of a total {:?}", o.id, o.paid_fen, o.total_fen));
        }
        if o.status == "payment_failed" && world.ops.alerts_naming(&o.out_order_no).await.is_empty() {
            problems.push(format!("order {} is owed ({} fen) with no alert naming it", o.id, o.debt_fen));
        }
    }
    problems
}

/// Beijing dates from the run's start to now.
fn bill_days(world: &World) -> Vec<NaiveDate> {
    let beijing = |t: chrono::DateTime<chrono::Utc>| (t + chrono::Duration::hours(8)).date_naive();
    let (first, last) = (beijing(world.began), beijing(chrono::Utc::now()));
    first.iter_days().take_while(|d| *d <= last).collect()
}

/// The platforms' bills, every day of the run: payments by Heft's order number (Alipay names
/// the trade, `{out_order_no}T`). Read the next morning (the platforms' clock moved forward,
/// then back, while nothing is being charged).
pub async fn billed(world: &World) -> BTreeMap<String, Vec<i64>> {
    let gateways = heft::pay::Gateways::from_config(&world.stage.config, &world.stage.http_base()).expect("gateways");
    world.sim_post("/sim/clock", json!({"offset_s": 33 * 3600})).await;
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut failed = None;
    'days: for day in bill_days(world) {
        for channel in [Channel::Wechat, Channel::Alipay] {
            match gateways.get(channel).download_bill(day).await {
                Ok(bill) => {
                    for r in bill.rows.into_iter().filter(|r| r.amount_fen > 0) {
                        let no = match channel {
                            Channel::Alipay => r.out_order_no.strip_suffix('T').unwrap_or(&r.out_order_no).to_string(),
                            Channel::Wechat => r.out_order_no.clone(),
                        };
                        out.entry(no).or_default().push(r.amount_fen);
                    }
                }
                Err(e) => {
                    failed = Some(format!("{channel} bill of {day}: {e}"));
                    break 'days;
                }
            }
        }
    }
    world.sim_post("/sim/clock", json!({"offset_s": 0})).await;
    if let Some(e) = failed {
        panic!("{e}");
    }
    out
}

/// What the platforms were asked about, so a clean check is seen not to be an empty one.
#[derive(Debug, Default)]
pub struct OnPlatforms {
    /// Payments in the bills of the run's days.
    pub bill_payments: usize,
    /// Pre-authorisations the platforms hold.
    pub holds: usize,
    /// Of them, never confirmed by the shopper (WeChat `CREATED`): nothing frozen.
    pub unconfirmed: usize,
    pub problems: Vec<String>,
}

/// Every order of the run against the bills and the platforms' own account of each hold: one
/// payment per paid order, of what Heft recorded; nothing else charged; nothing left frozen
/// unless an alert names the order.
pub async fn platforms(world: &World, orders: &[OrderRow], deadline: NaiveDateTime) -> OnPlatforms {
    let frozen = holds_released(world, orders, deadline).await;
    let mut problems = Vec::new();
    let billed = billed(world).await;
    let by_no: BTreeMap<&str, &OrderRow> = orders.iter().map(|o| (o.out_order_no.as_str(), o)).collect();
    for o in orders.iter().filter(|o| o.status == "paid") {
        let want = vec![o.paid_fen.unwrap_or(0)];
        if billed.get(&o.out_order_no) != Some(&want) {
            problems.push(format!("order {} paid {want:?}: the bills say {:?}", o.id, billed.get(&o.out_order_no)));
        }
    }
    for (no, amounts) in &billed {
        if by_no.get(no.as_str()).is_none_or(|o| o.status != "paid") {
            problems.push(format!("billed {amounts:?} for {no}, which Heft has not as paid"));
        }
    }
    let holds: Vec<Hold> = serde_json::from_value(world.sim_get("/sim/holds").await["holds"].clone()).expect("holds");
    let mut unconfirmed = 0;
    for h in &holds {
        let Some(o) = by_no.get(h.out_order_no.as_str()) else {
            problems.push(format!("the platform holds {} for an order Heft does not know", h.out_order_no));
            continue;
        };
        if h.charges > 1 {
            problems.push(format!("order {} charged {} times on {}", o.id, h.charges, h.channel));
        }
        if h.charged_fen != o.paid_fen.unwrap_or(0) {
            problems.push(format!(
                "order {} ({}): the platform charged {}, Heft paid {:?}",
                o.id, o.status, h.charged_fen, o.paid_fen
            ));
        }
        unconfirmed += usize::from(h.state == "CREATED");
    }
    problems.extend(frozen);
    let bill_payments = billed.values().map(Vec::len).sum();
    OnPlatforms { bill_payments, holds: holds.len(), unconfirmed, problems }
}

/// Holds the platforms still have money frozen for, with no open alert naming the order. An
/// order ends before the release that follows it is done (a release outlives an outage in later
/// rounds), so this is asked until it comes out empty or `deadline` passes; what is left then.
async fn holds_released(world: &World, orders: &[OrderRow], deadline: NaiveDateTime) -> Vec<String> {
    let by_no: BTreeMap<&str, &OrderRow> = orders.iter().map(|o| (o.out_order_no.as_str(), o)).collect();
    loop {
        let holds: Vec<Hold> =
            serde_json::from_value(world.sim_get("/sim/holds").await["holds"].clone()).expect("holds");
        let mut frozen = Vec::new();
        for h in holds.iter().filter(|h| h.held_fen > 0) {
            let status = by_no.get(h.out_order_no.as_str()).map_or("unknown", |o| o.status.as_str());
            if world.ops.alerts_naming(&h.out_order_no).await.is_empty() {
                frozen.push(format!(
                    "{} ({status}) left {} fen frozen ({} {}), no alert naming it",
                    h.out_order_no, h.held_fen, h.channel, h.state
                ));
            }
        }
        if frozen.is_empty() || chrono::Utc::now().naive_utc() > deadline {
            return frozen;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Book stock of every lane against what the cabinet's shelves hold. Waits a little for the
/// stock of orders just resolved.
pub async fn stock(world: &World) -> Vec<String> {
    let started = Instant::now();
    loop {
        let mut problems = Vec::new();
        for cab in &world.cabs {
            let truth = cab.truth();
            for (code, (channel, book)) in world.ops.book(cab.sn()).await {
                let units = truth.get(channel as usize).map_or(-1, |t| i64::from(t.units));
                if units != book {
                    problems.push(format!("{} lane {code}: book {book}, shelf {units}", cab.sn()));
                }
            }
        }
        if problems.is_empty() || started.elapsed() > Duration::from_secs(10) {
            return problems;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Orders by status, a cancelled one with its reason, as `cancelled(auth_timeout)=1 paid=12`.
pub fn by_status(orders: &[OrderRow]) -> String {
    counted(orders.iter().map(|o| match (o.status.as_str(), &o.cancel_reason) {
        ("cancelled", Some(why)) => format!("cancelled({why})"),
        (status, _) => status.to_string(),
    }))
}

/// Each distinct word with how often it came, as `a=2 b=1`.
pub fn counted(words: impl Iterator<Item = String>) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for w in words {
        *counts.entry(w).or_default() += 1;
    }
    counts.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}
