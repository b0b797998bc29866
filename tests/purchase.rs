//! The purchase flow end to end, in both profiles, as a shopper, a cabinet and the payment
//! platforms see it: scan → confirm on the platform → the door opens → take → close → settled
//! and charged; and every way it can go otherwise (refusals, timeouts, an empty basket, a
//! confirmation after the cancel, a door that never opens, a charge that fails first).

mod common;
mod purchase {
    pub mod confirm;
    pub mod money;
    pub mod shop;
}

use std::time::Duration;

use common::{EVENTUALLY, Profile, TestServer, eventually};
use heft::domain::operator::Role;
use heft::mq::topics::Payload;
use purchase::shop::{self, FAST, call, ok};
use serde_json::json;

/// Buy two colas and a bag of chips through `channel`; paid exactly, stock and ledger follow.
async fn buy(s: &TestServer, sn: &str, channel: &str, uid: &str) {
    let cab = shop::ready_cabinet(s, sn, shop::quiet(11)).await;
    let token = shop::shopper(s, channel, uid).await;
    let scanned = shop::scan(s, &token, sn, channel).await;
    let id = scanned["order"]["id"].as_i64().expect("order id");
    assert_eq!(scanned["order"]["status"], "created", "{scanned}");
    shop::confirm(s, channel, &scanned["confirm"], uid).await;
    shop::order_in(s, &token, id, "authorized").await;
    assert!(cab.wait_unlocked(1, EVENTUALLY).await, "open reached the cabinet");
    cab.open_door(1).await.expect("door opens");
    shop::order_in(s, &token, id, "door_open").await;
    cab.take(0, 2).expect("take colas");
    cab.take(1, 1).expect("take chips");
    tokio::time::sleep(Duration::from_millis(300)).await;
    cab.close_door(1).await.expect("door closes");
    let o = shop::order_in(s, &token, id, "paid").await;
    assert_eq!(o["total_fen"], 2 * 350 + 600, "{o}");
    assert_eq!(o["paid_fen"], 2 * 350 + 600, "{o}");
    let lines: Vec<(String, i64)> = o["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| (l["lane"].as_str().unwrap_or_default().to_string(), l["qty"].as_i64().unwrap_or(0)))
        .collect();
    assert_eq!(lines, [("A1".to_string(), 2), ("A2".to_string(), 1)], "{o}");
    assert!(o["before_g"]["A1"].as_f64().is_some() && o["after_g"]["A1"].as_f64().is_some(), "{o}");
    // The readings the settlement judged are kept with the session, whatever befalls the weight log.
    let t = s.ops_login(Role::Operator).await;
    let sessions = ok(s, "GET", &format!("/ops/cabinets/{sn}/sessions"), &t, None).await;
    let purchase = sessions["recent"]
        .as_array()
        .or_else(|| sessions["sessions"].as_array())
        .and_then(|all| all.iter().find(|x| x["kind"] == "purchase"))
        .cloned()
        .unwrap_or_else(|| panic!("the purchase session: {sessions}"));
    let evidence: serde_json::Value =
        serde_json::from_str(purchase["evidence"].as_str().expect("evidence")).expect("evidence is JSON");
    for lane in ["A1", "A2", "A3"] {
        let readings = evidence[lane].as_array().map(Vec::len).unwrap_or(0);
        assert!(readings >= 3, "{lane}: {readings} readings in {evidence}");
    }
    assert_eq!(
        shop::book_stock(s, sn).await,
        [("A1".to_string(), 4), ("A2".to_string(), 7), ("A3".to_string(), 5)],
        "book stock follows the sale"
    );
    let ledger = s.heft.services.db.run({
        let sn = sn.to_string();
        move |c| heft::db::stock::ledger(c, &sn)
    });
    let ledger = ledger.await.expect("ledger");
    let sales: Vec<(String, i32, &str)> =
        ledger.iter().map(|r| (r.lane.clone(), r.delta, r.reason.as_str())).filter(|r| r.2 == "sale").collect();
    assert_eq!(sales, [("A1".to_string(), -2, "sale"), ("A2".to_string(), -1, "sale")]);
    assert!(ledger.iter().all(|r| r.order_id == Some(id)));
    // The platform's record agrees: paid once, this amount.
    let t = s.ops_login(Role::Operator).await;
    let p = ok(s, "GET", &format!("/ops/payments/{}", o["out_order_no"].as_str().expect("no")), &t, None).await;
    assert_eq!(p["payment"]["state"], "paid", "{p}");
    assert_eq!(p["payment"]["amount_fen"], 1300, "{p}");
    // The history lists it; the session is over and the cabinet free for the next shopper.
    let history = ok(s, "GET", "/api/v1/orders", &token, None).await;
    assert_eq!(history[0]["id"], id, "{history}");
    let next = shop::scan(s, &token, sn, channel).await;
    assert_eq!(next["order"]["status"], "created");
    cab.stop().await;
}

async fn buy_both_channels(profile: Profile) {
    let Some(s) = TestServer::start(profile, &FAST).await else { return };
    buy(&s, "BUY-W", "wechat", "o-buyer-w").await;
    buy(&s, "BUY-A", "alipay", "2088000000000001").await;
}
both_profiles!(buy_and_pay, buy_both_channels);

/// Every refusal of the scan has its own code, and leaves nothing behind.
async fn refusals(profile: Profile) {
    let Some(s) = TestServer::start(profile, &FAST).await else { return };
    let cab = shop::ready_cabinet(&s, "REF-1", shop::quiet(12)).await;
    let a = shop::shopper(&s, "wechat", "o-ref-a").await;
    let b = shop::shopper(&s, "wechat", "o-ref-b").await;
    let scan = |token: &str, sn: &str, door: u32, channel: &str| {
        let body = json!({"sn": sn, "door": door, "channel": channel});
        let token = token.to_string();
        let s = &s;
        async move { call(s, "POST", "/api/v1/orders", &token, Some(body)).await }
    };
    let refused = |r: (u16, serde_json::Value), status: u16, code: &str| {
        assert_eq!((r.0, r.1["error"].as_str()), (status, Some(code)), "{}", r.1);
        assert!(r.1["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", r.1);
    };
    refused(scan(&a, "REF-1", 9, "wechat").await, 404, "no_such_door");
    refused(scan(&a, "REF-1", 1, "alipay").await, 403, "channel_not_bound");
    refused(scan(&a, "NOPE-1", 1, "wechat").await, 404, "not_found");
    // A provisioned cabinet that is not connected.
    s.provision("REF-OFF");
    refused(scan(&a, "REF-OFF", 1, "wechat").await, 409, "cabinet_not_online");
    // A's order holds the cabinet: B is told it is busy (with the session), A that an order is open.
    let first = shop::scan(&s, &a, "REF-1", "wechat").await;
    let busy = scan(&b, "REF-1", 1, "wechat").await;
    assert_eq!(busy.1["detail"]["session"]["kind"], "purchase", "{}", busy.1);
    // What holds the cabinet, never who: another shopper's id is not this one's to see.
    assert_eq!(busy.1["detail"]["session"]["yours"], false, "{}", busy.1);
    assert!(!busy.1.to_string().contains("user:"), "{}", busy.1);
    assert!(busy.1["detail"]["session"].get("started_by").is_none(), "{}", busy.1);
    refused(busy, 409, "cabinet_busy");
    refused(scan(&a, "REF-1", 1, "wechat").await, 409, "order_open");
    // Debt and a block come from the account.
    let user_of = |token: &str| {
        let token = token.to_string();
        let s = &s;
        async move { ok(s, "GET", "/api/v1/me", &token, None).await["user_id"].as_i64().expect("user id") }
    };
    let ub = user_of(&b).await;
    let db = s.heft.services.db.clone();
    let set = |sql: String| {
        let db = db.clone();
        async move {
            db.write(move |c| {
                use diesel::RunQueryDsl;
                diesel::sql_query(sql).execute(c).map_err(heft::db::DbError::from)
            })
            .await
            .expect("update account")
        }
    };
    // A cancels: the cabinet is free again.
    let id = first["order"]["id"].as_i64().expect("id");
    let cancelled = ok(&s, "POST", &format!("/api/v1/orders/{id}/cancel"), &a, None).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    set(format!("UPDATE accounts SET debt_fen = 450 WHERE user_id = {ub}")).await;
    refused(scan(&b, "REF-1", 1, "wechat").await, 402, "unpaid_debt");
    set(format!("UPDATE accounts SET debt_fen = 0, blocked = TRUE WHERE user_id = {ub}")).await;
    refused(scan(&b, "REF-1", 1, "wechat").await, 403, "shopper_blocked");
    set(format!("UPDATE accounts SET blocked = FALSE WHERE user_id = {ub}")).await;
    let ok_now = shop::scan(&s, &b, "REF-1", "wechat").await;
    assert_eq!(ok_now["order"]["status"], "created");
    cab.stop().await;
}
both_profiles!(scan_refusals, refusals);

/// Not authorised in time: cancelled, the hold released, the cabinet free; a confirmation after
/// that never opens the door.
async fn auth_timeout(profile: Profile) {
    let mut extra = FAST.to_vec();
    extra.push(("HEFT__ORDERS__AUTH_TIMEOUT_S", "1"));
    let Some(s) = TestServer::start(profile, &extra).await else { return };
    let cab = shop::ready_cabinet(&s, "TMO-1", shop::quiet(13)).await;
    let token = shop::shopper(&s, "alipay", "2088000000000002").await;
    let scanned = shop::scan(&s, &token, "TMO-1", "alipay").await;
    let id = scanned["order"]["id"].as_i64().expect("id");
    let o = shop::order_in(&s, &token, id, "cancelled").await;
    assert_eq!(o["cancel_reason"], "auth_timeout", "{o}");
    // The cabinet is free: another scan goes through.
    let again = shop::scan(&s, &token, "TMO-1", "alipay").await;
    let again_id = again["order"]["id"].as_i64().expect("id");
    ok(&s, "POST", &format!("/api/v1/orders/{again_id}/cancel"), &token, None).await;
    // The shopper confirms the first order's page late: nothing opens.
    let _ = s
        .http
        .post(format!("{}/sim/alipay/confirm", s.sim_base()))
        .json(&json!({"orderStr": scanned["confirm"]["orderStr"], "user_id": "2088000000000002"}))
        .send()
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(shop::order(&s, &token, id).await["status"], "cancelled");
    let t = s.ops_login(Role::Operator).await;
    let commands = ok(&s, "GET", "/ops/cabinets/TMO-1/commands", &t, None).await;
    let opens = commands.to_string().matches("\"open\"").count();
    assert_eq!(opens, 0, "no open was ever sent: {commands}");
    cab.stop().await;
}
both_profiles!(not_authorised_in_time, auth_timeout);

/// Open, take nothing, close: no_purchase and the pre-authorisation released on the platform.
async fn empty_basket(profile: Profile) {
    let Some(s) = TestServer::start(profile, &FAST).await else { return };
    let cab = shop::ready_cabinet(&s, "EMP-1", shop::quiet(14)).await;
    for (channel, uid) in [("wechat", "o-empty"), ("alipay", "2088000000000003")] {
        let token = shop::shopper(&s, channel, uid).await;
        let id = shop::open_visit(&s, &cab, &token, channel, uid).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        cab.close_door(1).await.expect("close");
        let o = shop::order_in(&s, &token, id, "no_purchase").await;
        assert_eq!(o["total_fen"], 0, "{o}");
        let no = o["out_order_no"].as_str().expect("no").to_string();
        let gateway = s.heft.services.payments.get(heft::pay::Channel::parse(channel).expect("channel")).clone();
        eventually("the platform released the hold", || {
            let (gateway, no) = (gateway.clone(), no.clone());
            async move { matches!(gateway.query(&no, None).await, Ok(heft::pay::PlatformState::Cancelled)).then_some(()) }
        })
        .await;
    }
    assert_eq!(
        shop::book_stock(&s, "EMP-1").await,
        [("A1".to_string(), 6), ("A2".to_string(), 8), ("A3".to_string(), 5)]
    );
    cab.stop().await;
}
both_profiles!(nothing_taken, empty_basket);

/// Authorised, but the shopper never opens the door: `open` is sent again once, then the order is
/// cancelled and the hold released.
async fn door_never_opens(profile: Profile) {
    let mut extra = FAST.to_vec();
    extra.extend([
        ("HEFT__ORDERS__UNLOCK_S", "1"),
        ("HEFT__ORDERS__OPEN_CHECK_S", "2"),
        ("HEFT__PROTOCOL__COMMAND_TIMEOUT_MS", "300"),
    ]);
    let Some(s) = TestServer::start(profile, &extra).await else { return };
    let cab = shop::ready_cabinet(&s, "NOP-1", shop::quiet(15)).await;
    let token = shop::shopper(&s, "wechat", "o-never").await;
    let scanned = shop::scan(&s, &token, "NOP-1", "wechat").await;
    let id = scanned["order"]["id"].as_i64().expect("id");
    shop::confirm(&s, "wechat", &scanned["confirm"], "o-never").await;
    shop::order_in(&s, &token, id, "authorized").await;
    // `open` is on its way: neither the shopper nor an operator can end it now.
    let (status, body) = call(&s, "POST", &format!("/api/v1/orders/{id}/cancel"), &token, None).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("not_cancellable")), "{body}");
    let m = s.ops_login(Role::Maintainer).await;
    let (status, body) = call(&s, "DELETE", "/ops/cabinets/NOP-1/session", &m, None).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("purchase_in_progress")), "{body}");
    let o = shop::order_in(&s, &token, id, "cancelled").await;
    assert_eq!(o["cancel_reason"], "door_never_opened", "{o}");
    let t = s.ops_login(Role::Operator).await;
    let commands = ok(&s, "GET", "/ops/cabinets/NOP-1/commands", &t, None).await;
    assert_eq!(commands.to_string().matches("\"open\"").count(), 2, "open sent twice: {commands}");
    // Free again.
    shop::scan(&s, &token, "NOP-1", "wechat").await;
    cab.stop().await;
}
both_profiles!(door_not_opened, door_never_opens);

