//! Stock by weight, one night, in both profiles: a cabinet's day with every fault the stocktake
//! must catch. A shopper's settlement misses a unit that leaves the lane after the door closed
//! (a reading hidden from Heft): that shopper is charged it, once, as debt with a notice. A door
//! is pulled open while nothing holds the cabinet and a unit taken: a loss, put down to that
//! door. A restock is counted by weight and the restocker takes one back out after: a loss,
//! put down to that restock. Book stock ends equal to the cabinet's truth, the settlement counts
//! the losses, and running the night again changes nothing.

mod common;
mod purchase {
    pub mod shop;
}

use std::time::Duration;

use common::{Profile, TestServer, eventually};
use heft::domain::calendar::business_day;
use heft::domain::operator::Role;
use heft::domain::reconcile::{Job, RunStatus};
use heft::domain::weight::ReadingKind;
use heft::flows::reconcile::JobReport;
use heft::flows::stocktake::StockReport;
use purchase::shop::{self, FAST, ok};
use serde_json::json;

/// Readings the night's rest is taken from.
const NIGHT_READINGS: usize = 10;

async fn take_stock(s: &TestServer, day: chrono::NaiveDate) -> StockReport {
    let svc = &s.heft.services;
    let o = heft::flows::reconcile::run(&svc.flows(), svc.effects.as_ref(), Job::Stock, day, "test")
        .await
        .expect("the run is recorded");
    assert_eq!(o.status, RunStatus::Done, "{o:?}");
    match o.report {
        Some(JobReport::Stock(r)) => r,
        other => panic!("a stock report: {other:?}"),
    }
}

/// A restocker fills `units` of `channel` through a restock session on door 1, counted by weight.
async fn restock(s: &TestServer, cab: &heft::sim::handle::SimCabinet, sn: &str, channel: u32, units: u32) {
    let t = s.ops_login(Role::Restocker).await;
    let started = eventually("the cabinet is free for a restock", || async {
        let (status, body) =
            common::call(s, "POST", &format!("/ops/cabinets/{sn}/restock"), &t, Some(json!({"door": 1}))).await;
        (status == 201).then_some(body)
    })
    .await;
    let session = started["session"]["id"].clone();
    assert!(cab.wait_unlocked(1, common::EVENTUALLY).await, "the restock unlocked the door");
    cab.open_door(1).await.expect("open");
    cab.put(channel, units).expect("restocked");
    tokio::time::sleep(Duration::from_millis(300)).await;
    cab.close_door(1).await.expect("close");
    eventually("the restock is counted", || async {
        let v = ok(s, "GET", &format!("/ops/cabinets/{sn}/sessions"), &t, None).await;
        let ended = v["recent"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["id"] == session && !x["ended_at"].is_null()).cloned());
        ended.filter(|e| e["outcome"] == "done")
    })
    .await;
}

