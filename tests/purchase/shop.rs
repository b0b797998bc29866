#![allow(dead_code)]

//! A shop to test the purchase flow in: products, a configured and calibrated simulated cabinet
//! with stocked lanes, and shoppers signed in through the payment simulator.

use std::time::Duration;

use heft::domain::operator::Role;
use heft::sim::handle::{SimCabinet, SimCabinetOptions};
use serde_json::{Value, json};

use crate::common::{EVENTUALLY, TestServer, eventually};
pub use crate::common::{call, ok};

/// The lanes of door 1: code, channel, product index, book (and physical) stock, capacity, threshold.
pub const LANES: [(&str, u32, usize, u32, u32, u32); 3] =
    [("A1", 0, 0, 6, 10, 2), ("A2", 1, 1, 8, 12, 3), ("A3", 2, 2, 5, 8, 2)];

/// name, barcode, unit_g, price_fen
pub const PRODUCTS: [(&str, &str, f64, i64); 3] = [
    ("Cola 330 ml", "6901234567892", 355.0, 350),
    ("Chips 70 g", "6901234567908", 78.0, 600),
    ("Water 550 ml", "6901234567915", 570.0, 200),
];

/// Test settings for a brisk purchase: readings every 100 ms while the door is open and after it
/// closes (the shipped 300 ms would only make the tests slower, not different).
pub const FAST: [(&str, &str); 2] =
    [("HEFT__PROTOCOL__OPEN_WEIGHT_MS", "100"), ("HEFT__PROTOCOL__AFTER_CLOSE_WEIGHT_MS", "100")];

/// The products of [`PRODUCTS`], created once per server; their ids.
pub async fn products(s: &TestServer) -> Vec<i64> {
    let t = s.ops_login(Role::Operator).await;
    let listed = ok(s, "GET", "/ops/products", &t, None).await;
    let mut ids = Vec::new();
    for (name, barcode, unit_g, price_fen) in PRODUCTS {
        let found = listed["products"]
            .as_array()
            .or(listed.as_array())
            .and_then(|all| all.iter().find(|p| p["barcode"] == barcode).and_then(|p| p["id"].as_i64()));
        let id = match found {
            Some(id) => id,
            None => {
                let body = json!({"name": name, "barcode": barcode, "unit_g": unit_g, "tolerance_g": 8.0, "price_fen": price_fen});
                ok(s, "POST", "/ops/products", &t, Some(body)).await["id"].as_i64().expect("product id")
            }
        };
        ids.push(id);
    }
    ids
}

/// A cabinet ready to sell: configured (door 1, [`LANES`]), labelled, calibrated, stocked as the
/// book says, with enough quiet readings that its lanes are stable.
pub async fn ready_cabinet(s: &TestServer, sn: &str, opts: SimCabinetOptions) -> SimCabinet {
    ready_cabinet_with(s, sn, opts, None).await
}

/// [`ready_cabinet`], with every lane holding `stock` units of `capacity` (threshold 5) instead
/// of [`LANES`]' own numbers.
pub async fn ready_cabinet_with(
    s: &TestServer,
    sn: &str,
    opts: SimCabinetOptions,
    stock_capacity: Option<(u32, u32)>,
) -> SimCabinet {
    let ids = products(s).await;
    let lanes_of = |(code, channel, p, stock, capacity, threshold): (&'static str, u32, usize, u32, u32, u32)| {
        match stock_capacity {
            Some((stock, capacity)) => (code, channel, p, stock, capacity, 5),
            None => (code, channel, p, stock, capacity, threshold),
        }
    };
    let table: Vec<_> = LANES.into_iter().map(lanes_of).collect();
    let t = s.ops_login(Role::Operator).await;
    let cab = SimCabinet::start(s.provision(sn), &s.broker, opts).await.expect("simulated cabinet logs in");
    let lanes: Vec<Value> = table
        .iter()
        .map(|(code, channel, p, stock, capacity, threshold)| {
            json!({"code": code, "name": code, "channel": channel, "capacity": capacity, "threshold": threshold,
                   "product_id": ids[*p], "stock": stock})
        })
        .collect();
    let layout = json!({"lat": 31.2304, "lng": 121.4737, "doors": [{"door": 1, "lanes": lanes}]});
    ok(s, "PUT", &format!("/ops/cabinets/{sn}/config"), &t, Some(layout)).await;
    eventually("configuration and labels acked", || async {
        let c = ok(s, "GET", &format!("/ops/cabinets/{sn}/config"), &t, None).await;
        let done = c["config_version"] == c["config_acked_version"] && c["tags_version"] == c["tags_acked_version"];
        done.then_some(())
    })
    .await;
    ok(s, "POST", &format!("/ops/cabinets/{sn}/calibration"), &t, Some(json!({"door": 1}))).await;
    ok(s, "POST", &format!("/ops/cabinets/{sn}/calibration/tare"), &t, None).await;
    let span = json!({"standard_g": 500.0});
    ok(s, "POST", &format!("/ops/cabinets/{sn}/calibration/span"), &t, Some(span.clone())).await;
    ok(s, "POST", &format!("/ops/cabinets/{sn}/calibration/verify"), &t, Some(span)).await;
    for &(_, channel, p, stock, _, _) in &table {
        cab.stock(channel, PRODUCTS[p].2, stock).expect("stock the lane");
    }
    settle_readings(&cab).await;
    eventually("the cabinet is sellable", || async { (s.cabinet(sn).await["sellable"] == true).then_some(()) }).await;
    cab
}