/// The first charge does not go through, and the amount is owed (the shopper cannot shop again
/// meanwhile); then it does, once, and the debt is gone. Alipay refuses the `trade.pay` and
/// accepts its retry; WeChat accepts the charge but cannot collect it for a while: past
/// `orders.collect_grace_s` the order is `payment_failed` too, until WeChat collects.
async fn failed_then_paid(profile: Profile) {
    let mut extra = FAST.to_vec();
    extra.extend([("HEFT__ORDERS__CAPTURE_RETRY_S", "1"), ("HEFT__ORDERS__COLLECT_GRACE_S", "1")]);
    let Some(s) = TestServer::start(profile, &extra).await else { return };
    for (sn, channel, uid, seed, recover_ms) in
        [("FTS-1", "alipay", "2088000000000004", 16, 500), ("CLT-1", "wechat", "o-late-pay", 27, 4000)]
    {
        let cab = shop::ready_cabinet(&s, sn, shop::quiet(seed)).await;
        let token = shop::shopper(&s, channel, uid).await;
        shop::knobs(&s, json!({"fail_then_succeed": 1, "recover_ms": recover_ms})).await;
        let id = shop::open_visit(&s, &cab, &token, channel, uid).await;
        cab.take(2, 1).expect("take water");
        tokio::time::sleep(Duration::from_millis(300)).await;
        cab.close_door(1).await.expect("close");
        let failed = shop::order_in(&s, &token, id, "payment_failed").await;
        assert_eq!(failed["debt_fen"], 200, "{failed}");
        let me = ok(&s, "GET", "/api/v1/me", &token, None).await;
        assert_eq!(me["debt_fen"], 200, "{me}");
        let (status, body) =
            call(&s, "POST", "/api/v1/orders", &token, Some(json!({"sn": sn, "door": 1, "channel": channel}))).await;
        assert_eq!((status, body["error"].as_str()), (402, Some("unpaid_debt")), "no new purchase while owing: {body}");
        let paid = shop::order_in(&s, &token, id, "paid").await;
        assert_eq!((paid["paid_fen"].as_i64(), paid["debt_fen"].as_i64()), (Some(200), Some(0)), "{paid}");
        let me = ok(&s, "GET", "/api/v1/me", &token, None).await;
        assert_eq!(me["debt_fen"], 0, "{me}");
        let t = s.ops_login(Role::Operator).await;
        let p = ok(&s, "GET", &format!("/ops/payments/{}", paid["out_order_no"].as_str().expect("no")), &t, None).await;
        assert_eq!(
            (p["payment"]["state"].as_str(), p["payment"]["amount_fen"].as_i64()),
            (Some("paid"), Some(200)),
            "{p}"
        );
        cab.stop().await;
    }
}
both_profiles!(charge_fails_then_succeeds, failed_then_paid);

