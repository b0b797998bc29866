//! Two nodes, one fleet (production profile: PostgreSQL, Redis and RabbitMQ shared): a cabinet
//! is owned by the node it logged in on, requests that reach the other node are routed to it, and
//! a cabinet that moves to the other node mid-purchase is taken over there, with the old owner
//! fenced out.

#[macro_use]
mod common;
mod purchase {
    pub mod shop;
}

use std::time::Duration;

use common::{EVENTUALLY, Profile, TestServer, eventually};
use heft::db::{DbError, Fence};
use heft::domain::operator::Role;
use heft::sim::device::{ConnectOptions, DeviceClient};
use purchase::shop::{self, FAST, call, ok};

/// Leases renewed twice a second and lapsing after three: a lost one shows within a second.
const CLUSTER: [(&str, &str); 4] =
    [FAST[0], FAST[1], ("HEFT__CLUSTER__RENEW_EVERY_MS", "500"), ("HEFT__CLUSTER__LEASE_TTL_MS", "3000")];

async fn two_nodes() -> Option<(TestServer, TestServer)> {
    let a = TestServer::start(Profile::Production, &CLUSTER).await?;
    let b = a.another_node("node-b").await;
    Some((a, b))
}

/// Who owns the cabinet, as the cache says.
async fn owner(s: &TestServer, sn: &str) -> Option<(String, u64)> {
    s.heft.services.cache.owner(sn).await.expect("cache")
}

#[actix_rt::test]
async fn a_purchase_goes_through_whichever_node_the_shopper_reaches() {
    let Some((a, b)) = two_nodes().await else { return };
    let sn = "CAB-CL1";
    let cab = shop::ready_cabinet(&a, sn, shop::quiet(21)).await;
    assert_eq!(owner(&a, sn).await.map(|o| o.0).as_deref(), Some("node-1"));
    // Both nodes report themselves; node-1 owns the one cabinet.
    let t = b.ops_login(Role::Operator).await;
    let nodes = eventually("both nodes reported", || async {
        let n = ok(&b, "GET", "/ops/nodes", &t, None).await;
        let owned: Vec<(String, u64)> = n["nodes"]
            .as_array()?
            .iter()
            .map(|x| (x["node"].as_str().unwrap_or_default().to_string(), x["cabinets"].as_u64().unwrap_or(0)))
            .collect();
        (owned == [("node-1".to_string(), 1), ("node-b".to_string(), 0)]).then_some(n)
    })
    .await;
    assert_eq!(nodes["this"], "node-b", "{nodes}");

    // The live weights live in node-1's actor; node-b routes the request there.
    let weights = ok(&b, "GET", &format!("/ops/cabinets/{sn}/weights"), &t, None).await;
    assert_eq!(weights["logged_in"], true, "{weights}");
    assert_eq!(weights["lanes"].as_array().map(Vec::len), Some(3), "{weights}");
    let detail = ok(&b, "GET", &format!("/ops/cabinets/{sn}"), &t, None).await;
    assert_eq!(detail["connection"]["logged_in"], true, "{detail}");

    // The shopper's scan reaches node-b; the cabinet is node-1's.
    let token = shop::shopper(&a, "wechat", "o-cluster-1").await;
    let scanned = shop::scan(&b, &token, sn, "wechat").await;
    let id = scanned["order"]["id"].as_i64().expect("order id");
    shop::confirm(&a, "wechat", &scanned["confirm"], "o-cluster-1").await;
    shop::order_in(&b, &token, id, "authorized").await;
    assert!(cab.wait_unlocked(1, EVENTUALLY).await, "open reached the cabinet through its owner");
    cab.open_door(1).await.expect("door opens");
    shop::order_in(&b, &token, id, "door_open").await;
    cab.take(0, 2).expect("take colas");
    tokio::time::sleep(Duration::from_millis(300)).await;
    cab.close_door(1).await.expect("door closes");
    let o = shop::order_in(&b, &token, id, "paid").await;
    assert_eq!(o["paid_fen"], 2 * 350, "{o}");
    assert_eq!(o["total_fen"], 2 * 350, "{o}");

    // A second scan while the first shopper's session is done, refused or not, is answered by
    // the owner exactly as it would be there: here the shopper may shop again.
    let (status, again) =
        call(&b, "POST", "/api/v1/orders", &token, Some(serde_json::json!({"sn": sn, "door": 9, "channel": "wechat"})))
            .await;
    assert_eq!((status, again["error"].as_str()), (404, Some("no_such_door")), "{again}");
    cab.stop().await;
    b.stop().await;
    a.stop().await;
}