/// Closed-door readings until the newest `NIGHT_READINGS` of the log are all closed-door ones.
async fn rest_at_night(s: &TestServer, cab: &heft::sim::handle::SimCabinet, sn: &str) {
    // Past the after-close window (1 s here), so the readings count as closed-door ones.
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    for _ in 0..NIGHT_READINGS + 2 {
        cab.send_weights_now().await.expect("weights");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let db = s.heft.services.db.clone();
    let sn = sn.to_string();
    eventually("the night's readings are in the weight log", || {
        let (db, sn) = (db.clone(), sn.clone());
        async move {
            let newest = db
                .run(move |c| heft::db::stocktake::readings_before(c, &sn, heft::db::now(), 40))
                .await
                .expect("weight log");
            let closed = newest.iter().take_while(|r| r.0 == ReadingKind::Closed).count();
            (closed >= NIGHT_READINGS).then_some(())
        }
    })
    .await;
}

async fn night_with_faults(profile: Profile) {
    let mut extra = FAST.to_vec();
    extra.push(("HEFT__PROTOCOL__AFTER_CLOSE_S", "1"));
    let Some(s) = TestServer::start(profile, &extra).await else { return };
    let sn = "STK-1";
    let cab = shop::ready_cabinet_with(&s, sn, shop::quiet(41), Some((10, 12))).await;
    let (ta, tb) = (shop::shopper(&s, "wechat", "stk-a").await, shop::shopper(&s, "alipay", "stk-b").await);

    // A takes a cola and pays for one; a second cola leaves the lane after the settlement weighed.
    let a = shop::open_visit(&s, &cab, &ta, "wechat", "stk-a").await;
    cab.take(0, 1).expect("a cola");
    tokio::time::sleep(Duration::from_millis(300)).await;
    cab.close_door(1).await.expect("close");
    shop::order_in(&s, &ta, a, "paid").await;
    cab.slip_out(0, 1).expect("the unit the settlement missed");
    shop::settle_readings(&cab).await;

    // B buys a bottle of water: the weights at B's open show lane A1 a unit short.
    let b = shop::open_visit(&s, &cab, &tb, "alipay", "stk-b").await;
    cab.take(2, 1).expect("water");
    tokio::time::sleep(Duration::from_millis(300)).await;
    cab.close_door(1).await.expect("close");
    shop::order_in(&s, &tb, b, "paid").await;

    // The door is forced and a bag of chips taken while nothing holds the cabinet.
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    cab.force_take(1, 1, 1).await.expect("a forced door");
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    shop::settle_readings(&cab).await;

    // A restock of three waters, counted by weight; the restocker takes one back out after.
    restock(&s, &cab, sn, 2, 3).await;
    cab.slip_out(2, 1).expect("the water taken back after the count");
    rest_at_night(&s, &cab, sn).await;

    // Yesterday the cabinet sent no readings: its lanes cannot be read, which is maintenance's
    // alert naming them, not a loss, and the book is left as it is.
    let today = business_day(chrono::Utc::now());
    let book_before = shop::book_stock(&s, sn).await;
    let y = take_stock(&s, today - chrono::Duration::days(1)).await;
    assert_eq!((y.lanes, y.unreadable, y.findings, y.loss_units), (3, 3, 0, 0), "{y:?}");
    let unreadable = s.alerts("code=stock_unreadable").await;
    assert_eq!(unreadable.len(), 1, "{unreadable:?}");
    let message = unreadable[0]["message"].as_str().unwrap_or_default();
    assert!(["A1", "A2", "A3"].iter().all(|l| message.contains(l)), "the alert names each lane: {message}");
    assert_eq!(shop::book_stock(&s, sn).await, book_before);

    let r = take_stock(&s, today).await;
    assert_eq!((r.lanes, r.agree, r.differ, r.unreadable, r.findings), (3, 0, 3, 0, 3), "{r:?}");
    assert_eq!(r.charged_fen.0, 350, "A is charged the cola: {r:?}");
    assert_eq!((r.loss_units, r.loss_fen.0), (2, 800), "the chips and the water are lost: {r:?}");

    // The record an operator reads: who and what each difference is put down to.
    let t = s.ops_login(Role::Operator).await;
    let lanes = ok(&s, "GET", &format!("/ops/stocktake?day={today}&sn={sn}"), &t, None).await;
    let lane = |code: &str| lanes.as_array().and_then(|l| l.iter().find(|x| x["lane"] == code).cloned()).expect("lane");
    let a1 = lane("A1");
    assert_eq!(
        (a1["status"].as_str(), a1["book"].as_i64(), a1["implied"].as_i64()),
        (Some("differs"), Some(9), Some(8))
    );
    assert_eq!(a1["findings"].as_array().map(Vec::len), Some(1), "{a1}");
    let f = &a1["findings"][0];
    assert_eq!((f["kind"].as_str(), f["units"].as_i64(), f["order_id"].as_i64()), (Some("shopper"), Some(-1), Some(a)));
    assert_eq!(f["charged_fen"], 350);
    let a2 = lane("A2");
    let f = &a2["findings"][0];
    assert_eq!(
        (f["kind"].as_str(), f["units"].as_i64(), f["charged_fen"].as_i64()),
        (Some("door_unheld"), Some(-1), Some(0))
    );
    let a3 = lane("A3");
    assert_eq!((a3["book"].as_i64(), a3["implied"].as_i64()), (Some(12), Some(11)), "{a3}");
    let f = &a3["findings"][0];
    assert_eq!((f["kind"].as_str(), f["units"].as_i64()), (Some("restock"), Some(-1)), "{a3}");
    assert!(f["session_id"].as_i64().is_some(), "the restock session is named: {a3}");

    // A sees it on the order, owed.
    let order = shop::order(&s, &ta, a).await;
    assert_eq!(order["debt_fen"], 350, "{order}");
    assert!(order.to_string().contains("stocktake_charge"), "the notice is on the order: {order}");

    // Book stock equals the shelf: 10 − 2 colas, 10 − 1 chips, 10 − 1 + 3 − 1 water.
    let book = shop::book_stock(&s, sn).await;
    assert_eq!(book, [("A1".to_string(), 8), ("A2".to_string(), 9), ("A3".to_string(), 11)]);
    let truth: Vec<i64> = cab.truth().iter().take(3).map(|l| i64::from(l.units)).collect();
    assert_eq!(book.iter().map(|b| b.1).collect::<Vec<_>>(), truth, "book is the cabinet's truth");

    // The night again: every lane already taken, nothing charged or corrected twice.
    let again = take_stock(&s, today).await;
    assert_eq!((again.lanes, again.already, again.charged_fen.0), (0, 3, 0), "{again:?}");
    assert_eq!(shop::order(&s, &ta, a).await["debt_fen"], 350);
    assert_eq!(shop::book_stock(&s, sn).await, book);

    // The day's settlement counts the loss against the chips.
    let svc = &s.heft.services;
    heft::flows::reconcile::run(&svc.flows(), svc.effects.as_ref(), Job::Settlement, today, "test").await.expect("run");
    let daily = ok(&s, "GET", &format!("/ops/reports/daily?from={today}&to={today}&sn={sn}"), &t, None).await;
    let chips = daily["rows"].as_array().and_then(|r| r.iter().find(|x| x["product_name"] == "Chips 70 g").cloned());
    let chips = chips.expect("a row for the chips lost");
    assert_eq!((chips["loss_units"].as_i64(), chips["loss_fen"].as_i64()), (Some(1), Some(600)), "{chips}");
    assert_eq!(s.alerts("code=stock_loss").await.len(), 1);
    cab.stop().await;
}
both_profiles!(a_night_with_every_fault, night_with_faults);