/// The shopper cancels and then confirms on the platform's page anyway (the platform cannot be
/// reached to cancel in between): the confirmation is stored as `release_needed`, the door never
/// opens, and the hold is released once the platform answers again.
async fn confirmed_after_cancel(profile: Profile) {
    let Some(s) = TestServer::start(profile, &FAST).await else { return };
    let cab = shop::ready_cabinet(&s, "LATE-1", shop::quiet(17)).await;
    let uid = "o-late";
    let token = shop::shopper(&s, "wechat", uid).await;
    let scanned = shop::scan(&s, &token, "LATE-1", "wechat").await;
    let id = scanned["order"]["id"].as_i64().expect("id");
    shop::knobs(&s, json!({"server_error": 1000})).await;
    let cancelled = ok(&s, "POST", &format!("/api/v1/orders/{id}/cancel"), &token, None).await;
    assert_eq!(cancelled["status"], "cancelled");
    shop::confirm(&s, "wechat", &scanned["confirm"], uid).await;
    let t = s.ops_login(Role::Operator).await;
    let no = scanned["order"]["out_order_no"].as_str().expect("no").to_string();
    let p = eventually("the late confirmation is stored", || async {
        let p = ok(&s, "GET", &format!("/ops/payments/{no}"), &t, None).await;
        p["events"].as_array().is_some_and(|e| e.iter().any(|e| e["outcome"] == "release_needed")).then_some(p)
    })
    .await;
    assert_eq!(p["payment"]["state"], "cancelled", "{p}");
    shop::knobs(&s, json!({})).await;
    let gateway = s.heft.services.payments.wechat.clone();
    eventually("the platform released the hold", || {
        let (gateway, no) = (gateway.clone(), no.clone());
        async move { matches!(gateway.query(&no, None).await, Ok(heft::pay::PlatformState::Cancelled)).then_some(()) }
    })
    .await;
    assert_eq!(shop::order(&s, &token, id).await["status"], "cancelled");
    let commands = ok(&s, "GET", "/ops/cabinets/LATE-1/commands", &t, None).await;
    assert_eq!(commands.to_string().matches("\"open\"").count(), 0, "the door never opened: {commands}");
    cab.stop().await;
}
both_profiles!(confirmation_after_cancel, confirmed_after_cancel);