#[actix_rt::test]
async fn a_cabinet_that_moves_mid_purchase_is_taken_over_and_the_old_owner_fenced() {
    let Some((mut a, b)) = two_nodes().await else { return };
    let sn = "CAB-CL2";
    // Its first connection goes to node-1, the next to node-b (a load balancer moving it).
    a.broker = format!("{},{}", a.broker, b.broker);
    let cab = shop::ready_cabinet(&a, sn, shop::quiet(22)).await;
    let (first, old_epoch) = owner(&a, sn).await.expect("owned");
    assert_eq!(first, "node-1");

    let token = shop::shopper(&a, "alipay", "2088-cluster-2").await;
    let id = shop::open_visit(&a, &cab, &token, "alipay", "2088-cluster-2").await;
    cab.take(1, 1).expect("take chips");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The cabinet's connection drops; it lands on node-b and logs in there.
    cab.disconnect().await;
    cab.reconnect().await.expect("logs in on node-b");
    let (now, new_epoch) = owner(&b, sn).await.expect("owned");
    assert_eq!(now, "node-b");
    assert!(new_epoch > old_epoch, "{new_epoch} > {old_epoch}");
    // node-1 learns at its next renewal, and its actor stops.
    eventually("node-1's actor stopped", || async { a.heft.inspect(sn).await.is_none().then_some(()) }).await;
    let view = eventually("node-b resumed the purchase", || async {
        b.heft.inspect(sn).await.filter(|v| v.door_session.as_ref().and_then(|d| d.order_id) == Some(id))
    })
    .await;
    assert!(view.logged_in, "{view:?}");

    // node-1 can write nothing for the cabinet any more, whatever it still held in memory.
    let stale = a.heft.services.db.fenced(Fence { sn: sn.to_string(), epoch: old_epoch as i64 });
    let key = sn.to_string();
    let refused = stale
        .write(move |c| heft::db::sessions::current(c, &key).map(|_| ()))
        .await
        .expect_err("a write under the old epoch is refused");
    assert!(matches!(refused, DbError::Fenced { .. }), "{refused}");

    // The shopper closes the door; node-b settles and charges once.
    cab.close_door(1).await.expect("door closes");
    let o = shop::order_in(&b, &token, id, "paid").await;
    assert_eq!(o["paid_fen"], 600, "{o}");
    assert_eq!(
        shop::book_stock(&b, sn).await,
        [("A1".to_string(), 6), ("A2".to_string(), 7), ("A3".to_string(), 5)],
        "book stock follows the sale"
    );
    // Operators on either node reach the cabinet on node-b.
    let t = a.ops_login(Role::Operator).await;
    let weights = ok(&a, "GET", &format!("/ops/cabinets/{sn}/weights"), &t, None).await;
    assert_eq!(weights["logged_in"], true, "{weights}");
    cab.stop().await;
    b.stop().await;
    a.stop().await;
}

