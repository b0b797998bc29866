//! Money held or owed is never given up on (`domain::money`): a platform that is away is waited
//! for in later rounds however long it takes, and only the platform's own word ends a charge or a
//! release, in a state an operator sees, with an alert naming the order.

use std::time::Duration;

use serde_json::{Value, json};

use super::shop::{self, FAST, ok};
use crate::common::{Profile, TestServer, eventually};
use heft::domain::operator::Role;

/// Later rounds every second, and a message's own attempts spent in about 1.5 s.
const QUICK_ROUNDS: [(&str, &str); 2] =
    [("HEFT__ORDERS__CAPTURE_RETRY_S", "1"), ("HEFT__MESSAGES__RETRY_BASE_MS", "100")];

async fn start(profile: Profile) -> Option<TestServer> {
    let mut extra = FAST.to_vec();
    extra.extend(QUICK_ROUNDS);
    TestServer::start(profile, &extra).await
}

/// Dead messages on `topic`.
async fn dead(s: &TestServer, topic: &str) -> Vec<Value> {
    let t = s.ops_login(Role::Operator).await;
    let v = ok(s, "GET", "/ops/messages?status=dead&limit=500", &t, None).await;
    v["messages"].as_array().expect("messages").iter().filter(|m| m["topic"] == topic).cloned().collect()
}

async fn forget(s: &TestServer, out_order_no: &str) {
    let url = format!("{}/sim/orders/{out_order_no}/forget", s.sim_base());
    let res = s.http.post(url).send().await.expect("forget");
    assert!(res.status().is_success(), "the platform had the order: {}", res.status());
}

/// The platform no longer knows the order when it is charged (WeChat `ORDER_NOT_EXIST`, Alipay
/// `AUTH_ORDER_NOT_EXIST`): the gone path — owed, `preauth_gone` naming the order — not a
/// message retried until it dies with the order left `paying`.
pub async fn charge_of_a_forgotten_order(profile: Profile) {
    let Some(s) = start(profile).await else { return };
    for (sn, channel, uid, seed) in [("GONE-W", "wechat", "o-gone", 41), ("GONE-A", "alipay", "2088000000000041", 42)] {
        let cab = shop::ready_cabinet(&s, sn, shop::quiet(seed)).await;
        let token = shop::shopper(&s, channel, uid).await;
        let id = shop::open_visit(&s, &cab, &token, channel, uid).await;
        let no = shop::order(&s, &token, id).await["out_order_no"].as_str().expect("no").to_string();
        cab.take(0, 1).expect("a cola");
        forget(&s, &no).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        cab.close_door(1).await.expect("close");
        let o = shop::order_in(&s, &token, id, "payment_failed").await;
        assert_eq!(o["debt_fen"], 350, "owed: {o}");
        let alert = eventually("the preauth_gone alert naming the order", || async {
            s.alerts("code=preauth_gone").await.into_iter().find(|a| a["subject"] == no.as_str())
        })
        .await;
        assert!(alert["message"].as_str().is_some_and(|m| m.contains(&no)), "{alert}");
        assert_eq!(alert["sn"], sn, "{alert}");
        assert!(dead(&s, "payment.capture").await.is_empty(), "no charge given up on");
        assert_eq!(shop::order(&s, &token, id).await["status"], "payment_failed");
        cab.stop().await;
    }
}

/// The platform refuses Heft's signature (our side broken: a key rotated on the platform and not
/// in Heft) for longer than the charge message's own attempts last. The charge is not given up
/// on: an operator gets a `payment_stuck` alert naming the order, later rounds go on, and once
/// the key is right again the shopper is charged once, the right amount.
pub async fn charge_stuck_on_our_side(profile: Profile) {
    let Some(s) = start(profile).await else { return };
    for (sn, channel, uid, seed) in [("STK-W", "wechat", "o-stuck", 46), ("STK-A", "alipay", "2088000000000046", 47)] {
        let cab = shop::ready_cabinet(&s, sn, shop::quiet(seed)).await;
        let token = shop::shopper(&s, channel, uid).await;
        let id = shop::open_visit(&s, &cab, &token, channel, uid).await;
        let no = shop::order(&s, &token, id).await["out_order_no"].as_str().expect("no").to_string();
        cab.take(0, 1).expect("a cola");
        shop::knobs(&s, json!({"reject_signature": 100_000})).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        cab.close_door(1).await.expect("close");
        let alert = eventually("the payment_stuck alert naming the order", || async {
            s.alerts("code=payment_stuck").await.into_iter().find(|a| a["subject"] == no.as_str())
        })
        .await;
        assert!(alert["message"].as_str().is_some_and(|m| m.contains(&no)), "{alert}");
        assert_eq!((alert["sn"].as_str(), alert["audience"].as_str()), (Some(sn), Some("ops")), "{alert}");
        assert_ne!(shop::order(&s, &token, id).await["status"], "paid");
        assert!(dead(&s, "payment.capture").await.is_empty(), "no charge given up on");
        // The key is put right: the next round charges the cola, once.
        shop::knobs(&s, json!({})).await;
        let paid = shop::order_in(&s, &token, id, "paid").await;
        assert_eq!((paid["paid_fen"].as_i64(), paid["debt_fen"].as_i64()), (Some(350), Some(0)), "{paid}");
        cab.stop().await;
    }
}