/// Weights that add up to no whole number of units: the order goes to review with its trace; a
/// person sets the lines and it is charged. A shopper's appeal opens a case that can be dismissed.
async fn review_and_appeal(profile: Profile) {
    let Some(s) = TestServer::start(profile, &FAST).await else { return };
    let cab = shop::ready_cabinet(&s, "REV-1", shop::quiet(18)).await;
    let uid = "2088000000000005";
    let token = shop::shopper(&s, "alipay", uid).await;
    let id = shop::open_visit(&s, &cab, &token, "alipay", uid).await;
    cab.take(0, 1).expect("take a cola");
    cab.place_grams(0, 120.0).expect("leave something on the lane");
    tokio::time::sleep(Duration::from_millis(300)).await;
    cab.close_door(1).await.expect("close");
    let o = shop::order_in(&s, &token, id, "review").await;
    assert!(o["total_fen"].is_null(), "nothing charged yet: {o}");
    let t = s.ops_login(Role::Operator).await;
    let cases = ok(&s, "GET", "/ops/reviews", &t, None).await;
    let case = cases["cases"].as_array().expect("cases").iter().find(|c| c["order_id"] == id).expect("a case").clone();
    assert_eq!(case["kind"], "weights", "{case}");
    let case_id = case["id"].as_i64().expect("case id");
    // The trace is written by the batching weight log: it arrives within its flush interval.
    let detail = eventually("the session's weight trace", || async {
        let d = ok(&s, "GET", &format!("/ops/reviews/{case_id}"), &t, None).await;
        let kinds: Vec<&str> =
            d["trace"].as_array().map(|t| t.iter().filter_map(|r| r["kind"].as_str()).collect()).unwrap_or_default();
        (kinds.contains(&"open") && kinds.contains(&"after_close")).then_some(d)
    })
    .await;
    assert_eq!(detail["case"]["reasons"]["reasons"][0]["reason"], "residue", "{detail}");
    let resolved = ok(
        &s,
        "POST",
        &format!("/ops/reviews/{case_id}/resolve"),
        &t,
        Some(json!({"decision": "charge", "lines": [{"lane": "A1", "qty": 1}], "note": "one cola and a lost glove"})),
    )
    .await;
    assert_eq!(resolved["total_fen"], 350, "{resolved}");
    let paid = shop::order_in(&s, &token, id, "paid").await;
    assert_eq!(paid["paid_fen"], 350);
    let (status, again) =
        call(&s, "POST", &format!("/ops/reviews/{case_id}/resolve"), &t, Some(json!({"decision": "dismiss"}))).await;
    assert_eq!((status, again["error"].as_str()), (409, Some("already_resolved")), "{again}");
    assert_eq!(shop::book_stock(&s, "REV-1").await[0], ("A1".to_string(), 5), "the reviewed sale left stock");
    // The shopper disagrees: an appeal, which a person dismisses.
    let appeal =
        ok(&s, "POST", &format!("/api/v1/orders/{id}/appeal"), &token, Some(json!({"reason": "I took nothing"}))).await;
    let appeal_id = appeal["case_id"].as_i64().expect("case id");
    let dismissed = ok(
        &s,
        "POST",
        &format!("/ops/reviews/{appeal_id}/resolve"),
        &t,
        Some(json!({"decision": "dismiss", "note": "video shows a cola"})),
    )
    .await;
    assert_eq!(dismissed["status"], "paid");
    cab.stop().await;
}
both_profiles!(review_queue, review_and_appeal);

/// A paid shopper appeals ("I took one cola, not two"); a person corrects the basket: the
/// difference is refunded on the platform, once, the cola goes back into book stock, and the
/// platform's bill shows the refund.
async fn appeal_refunded(profile: Profile) {
    let Some(s) = TestServer::start(profile, &FAST).await else { return };
    let t = s.ops_login(Role::Operator).await;
    for (sn, channel, uid, seed) in [("RFD-W", "wechat", "o-refund", 28), ("RFD-A", "alipay", "2088000000000010", 29)] {
        let cab = shop::ready_cabinet(&s, sn, shop::quiet(seed)).await;
        let token = shop::shopper(&s, channel, uid).await;
        let id = shop::open_visit(&s, &cab, &token, channel, uid).await;
        cab.take(0, 2).expect("two colas");
        cab.take(1, 1).expect("chips");
        tokio::time::sleep(Duration::from_millis(300)).await;
        cab.close_door(1).await.expect("close");
        let paid = shop::order_in(&s, &token, id, "paid").await;
        assert_eq!(paid["paid_fen"], 1300, "{paid}");
        let appeal = ok(
            &s,
            "POST",
            &format!("/api/v1/orders/{id}/appeal"),
            &token,
            Some(json!({"reason": "我只拿了一瓶可乐", "claimed": {"A1": 1, "A2": 1}})),
        )
        .await;
        let case = appeal["case_id"].as_i64().expect("case");
        let resolve = format!("/ops/reviews/{case}/resolve");
        // Bad corrections are refused and change nothing.
        for (lines, why) in [
            (json!([{"lane": "A1", "qty": 1}, {"lane": "A1", "qty": 1}]), "twice"),
            (json!([{"lane": "A1", "qty": 99}]), "holds at most"),
            (json!([{"lane": "Z9", "qty": 1}]), "has no lane Z9"),
        ] {
            let (status, body) =
                call(&s, "POST", &resolve, &t, Some(json!({"decision": "refund", "lines": lines}))).await;
            assert_eq!((status, body["error"].as_str()), (409, Some("not_resolvable")), "{body}");
            assert!(body["message"].as_str().is_some_and(|m| m.contains(why)), "{body}");
        }
        let (status, body) = call(&s, "POST", &resolve, &t, Some(json!({"decision": "charge", "lines": []}))).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (409, Some("not_resolvable")),
            "a paid order is not charged again: {body}"
        );
        let corrected = ok(
            &s,
            "POST",
            &resolve,
            &t,
            Some(json!({"decision": "refund", "lines": [{"lane": "A1", "qty": 1}, {"lane": "A2", "qty": 1}], "note": "video: one cola"})),
        )
        .await;
        assert_eq!(
            (corrected["total_fen"].as_i64(), corrected["debt_fen"].as_i64()),
            (Some(950), Some(0)),
            "{corrected}"
        );
        let refunded = eventually("the refund went through", || async {
            let o = shop::order(&s, &token, id).await;
            (o["refunds"][0]["status"] == "succeeded").then_some(o)
        })
        .await;
        assert_eq!(refunded["refunded_fen"], 350, "{refunded}");
        assert_eq!(refunded["refunds"].as_array().map(Vec::len), Some(1), "refunded once: {refunded}");
        assert_eq!(refunded["status"], "paid");
        assert_eq!(shop::book_stock(&s, sn).await[0], ("A1".to_string(), 5), "the cola is back on the shelf");
        // The platform's own books: the day's bill has the payment and the refund.
        let gateway = s.heft.services.payments.get(heft::pay::Channel::parse(channel).expect("channel")).clone();
        let today = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();
        // Today's bill is out tomorrow morning: move the platforms' clock there.
        s.platforms_next_morning().await;
        let bill = gateway.download_bill(today).await.expect("bill");
        let no = paid["out_order_no"].as_str().expect("no").to_string();
        let txn = eventually("the payment in the bill", || async {
            let p = ok(&s, "GET", &format!("/ops/payments/{no}"), &t, None).await;
            p["payment"]["transaction_id"].as_str().map(str::to_string)
        })
        .await;
        let mine: Vec<i64> = bill.rows.iter().filter(|r| r.transaction_id == txn).map(|r| r.amount_fen).collect();
        assert_eq!(mine, [1300, -350], "{bill:?}");
        cab.stop().await;
    }
}
both_profiles!(appeal_corrected_and_refunded, appeal_refunded);

