//! A confirmation whose callback is lost or late: asked for while the shopper waits
//! (`orders.confirm_checks_s`), and never opening the door once the shopper has likely left
//! (`orders.open_window_s`).

use std::time::Duration;

use serde_json::json;

use super::shop::{self, FAST, ok};
use crate::common::{EVENTUALLY, Profile, TestServer, eventually};
use heft::domain::operator::Role;

/// The platform never calls back. The auth timeout is two minutes away, yet the door opens
/// within seconds: Heft asked the platform while the shopper waited.
pub async fn lost_callback_recovered(profile: Profile) {
    let mut extra = FAST.to_vec();
    extra.extend([("HEFT__ORDERS__AUTH_TIMEOUT_S", "120"), ("HEFT__ORDERS__CONFIRM_CHECKS_S", "[2, 5, 9]")]);
    let Some(s) = TestServer::start(profile, &extra).await else { return };
    for (sn, channel, uid, seed) in [("LOST-W", "wechat", "o-lost", 51), ("LOST-A", "alipay", "2088000000000051", 52)] {
        let cab = shop::ready_cabinet(&s, sn, shop::quiet(seed)).await;
        let token = shop::shopper(&s, channel, uid).await;
        shop::knobs(&s, json!({"drop_callbacks": true})).await;
        let scanned = shop::scan(&s, &token, sn, channel).await;
        let id = scanned["order"]["id"].as_i64().expect("id");
        shop::confirm(&s, channel, &scanned["confirm"], uid).await;
        shop::order_in(&s, &token, id, "authorized").await;
        assert!(cab.wait_unlocked(1, EVENTUALLY).await, "the door unlocked for the waiting shopper");
        shop::knobs(&s, json!({})).await;
        cab.open_door(1).await.expect("the door opens");
        shop::order_in(&s, &token, id, "door_open").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        cab.close_door(1).await.expect("close");
        shop::order_in(&s, &token, id, "no_purchase").await;
        cab.stop().await;
    }
}

/// The confirmation's callback arrives after `orders.open_window_s`: the door stays shut, the
/// order is cancelled saying why, and the hold is given back.
pub async fn late_confirmation_opens_nothing(profile: Profile) {
    let mut extra = FAST.to_vec();
    extra.extend([("HEFT__ORDERS__OPEN_WINDOW_S", "1"), ("HEFT__ORDERS__CONFIRM_CHECKS_S", "[]")]);
    let Some(s) = TestServer::start(profile, &extra).await else { return };
    let t = s.ops_login(Role::Operator).await;
    for (sn, channel, uid, seed) in
        [("LATE-W", "wechat", "o-too-late", 53), ("LATE-A", "alipay", "2088000000000053", 54)]
    {
        let cab = shop::ready_cabinet(&s, sn, shop::quiet(seed)).await;
        let token = shop::shopper(&s, channel, uid).await;
        shop::knobs(&s, json!({"callback_delay_ms": 2500})).await;
        let scanned = shop::scan(&s, &token, sn, channel).await;
        let id = scanned["order"]["id"].as_i64().expect("id");
        let no = scanned["order"]["out_order_no"].as_str().expect("no").to_string();
        shop::confirm(&s, channel, &scanned["confirm"], uid).await;
        let o = shop::order_in(&s, &token, id, "cancelled").await;
        assert_eq!(o["cancel_reason"], "authorised_too_late", "{o}");
        assert!(o["notices"].to_string().contains("authorised_too_late"), "the shopper is told: {o}");
        shop::knobs(&s, json!({})).await;
        let gateway = s.heft.services.payments.get(heft::pay::Channel::parse(channel).expect("channel")).clone();
        eventually("the hold released", || {
            let (gateway, no) = (gateway.clone(), no.clone());
            async move {
                matches!(
                    gateway.query(&no, None).await,
                    Ok(heft::pay::PlatformState::Cancelled) | Err(heft::pay::PayError::Declined { .. })
                )
                .then_some(())
            }
        })
        .await;
        let commands = ok(&s, "GET", &format!("/ops/cabinets/{sn}/commands"), &t, None).await;
        assert_eq!(commands.to_string().matches("\"open\"").count(), 0, "the door never unlocked: {commands}");
        // The cabinet is free for the next shopper.
        let next = shop::scan(&s, &token, sn, channel).await;
        assert_eq!(next["order"]["status"], "created", "{next}");
        cab.stop().await;
    }
}