/// A few closed-door readings, so every lane has a stable weight to start from.
pub async fn settle_readings(cab: &SimCabinet) {
    for _ in 0..5 {
        cab.send_weights_now().await.expect("weights");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A shopper signed in through the platform's login; their token.
pub async fn shopper(s: &TestServer, channel: &str, uid: &str) -> String {
    let code = s.platform_login_code(channel, uid).await;
    let res = ok(s, "POST", &format!("/api/v1/auth/{channel}"), "", Some(json!({"code": code}))).await;
    res["token"].as_str().expect("token").to_string()
}

/// Scan door 1 of `sn`; the 201 answer.
pub async fn scan(s: &TestServer, token: &str, sn: &str, channel: &str) -> Value {
    let (status, v) =
        call(s, "POST", "/api/v1/orders", token, Some(json!({"sn": sn, "door": 1, "channel": channel}))).await;
    assert_eq!(status, 201, "scan: {v}");
    v
}

/// The shopper confirms on the platform's page.
pub async fn confirm(s: &TestServer, channel: &str, confirm: &Value, uid: &str) {
    let body = match channel {
        "wechat" => json!({"package": confirm["extraData"]["package"], "openid": uid}),
        _ => json!({"orderStr": confirm["orderStr"], "user_id": uid}),
    };
    let res = s.http.post(format!("{}/sim/{channel}/confirm", s.sim_base())).json(&body).send().await.expect("confirm");
    let status = res.status();
    assert!(status.is_success(), "confirm: {status} {}", res.text().await.unwrap_or_default());
}

pub async fn order(s: &TestServer, token: &str, id: i64) -> Value {
    ok(s, "GET", &format!("/api/v1/orders/{id}"), token, None).await
}

/// Wait until the order is in `status`.
pub async fn order_in(s: &TestServer, token: &str, id: i64, status: &str) -> Value {
    eventually(&format!("order {id} {status}"), || async {
        let o = order(s, token, id).await;
        (o["status"] == status).then_some(o)
    })
    .await
}

/// A shopper at door 1 of `cab`, up to the open door: scan, confirm on the platform's page, and
/// open the door once it is unlocked. The order's id.
pub async fn open_visit(s: &TestServer, cab: &SimCabinet, token: &str, channel: &str, uid: &str) -> i64 {
    let scanned = scan(s, token, cab.sn(), channel).await;
    let id = scanned["order"]["id"].as_i64().expect("order id");
    confirm(s, channel, &scanned["confirm"], uid).await;
    order_in(s, token, id, "authorized").await;
    // The shopper pulls the door once it unlocks: the order is authorised a moment before its
    // cabinet hears of it and sends `open`.
    assert!(cab.wait_unlocked(1, EVENTUALLY).await, "open reached the cabinet");
    cab.open_door(1).await.expect("the door opens");
    order_in(s, token, id, "door_open").await;
    id
}

/// Book stock per lane code.
pub async fn book_stock(s: &TestServer, sn: &str) -> Vec<(String, i64)> {
    let t = s.ops_login(Role::Operator).await;
    let c = ok(s, "GET", &format!("/ops/cabinets/{sn}/config"), &t, None).await;
    let mut out = Vec::new();
    for d in c["doors"].as_array().expect("doors") {
        for l in d["lanes"].as_array().expect("lanes") {
            out.push((l["code"].as_str().unwrap_or_default().to_string(), l["stock"].as_i64().unwrap_or(-1)));
        }
    }
    out
}

/// Set knobs on the payment simulator.
pub async fn knobs(s: &TestServer, knobs: Value) {
    let res = s.http.post(format!("{}/sim/knobs", s.sim_base())).json(&knobs).send().await.expect("knobs");
    assert!(res.status().is_success(), "knobs: {}", res.status());
}

/// Quiet load cells, for tests that need exact weights.
pub fn quiet(seed: u64) -> SimCabinetOptions {
    SimCabinetOptions { noise_g: 1.0, creep_g_per_h: 0.0, seed: Some(seed), ..Default::default() }
}