/// The platform refuses a refund (the merchant's balance): the refund is `failed` and operators
/// get a critical alert naming it; sent again, it goes through, once. A platform that cannot be
/// reached for a while only delays a refund.
async fn refund_refused(profile: Profile) {
    let Some(s) = TestServer::start(profile, &FAST).await else { return };
    let t = s.ops_login(Role::Operator).await;
    let cab = shop::ready_cabinet(&s, "RFX-1", shop::quiet(30)).await;
    let token = shop::shopper(&s, "wechat", "o-refused").await;
    let mut ids = Vec::new();
    for knobs in [json!({"decline": 1}), json!({"server_error": 2})] {
        let id = shop::open_visit(&s, &cab, &token, "wechat", "o-refused").await;
        cab.take(0, 2).expect("two colas");
        tokio::time::sleep(Duration::from_millis(300)).await;
        cab.close_door(1).await.expect("close");
        shop::order_in(&s, &token, id, "paid").await;
        let appeal =
            ok(&s, "POST", &format!("/api/v1/orders/{id}/appeal"), &token, Some(json!({"reason": "一瓶"}))).await;
        shop::knobs(&s, knobs).await;
        let lines = json!([{"lane": "A1", "qty": 1}]);
        ok(
            &s,
            "POST",
            &format!("/ops/reviews/{}/resolve", appeal["case_id"]),
            &t,
            Some(json!({"decision": "refund", "lines": lines})),
        )
        .await;
        // Ended before the next order, so no other call of the platform takes the knob.
        eventually("the refund ended", || async {
            let o = shop::order(&s, &token, id).await;
            matches!(o["refunds"][0]["status"].as_str(), Some("failed" | "succeeded")).then_some(())
        })
        .await;
        ids.push(id);
    }
    let failed = shop::order(&s, &token, ids[0]).await;
    assert_eq!(failed["refunds"][0]["status"], "failed", "{failed}");
    assert_eq!(failed["refunded_fen"], 0, "{failed}");
    let alert = eventually("the refund alert", || async {
        s.alerts("code=refund_failed").await.into_iter().find(|a| a["sn"] == "RFX-1")
    })
    .await;
    assert_eq!(alert["severity"], "critical");
    assert!(
        alert["message"]
            .as_str()
            .is_some_and(|m| m.contains(failed["refunds"][0]["out_refund_no"].as_str().unwrap_or("?"))),
        "{alert}"
    );
    // Operators see it, and send it again once the balance is topped up: given back once.
    let no = failed["refunds"][0]["out_refund_no"].as_str().expect("no").to_string();
    let listed = ok(&s, "GET", "/ops/refunds?status=failed", &t, None).await;
    assert!(listed["refunds"].as_array().is_some_and(|r| r.iter().any(|r| r["out_refund_no"] == no)), "{listed}");
    let retried = ok(&s, "POST", &format!("/ops/refunds/{no}/retry"), &t, None).await;
    assert_eq!(retried["status"], "requested", "{retried}");
    let back = eventually("the retried refund went through", || async {
        let o = shop::order(&s, &token, ids[0]).await;
        (o["refunds"][0]["status"] == "succeeded").then_some(o)
    })
    .await;
    assert_eq!(
        (back["refunded_fen"].as_i64(), back["refunds"].as_array().map(Vec::len)),
        (Some(350), Some(1)),
        "{back}"
    );
    let (status, again) = call(&s, "POST", &format!("/ops/refunds/{no}/retry"), &t, None).await;
    assert_eq!((status, again["error"].as_str()), (409, Some("not_failed")), "{again}");
    let delayed = shop::order(&s, &token, ids[1]).await;
    assert_eq!(delayed["refunds"][0]["status"], "succeeded", "{delayed}");
    assert_eq!(delayed["refunded_fen"], 350, "{delayed}");
    cab.stop().await;
}
both_profiles!(refund_refused_or_delayed, refund_refused);