/// A confirmation that crossed the shopper's cancel leaves a hold to release; the platform
/// answers 5xx for longer than the release message's own attempts last. The release is not
/// given up on: it goes on in later rounds and gives the money back once the platform answers.
pub async fn release_outlasts_an_outage(profile: Profile) {
    let Some(s) = start(profile).await else { return };
    let cab = shop::ready_cabinet(&s, "HOLD-1", shop::quiet(43)).await;
    let uid = "o-held";
    let token = shop::shopper(&s, "wechat", uid).await;
    let scanned = shop::scan(&s, &token, "HOLD-1", "wechat").await;
    let id = scanned["order"]["id"].as_i64().expect("id");
    let no = scanned["order"]["out_order_no"].as_str().expect("no").to_string();
    // Eight answers of 500: the message's own five attempts die on them today.
    shop::knobs(&s, json!({"server_error": 8})).await;
    ok(&s, "POST", &format!("/api/v1/orders/{id}/cancel"), &token, None).await;
    shop::confirm(&s, "wechat", &scanned["confirm"], uid).await;
    let gateway = s.heft.services.payments.wechat.clone();
    eventually("the hold released after the outage", || {
        let (gateway, no) = (gateway.clone(), no.clone());
        async move { matches!(gateway.query(&no, None).await, Ok(heft::pay::PlatformState::Cancelled)).then_some(()) }
    })
    .await;
    let knobs: Value =
        s.http.get(format!("{}/sim/knobs", s.sim_base())).send().await.expect("knobs").json().await.expect("json");
    assert_eq!(knobs["server_error"], 0, "the outage was sat out: {knobs}");
    assert!(dead(&s, "payment.release").await.is_empty(), "no release given up on");
    assert_eq!(shop::order(&s, &token, id).await["status"], "cancelled");
    cab.stop().await;
}

/// A basket that came to nothing, and the platform refuses the release for good: the message ends, and an operator sees a
/// `release_failed` alert naming the order (nothing left dead, nothing retried for ever).
pub async fn release_refused(profile: Profile) {
    let Some(s) = start(profile).await else { return };
    for (sn, channel, uid, seed) in [("RFR-W", "wechat", "o-refused", 44), ("RFR-A", "alipay", "2088000000000044", 45)]
    {
        let cab = shop::ready_cabinet(&s, sn, shop::quiet(seed)).await;
        let token = shop::shopper(&s, channel, uid).await;
        let id = shop::open_visit(&s, &cab, &token, channel, uid).await;
        let no = shop::order(&s, &token, id).await["out_order_no"].as_str().expect("no").to_string();
        shop::knobs(&s, json!({"refuse_release": 1000})).await;
        // Nothing taken: the hold is to be released whole.
        tokio::time::sleep(Duration::from_millis(300)).await;
        cab.close_door(1).await.expect("close");
        shop::order_in(&s, &token, id, "no_purchase").await;
        let alert = eventually("the release_failed alert naming the order", || async {
            s.alerts("code=release_failed").await.into_iter().find(|a| a["subject"] == no.as_str())
        })
        .await;
        assert!(alert["message"].as_str().is_some_and(|m| m.contains(&no)), "{alert}");
        assert_eq!(alert["sn"], sn, "{alert}");
        shop::knobs(&s, json!({})).await;
        assert!(dead(&s, "payment.release").await.is_empty(), "ended, not dead");
        assert_eq!(shop::order(&s, &token, id).await["status"], "no_purchase");
        cab.stop().await;
    }
}