/// A cabinet named as owned by a node that is gone answers 503 `cabinet_unreachable` (after one
/// more look at the owner); a node that loses a cabinet's lease drops the device's connection, and
/// the device logs in again; `/readyz` reports the leases.
#[actix_rt::test]
async fn a_lost_lease_drops_the_connection_and_a_gone_owner_is_unreachable() {
    let Some((a, b)) = two_nodes().await else { return };
    let t = b.ops_login(Role::Operator).await;
    a.provision("CAB-GHOST");
    let cache = a.heft.services.cache.clone();
    cache.own("CAB-GHOST", "node-ghost", 0, 60_000).await.expect("own");
    let (status, body) = call(&b, "GET", "/ops/cabinets/CAB-GHOST/weights", &t, None).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("cabinet_unreachable")), "{body}");

    let sn = "CAB-STEAL";
    let cab = heft::sim::handle::SimCabinet::start(a.provision(sn), &a.broker, shop::quiet(23)).await.expect("logs in");
    let (_, first) = owner(&a, sn).await.expect("owned");
    let (status, ready) = call(&a, "GET", "/readyz", "", None).await;
    assert_eq!((status, &ready["checks"]["leases"]), (200, &serde_json::json!("ok")), "{ready}");
    assert_eq!(ready["checks"]["cabinets_owned"], 1, "{ready}");
    // Another node takes the lease while the device stays connected to node-1.
    let stolen = cache.own(sn, "node-b", 0, 60_000).await.expect("own");
    let reconnects = || cab.stats().reconnects.load(std::sync::atomic::Ordering::Relaxed);
    eventually("node-1 dropped the connection and the device logged in again", || async {
        let back = owner(&a, sn).await.filter(|(node, epoch)| node == "node-1" && *epoch > stolen);
        (reconnects() >= 1).then_some(back).flatten()
    })
    .await;
    assert!(stolen > first);
    assert!(a.metric("heft_leases_lost_total").await >= 1.0);
    cab.stop().await;
    b.stop().await;
    a.stop().await;
}

/// A new boot on the node that owns the cabinet keeps the epoch: the node's own writes still in
/// flight under it land. Only a login that comes from elsewhere takes a larger one.
async fn a_new_boot_on_its_owner_keeps_the_epoch(profile: Profile) {
    // No renewal round within the test: the node learns of the other owner only at the login.
    let quiet =
        [FAST[0], FAST[1], ("HEFT__CLUSTER__RENEW_EVERY_MS", "60000"), ("HEFT__CLUSTER__LEASE_TTL_MS", "180000")];
    let Some(a) = TestServer::start(profile, &quiet).await else { return };
    let sn = "CAB-REBOOT";
    let creds = a.provision(sn);
    let mut dev = DeviceClient::connect(&a.broker, &creds, 1, ConnectOptions::default()).await.expect("connects");
    assert!(dev.login(Duration::from_secs(10)).await.expect("login_ack").ok);
    let (_, first) = owner(&a, sn).await.expect("owned");
    let held = a.heft.services.db.fenced(Fence { sn: sn.to_string(), epoch: first as i64 });

    dev.boot = 2;
    assert!(dev.login(Duration::from_secs(10)).await.expect("login_ack").ok);
    assert_eq!(owner(&a, sn).await, Some(("node-1".to_string(), first)), "the same epoch");
    let key = sn.to_string();
    held.write(move |c| heft::db::sessions::current(c, &key).map(|_| ())).await.expect("a write under it lands");

    // Another node took the cabinet meanwhile (as far as the cache knows): the next login here
    // takes it back under a larger epoch.
    let stolen = a.heft.services.cache.own(sn, "node-x", 0, 60_000).await.expect("own");
    dev.boot = 3;
    assert!(dev.login(Duration::from_secs(10)).await.expect("login_ack").ok);
    let (node, now) = owner(&a, sn).await.expect("owned");
    assert_eq!(node, "node-1");
    assert!(now > stolen, "{now} > {stolen}");
    dev.disconnect().await;
    a.stop().await;
}
both_profiles!(a_new_boot_keeps_the_epoch, a_new_boot_on_its_owner_keeps_the_epoch);