/// Sales take a lane under its threshold: a restock task says what to bring; a restocker opens
/// the door, fills the lane, and the task closes with what the weight says was added.
/// A restock whose door is never opened ends by itself and gives the task back. Maintenance opens
/// a door with no sale and flags what moved.
async fn restock_and_maintenance(profile: Profile) {
    let mut extra = FAST.to_vec();
    extra.extend([
        ("HEFT__ORDERS__UNLOCK_S", "1"),
        ("HEFT__ORDERS__OPEN_CHECK_S", "3"),
        ("HEFT__PROTOCOL__COMMAND_TIMEOUT_MS", "300"),
    ]);
    let Some(s) = TestServer::start(profile, &extra).await else { return };
    let cab = shop::ready_cabinet(&s, "RST-1", shop::quiet(19)).await;
    let uid = "o-restock";
    let token = shop::shopper(&s, "wechat", uid).await;
    let id = shop::open_visit(&s, &cab, &token, "wechat", uid).await;
    cab.take(0, 4).expect("four colas: A1 from 6 to 2, its threshold");
    tokio::time::sleep(Duration::from_millis(300)).await;
    cab.close_door(1).await.expect("close");
    shop::order_in(&s, &token, id, "paid").await;
    let t = s.ops_login(Role::Restocker).await;
    let task = eventually("a restock task", || async {
        let v = ok(&s, "GET", "/ops/restock-tasks?sn=RST-1&status=open", &t, None).await;
        v["tasks"].as_array().and_then(|a| a.first().cloned())
    })
    .await;
    assert_eq!(task["wanted"][0]["lane"], "A1", "{task}");
    assert_eq!(task["wanted"][0]["qty"], 8, "fill to capacity 10: {task}");
    assert!(s.alerts("code=restock_needed").await.iter().any(|a| a["sn"] == "RST-1"));
    // The restocker is called away: the door unlocks and nobody opens it.
    let abandoned = ok(&s, "POST", "/ops/cabinets/RST-1/restock", &t, Some(json!({"door": 1}))).await;
    assert_eq!(abandoned["task_id"], task["id"], "{abandoned}");
    let session = abandoned["session"]["id"].clone();
    let ended = eventually("the unopened restock ends", || async {
        let v = ok(&s, "GET", "/ops/cabinets/RST-1/sessions", &t, None).await;
        v["recent"].as_array().and_then(|a| a.iter().find(|x| x["id"] == session && !x["ended_at"].is_null()).cloned())
    })
    .await;
    assert_eq!(ended["outcome"], "cancelled", "{ended}");
    let again = ok(&s, "GET", &format!("/ops/restock-tasks/{}", task["id"]), &t, None).await;
    assert_eq!(again["status"], "open", "the task waits for the next restocker: {again}");
    let started = ok(&s, "POST", "/ops/cabinets/RST-1/restock", &t, Some(json!({"door": 1}))).await;
    assert_eq!(started["task_id"], task["id"], "{started}");
    shop::settle_readings(&cab).await;
    cab.open_door(1).await.expect("open");
    cab.put(0, 7).expect("seven colas, one short of the task");
    tokio::time::sleep(Duration::from_millis(300)).await;
    cab.close_door(1).await.expect("close");
    let task_id = task["id"].as_i64().expect("task id");
    let done = eventually("the task is done", || async {
        let v = ok(&s, "GET", &format!("/ops/restock-tasks/{task_id}"), &t, None).await;
        (v["status"] == "done").then_some(v)
    })
    .await;
    assert_eq!(done["added"]["added"][0]["qty"], 7, "what was really added: {done}");
    assert_eq!(shop::book_stock(&s, "RST-1").await[0], ("A1".to_string(), 9));
    // Maintenance: something left on A2 is flagged, stock untouched.
    let m = s.ops_login(Role::Maintainer).await;
    eventually("the cabinet is free", || async {
        let (status, _) = call(&s, "POST", "/ops/cabinets/RST-1/maintenance", &m, Some(json!({"door": 1}))).await;
        (status == 201).then_some(())
    })
    .await;
    shop::settle_readings(&cab).await;
    cab.open_door(1).await.expect("open");
    cab.place_grams(1, 40.0).expect("a tool left on A2");
    tokio::time::sleep(Duration::from_millis(300)).await;
    cab.close_door(1).await.expect("close");
    let alert = eventually("maintenance change flagged", || async {
        s.alerts("code=maintenance_weight_change").await.into_iter().find(|a| a["sn"] == "RST-1")
    })
    .await;
    assert!(alert["message"].as_str().is_some_and(|m| m.contains("A2")), "{alert}");
    assert_eq!(shop::book_stock(&s, "RST-1").await[1], ("A2".to_string(), 8));
    cab.stop().await;
}
both_profiles!(restock_fills_lanes, restock_and_maintenance);

/// The cabinet's actor crashes while the door is open: the new actor takes the purchase up from
/// the database and settles it when the door closes.
async fn actor_crash_mid_purchase(profile: Profile) {
    let Some(s) = TestServer::start(profile, &FAST).await else { return };
    let cab = shop::ready_cabinet(&s, "CRS-1", shop::quiet(20)).await;
    let uid = "o-crash";
    let token = shop::shopper(&s, "wechat", uid).await;
    let id = shop::open_visit(&s, &cab, &token, "wechat", uid).await;
    cab.take(1, 2).expect("two bags of chips");
    let t = s.ops_login(Role::Operator).await;
    let weighs = |commands: serde_json::Value| -> Vec<serde_json::Value> {
        commands["commands"].as_array().expect("commands").iter().filter(|c| c["kind"] == "weigh").cloned().collect()
    };
    // The scan itself may have asked for weights, when the lanes were not yet known precisely.
    let before_crash = weighs(ok(&s, "GET", "/ops/cabinets/CRS-1/commands", &t, None).await).len();
    assert!(s.heft.crash_cabinet("CRS-1").await);
    // The new actor asks the cabinet to log in again; then the shopper closes the door.
    eventually("the cabinet logged in again", || async {
        s.heft.inspect("CRS-1").await.filter(|v| v.logged_in && v.door_session.is_some()).map(|_| ())
    })
    .await;
    cab.close_door(1).await.expect("close");
    let o = shop::order_in(&s, &token, id, "paid").await;
    assert_eq!(o["total_fen"], 1200, "{o}");
    // The actor that took the session up asked for weights at once (`weigh`), not at the closed
    // cadence, and the cabinet carried it out.
    let after_crash = weighs(ok(&s, "GET", "/ops/cabinets/CRS-1/commands", &t, None).await);
    assert_eq!(after_crash.len(), before_crash + 1, "{after_crash:?}");
    assert!(after_crash.iter().all(|c| c["status"] == "acked"), "{after_crash:?}");
    cab.stop().await;
}
both_profiles!(crash_mid_purchase, actor_crash_mid_purchase);

/// The actor crashes after the authorisation, before the door opens: the new one takes the
/// purchase up with the weights cached at the authorisation (`heft:order:{id}`), the shopper opens,
/// takes and closes, and is charged exactly; the cached order is gone once the session ends.
async fn actor_crash_before_the_door_opens(profile: Profile) {
    let Some(s) = TestServer::start(profile, &FAST).await else { return };
    let cab = shop::ready_cabinet(&s, "CRO-1", shop::quiet(31)).await;
    let uid = "o-crash-open";
    let token = shop::shopper(&s, "wechat", uid).await;
    let scanned = shop::scan(&s, &token, "CRO-1", "wechat").await;
    let id = scanned["order"]["id"].as_i64().expect("id");
    shop::confirm(&s, "wechat", &scanned["confirm"], uid).await;
    shop::order_in(&s, &token, id, "authorized").await;
    let cache = s.heft.services.cache.clone();
    let cached = eventually("the order cached with its weights", || async {
        cache.order_get(id).await.expect("cache").and_then(|v| serde_json::from_str::<serde_json::Value>(&v).ok())
    })
    .await;
    for lane in ["A1", "A2", "A3"] {
        assert!(cached["before_g"][lane].as_f64().is_some(), "{lane} in {cached}");
    }
    assert!(s.heft.crash_cabinet("CRO-1").await);
    eventually("the purchase taken up after a new login", || async {
        s.heft
            .inspect("CRO-1")
            .await
            .filter(|v| v.logged_in && v.door_session.as_ref().is_some_and(|d| d.phase == "opening"))
    })
    .await;
    cab.open_door(1).await.expect("open");
    shop::order_in(&s, &token, id, "door_open").await;
    cab.take(0, 1).expect("a cola");
    cab.take(2, 1).expect("a water");
    tokio::time::sleep(Duration::from_millis(300)).await;
    cab.close_door(1).await.expect("close");
    let o = shop::order_in(&s, &token, id, "paid").await;
    assert_eq!(o["total_fen"], 350 + 200, "{o}");
    eventually("the cached order dropped", || async {
        cache.order_get(id).await.expect("cache").is_none().then_some(())
    })
    .await;
    cab.stop().await;
}
both_profiles!(crash_before_door_opens, actor_crash_before_the_door_opens);

/// A restock is under way when the cabinet's actor crashes: the new actor takes the session up
/// with the weights it started from, and what the restocker put in is counted when the door
/// closes. A maintenance whose `open` the cabinet refuses ends at once, freeing the cabinet.
async fn door_sessions_survive(profile: Profile) {
    let Some(s) = TestServer::start(profile, &FAST).await else { return };
    let cab = shop::ready_cabinet(&s, "RSM-1", shop::quiet(32)).await;
    let t = s.ops_login(Role::Restocker).await;
    let started = ok(&s, "POST", "/ops/cabinets/RSM-1/restock", &t, Some(json!({"door": 1}))).await;
    let session = started["session"]["id"].clone();
    assert!(cab.wait_unlocked(1, Duration::from_secs(10)).await, "open reached the cabinet");
    cab.open_door(1).await.expect("open");
    cab.put(0, 2).expect("two colas");
    assert!(s.heft.crash_cabinet("RSM-1").await);
    eventually("the restock taken up after a new login", || async {
        s.heft.inspect("RSM-1").await.filter(|v| v.logged_in && v.door_session.is_some())
    })
    .await;
    cab.close_door(1).await.expect("close");
    let ended = eventually("the restock ended", || async {
        let v = ok(&s, "GET", "/ops/cabinets/RSM-1/sessions", &t, None).await;
        v["recent"].as_array().and_then(|a| a.iter().find(|x| x["id"] == session && !x["ended_at"].is_null()).cloned())
    })
    .await;
    assert_eq!(ended["outcome"], "done", "{ended}");
    assert_eq!(shop::book_stock(&s, "RSM-1").await[0], ("A1".to_string(), 8), "six and the two put in: {ended}");
    // The cabinet refuses to unlock for a maintainer: the session does not hold the cabinet.
    cab.set_refuse(true);
    let m = s.ops_login(Role::Maintainer).await;
    let refused = ok(&s, "POST", "/ops/cabinets/RSM-1/maintenance", &m, Some(json!({"door": 1}))).await;
    let session = refused["session"]["id"].clone();
    let ended = eventually("the refused maintenance ended", || async {
        let v = ok(&s, "GET", "/ops/cabinets/RSM-1/sessions", &m, None).await;
        v["recent"].as_array().and_then(|a| a.iter().find(|x| x["id"] == session && !x["ended_at"].is_null()).cloned())
    })
    .await;
    assert_eq!(ended["outcome"], "cancelled", "{ended}");
    cab.set_refuse(false);
    cab.stop().await;
}
both_profiles!(restock_survives_a_crash, door_sessions_survive);

/// Capture messages delivered more than once for one order (a redelivery, a retry beside a
/// callback's capture) leave one chain of later rounds and one debt. Embedded only: there the
/// later rounds wait in the outbox, where they can be counted (RabbitMQ parks them in its queues).
#[actix_rt::test]
async fn duplicate_captures_leave_one_chain() {
    let mut extra = FAST.to_vec();
    extra.push(("HEFT__ORDERS__CAPTURE_RETRY_S", "300"));
    let Some(s) = TestServer::start(Profile::Embedded, &extra).await else { return };
    let cab = shop::ready_cabinet(&s, "DUP-1", shop::quiet(33)).await;
    let uid = "2088000000000011";
    let token = shop::shopper(&s, "alipay", uid).await;
    // Alipay refuses every trade.pay from now on.
    shop::knobs(&s, json!({"decline": 1000})).await;
    let id = shop::open_visit(&s, &cab, &token, "alipay", uid).await;
    cab.take(0, 1).expect("a cola");
    tokio::time::sleep(Duration::from_millis(300)).await;
    cab.close_door(1).await.expect("close");
    shop::order_in(&s, &token, id, "payment_failed").await;
    let t = s.ops_login(Role::Operator).await;
    let captures = || async {
        let v = ok(&s, "GET", "/ops/messages?status=pending&limit=500", &t, None).await;
        let mine: Vec<serde_json::Value> = v["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter(|m| m["topic"] == "payment.capture" && m["payload"]["order_id"] == id)
            .map(|m| m["payload"].clone())
            .collect();
        mine
    };
    assert_eq!(captures().await, [json!({"order_id": id, "round": 1})], "the next round, once");
    for _ in 0..2 {
        let db = s.heft.services.db.clone();
        db.write(move |c| heft::mq::topics::Capture { order_id: id, round: 0 }.enqueue(c)).await.expect("a copy");
        s.heft.services.relay.wake();
        eventually("the copy handled", || async {
            captures().await.iter().all(|p| p.get("round").is_some()).then_some(())
        })
        .await;
    }
    assert_eq!(captures().await, [json!({"order_id": id, "round": 1})], "still one chain");
    let me = ok(&s, "GET", "/api/v1/me", &token, None).await;
    assert_eq!(me["debt_fen"], 350, "owed once: {me}");
    cab.stop().await;
}

/// The cabinet loses its connection with the door open, the shopper closes the door meanwhile;
/// back online, the cabinet reports the door closed (protocol §8) and the purchase settles.
async fn disconnect_mid_purchase(profile: Profile) {
    let Some(s) = TestServer::start(profile, &FAST).await else { return };
    let cab = shop::ready_cabinet(&s, "DSC-1", shop::quiet(21)).await;
    let uid = "2088000000000006";
    let token = shop::shopper(&s, "alipay", uid).await;
    let id = shop::open_visit(&s, &cab, &token, "alipay", uid).await;
    cab.take(2, 1).expect("a bottle of water");
    cab.disconnect().await;
    // The door closes with nobody hearing: the handle says the frame could not be sent.
    assert!(cab.close_door(1).await.is_err());
    assert!(!cab.physical(|p| p.is_open(1)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(shop::order(&s, &token, id).await["status"], "door_open", "the session waits for the cabinet");
    cab.reconnect().await.expect("back online");
    let o = shop::order_in(&s, &token, id, "paid").await;
    assert_eq!(o["total_fen"], 200, "{o}");
    cab.stop().await;
}
both_profiles!(disconnect_mid_session, disconnect_mid_purchase);

/// The cabinet loses power with the door open; the shopper closes it during the outage. Rebooted,
/// the cabinet has forgotten the close and reports no door (protocol §8): Heft takes the silence
/// for a close, settles from the readings that follow (at the closed-door cadence) and charges.
async fn power_loss_mid_purchase(profile: Profile) {
    let mut extra = FAST.to_vec();
    extra.push(("HEFT__PROTOCOL__CLOSED_WEIGHT_S", "1"));
    let Some(s) = TestServer::start(profile, &extra).await else { return };
    let cab = shop::ready_cabinet(&s, "PWR-1", shop::quiet(24)).await;
    let uid = "o-power";
    let token = shop::shopper(&s, "wechat", uid).await;
    let id = shop::open_visit(&s, &cab, &token, "wechat", uid).await;
    cab.take(1, 1).expect("a bag of chips");
    cab.disconnect().await;
    assert!(cab.close_door(1).await.is_err(), "nobody hears the close");
    cab.physical(|p| p.lose_power());
    cab.reconnect().await.expect("back, after a reboot");
    let o = shop::order_in(&s, &token, id, "paid").await;
    assert_eq!(o["total_fen"], 600, "{o}");
    assert_eq!(shop::book_stock(&s, "PWR-1").await[1], ("A2".to_string(), 7));
    cab.stop().await;
}
both_profiles!(power_lost_mid_session, power_loss_mid_purchase);

/// The door is unlocked, then the connection drops; the shopper opens the door, takes a can and
/// closes it, all unheard. Back online the cabinet reports the door closed: Heft never saw it open,
/// but a door that moved can only have opened, so it settles from the weights taken at the
/// authorisation.
async fn opened_and_closed_offline(profile: Profile) {
    let Some(s) = TestServer::start(profile, &FAST).await else { return };
    let cab = shop::ready_cabinet(&s, "OFF-1", shop::quiet(25)).await;
    let uid = "2088000000000009";
    let token = shop::shopper(&s, "alipay", uid).await;
    let scanned = shop::scan(&s, &token, "OFF-1", "alipay").await;
    let id = scanned["order"]["id"].as_i64().expect("id");
    shop::confirm(&s, "alipay", &scanned["confirm"], uid).await;
    shop::order_in(&s, &token, id, "authorized").await;
    assert!(cab.wait_unlocked(1, Duration::from_secs(10)).await, "open reached the cabinet");
    cab.disconnect().await;
    assert!(cab.open_door(1).await.is_err());
    cab.take(0, 1).expect("a cola");
    assert!(cab.close_door(1).await.is_err());
    cab.reconnect().await.expect("back online");
    let o = shop::order_in(&s, &token, id, "paid").await;
    assert_eq!(o["total_fen"], 350, "{o}");
    assert!(o["before_g"]["A1"].as_f64().is_some(), "the weights it started from are on the order: {o}");
    cab.stop().await;
}
both_profiles!(door_moved_offline, opened_and_closed_offline);

/// A door opened while nothing holds the cabinet (forced, or a broken lock) is a critical alert.
async fn door_forced(profile: Profile) {
    let Some(s) = TestServer::start(profile, &FAST).await else { return };
    let cab = shop::ready_cabinet(&s, "FRC-1", shop::quiet(26)).await;
    cab.open_door(1).await.expect("the door is pulled open");
    let alert = eventually("the unheld door alert", || async {
        s.alerts("code=door_open_unheld").await.into_iter().find(|a| a["sn"] == "FRC-1")
    })
    .await;
    assert_eq!(alert["severity"], "critical", "{alert}");
    cab.close_door(1).await.expect("close");
    cab.stop().await;
}
both_profiles!(door_open_with_no_session, door_forced);

/// A basket worth more than the pre-authorisation holds: the platform is charged the cap, the
/// rest is debt on the order and the account, with a notice.
async fn over_the_cap(profile: Profile) {
    let mut extra = FAST.to_vec();
    extra.push(("HEFT__PAYMENTS__PREAUTH_CAP_FEN", "1000"));
    let Some(s) = TestServer::start(profile, &extra).await else { return };
    let cab = shop::ready_cabinet(&s, "CAP-1", shop::quiet(22)).await;
    for (channel, uid) in [("wechat", "o-cap"), ("alipay", "2088000000000007")] {
        let token = shop::shopper(&s, channel, uid).await;
        let id = shop::open_visit(&s, &cab, &token, channel, uid).await;
        cab.take(1, 2).expect("two bags of chips: 1200 fen");
        tokio::time::sleep(Duration::from_millis(300)).await;
        cab.close_door(1).await.expect("close");
        let o = shop::order_in(&s, &token, id, "paid").await;
        assert_eq!(
            (o["total_fen"].as_i64(), o["paid_fen"].as_i64(), o["debt_fen"].as_i64()),
            (Some(1200), Some(1000), Some(200)),
            "{o}"
        );
        assert!(o["notices"].to_string().contains("over_cap_debt"), "{o}");
        let me = ok(&s, "GET", "/api/v1/me", &token, None).await;
        assert_eq!(me["debt_fen"], 200, "{me}");
    }
    cab.stop().await;
}
both_profiles!(basket_over_the_cap, over_the_cap);

/// A door left open past `orders.door_open_alert_s`: ops get `door_open_too_long` and the order
/// a notice; closing it still settles the purchase.
async fn door_left_open(profile: Profile) {
    let mut extra = FAST.to_vec();
    extra.push(("HEFT__ORDERS__DOOR_OPEN_ALERT_S", "1"));
    let Some(s) = TestServer::start(profile, &extra).await else { return };
    let cab = shop::ready_cabinet(&s, "OPN-1", shop::quiet(23)).await;
    let uid = "o-open-long";
    let token = shop::shopper(&s, "wechat", uid).await;
    let id = shop::open_visit(&s, &cab, &token, "wechat", uid).await;
    let alert = eventually("the door-open alert", || async {
        s.alerts("code=door_open_too_long").await.into_iter().find(|a| a["sn"] == "OPN-1")
    })
    .await;
    assert!(alert["message"].as_str().is_some_and(|m| m.contains("OPN-1")), "{alert}");
    eventually("the notice on the order", || async {
        let o = shop::order(&s, &token, id).await;
        o["notices"].to_string().contains("door_open_too_long").then_some(())
    })
    .await;
    cab.take(0, 1).expect("a cola");
    cab.close_door(1).await.expect("close");
    let o = shop::order_in(&s, &token, id, "paid").await;
    assert_eq!(o["total_fen"], 350, "{o}");
    cab.stop().await;
}
both_profiles!(door_open_too_long, door_left_open);

both_profiles!(charge_of_a_forgotten_order, purchase::money::charge_of_a_forgotten_order);
both_profiles!(release_outlasts_an_outage, purchase::money::release_outlasts_an_outage);
both_profiles!(release_refused, purchase::money::release_refused);
both_profiles!(charge_stuck_on_our_side, purchase::money::charge_stuck_on_our_side);
both_profiles!(lost_callback_recovered, purchase::confirm::lost_callback_recovered);
both_profiles!(late_confirmation_opens_nothing, purchase::confirm::late_confirmation_opens_nothing);
