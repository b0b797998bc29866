//! The operators' live view, `/ops/live`, as a browser or a bot speaks to it
//! (docs/live-protocol.md), in both profiles: sign-in, snapshots and ordered deltas, a purchase
//! seen live, a slow reader resynced with its queue bounded, sockets closed for want of a token
//! or of an active account, and (production) a cabinet on one node seen from another.

mod common;
mod purchase {
    pub mod shop;
}

use std::time::Duration;

use common::{EVENTUALLY, Profile, TestServer};
use futures_util::{SinkExt, StreamExt};
use heft::domain::live::Change;
use heft::domain::operator::Role;
use purchase::shop::{self, FAST};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Message, http::HeaderValue};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// How a client offers its token.
enum Auth<'a> {
    /// `{"type":"auth","token":…}` as the first message.
    FirstMessage(&'a str),
    /// `Sec-WebSocket-Protocol: heft-live, <token>`, as a browser does.
    Subprotocol(&'a str),
    /// Nothing at all.
    None,
}

/// A live-view client.
struct Live {
    ws: Ws,
    /// Every message read, in order.
    seen: Vec<Value>,
}

impl Live {
    async fn connect(http_addr: std::net::SocketAddr, auth: Auth<'_>) -> Live {
        Self::connect_with(http_addr, auth, None).await
    }

    /// `recv_buffer`: a small receive buffer makes a client that stops reading push back soon.
    async fn connect_with(http_addr: std::net::SocketAddr, auth: Auth<'_>, recv_buffer: Option<u32>) -> Live {
        let mut req = format!("ws://{http_addr}/ops/live").into_client_request().expect("request");
        if let Auth::Subprotocol(token) = auth {
            let offered = HeaderValue::from_str(&format!("heft-live, {token}")).expect("header");
            req.headers_mut().insert("Sec-WebSocket-Protocol", offered);
        }
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).expect("receive buffer");
        }
        let tcp = socket.connect(http_addr).await.expect("tcp connect");
        let (ws, response) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(tcp)).await.expect("upgrade");
        if matches!(auth, Auth::Subprotocol(_)) {
            assert_eq!(response.headers().get("Sec-WebSocket-Protocol").map(|v| v.as_bytes()), Some(&b"heft-live"[..]));
        }
        let mut live = Live { ws, seen: Vec::new() };
        if let Auth::FirstMessage(token) = auth {
            live.send(json!({"type": "auth", "token": token})).await;
        }
        live
    }

    /// Connect, sign in and read the welcome.
    async fn signed_in(s: &TestServer, role: Role) -> Live {
        let token = s.ops_login(role).await;
        let mut live = Live::connect(s.heft.http_addr, Auth::FirstMessage(&token)).await;
        let welcome = live.next().await.expect("welcome");
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        assert_eq!(welcome["operator"]["role"], role.as_str(), "{welcome}");
        live
    }

    async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.expect("send");
    }

    /// The next JSON message; `Err` with the close frame's code and reason when the server
    /// closed instead.
    async fn next(&mut self) -> Result<Value, (u16, String)> {
        loop {
            let msg = tokio::time::timeout(EVENTUALLY, self.ws.next()).await.expect("a message in time");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
                    self.seen.push(v.clone());
                    return Ok(v);
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new())));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err((1006, e.to_string())),
                None => return Err((1006, "ended".into())),
            }
        }
    }

    /// Read until a message matches; it is returned.
    async fn until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + EVENTUALLY;
        loop {
            assert!(tokio::time::Instant::now() < deadline, "{what}: not seen; last: {:?}", self.seen.last());
            let v = self.next().await.unwrap_or_else(|e| panic!("{what}: closed {e:?}"));
            if pred(&v) {
                return v;
            }
        }
    }

    /// Subscribe and read its snapshot.
    async fn sub(&mut self, id: u64, topic: &str) -> Value {
        self.send(json!({"type": "sub", "id": id, "topic": topic})).await;
        self.until(&format!("snapshot of {topic}"), |v| v["type"] == "snapshot" && v["sub"] == id).await
    }

    /// The close the server sends, reading past anything before it.
    async fn closed(&mut self) -> (u16, String) {
        loop {
            if let Err(close) = self.next().await {
                return close;
            }
        }
    }
}

fn deltas<'a>(seen: &'a [Value], sub: u64, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    seen.iter().filter(move |v| v["type"] == "delta" && v["sub"] == sub && v["kind"] == kind)
}

/// Sequence numbers per subscription go up by one, snapshot first.
fn assert_in_order(seen: &[Value]) {
    let mut last: std::collections::HashMap<u64, u64> = Default::default();
    for v in seen.iter().filter(|v| v["type"] == "snapshot" || v["type"] == "delta") {
        let (sub, seq) = (v["sub"].as_u64().expect("sub"), v["seq"].as_u64().expect("seq"));
        let prev = last.insert(sub, seq).unwrap_or(0);
        assert_eq!(seq, prev + 1, "sub {sub}: seq {seq} after {prev}: {v}");
    }
}

async fn fleet_snapshot_then_deltas(profile: Profile) {
    let Some(s) = TestServer::start(profile, &FAST).await else { return };
    let sn = "LIVE-FLEET-1";
    let cab = shop::ready_cabinet(&s, sn, shop::quiet(3)).await;
    let mut live = Live::signed_in(&s, Role::Operator).await;
    let fleet = live.sub(1, "fleet").await;
    assert_eq!(fleet["seq"], 1, "{fleet}");
    let row = fleet["data"].as_array().expect("rows").iter().find(|r| r["sn"] == sn).cloned().expect("the cabinet");
    assert_eq!((row["sellable"].clone(), row["liveness"].clone()), (json!(true), json!("online")), "{row}");
    let before = row["open_alerts"].as_u64().expect("open alerts");
    let alerts = live.sub(2, "alerts").await;
    let open = alerts["data"].as_array().expect("alerts");
    assert_eq!(open.iter().filter(|a| a["sn"] == sn).count() as u64, before, "{alerts}");
    // A door opened with no session: the cabinet says so, and an alert is raised.
    cab.open_door(1).await.expect("door opens");
    live.until("the fleet row with the door open and its alert", |v| {
        v["sub"] == 1
            && v["kind"] == "cabinet"
            && v["data"]["doors_open"] == json!([1])
            && v["data"]["open_alerts"] == before + 1
    })
    .await;
    let alert = live
        .until("the alert", |v| v["sub"] == 2 && v["kind"] == "alert" && v["data"]["code"] == "door_open_unheld")
        .await;
    assert_eq!(alert["data"]["sn"], sn, "{alert}");
    cab.close_door(1).await.expect("door closes");
    live.until("the row with the door closed", |v| v["sub"] == 1 && v["data"]["doors_open"] == json!([])).await;
    // Unsubscribed: nothing more of it.
    live.send(json!({"type": "unsub", "id": 1})).await;
    live.until("unsubscribed", |v| v["type"] == "unsubscribed" && v["sub"] == 1).await;
    assert_in_order(&live.seen);
}
both_profiles!(fleet_snapshot_then_deltas, fleet_snapshot_then_deltas);

/// A reconciliation run is seen live as it starts and as it ends, with its figures; a role that
/// may not see money may not follow it.
async fn reconciliation_seen_live(profile: Profile) {
    let Some(s) = TestServer::start(profile, &FAST).await else { return };
    let mut live = Live::signed_in(&s, Role::Operator).await;
    let snapshot = live.sub(1, "reconcile").await;
    assert!(snapshot["data"].as_array().is_some(), "{snapshot}");
    let yesterday = heft::domain::calendar::business_day(chrono::Utc::now()) - chrono::Duration::days(1);
    let t = s.ops_login(Role::Operator).await;
    common::ok(&s, "POST", "/ops/reconcile/runs", &t, Some(json!({"day": yesterday, "only": "settlement"}))).await;
    let done = live
        .until("the settlement run done", |v| {
            v["sub"] == 1 && v["kind"] == "run" && v["data"]["job"] == "settlement" && v["data"]["status"] == "done"
        })
        .await;
    assert_eq!(done["data"]["day"], yesterday.to_string(), "{done}");
    assert_eq!(done["data"]["summary"]["settlement"]["orders"], 0, "{done}");
    assert_in_order(&live.seen);
    let mut restocker = Live::signed_in(&s, Role::Restocker).await;
    restocker.send(json!({"type": "sub", "id": 1, "topic": "reconcile"})).await;
    let refused = restocker.until("refused", |v| v["type"] == "error").await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
}
both_profiles!(reconciliation_seen_live, reconciliation_seen_live);

async fn a_purchase_seen_live(profile: Profile) {
    let Some(s) = TestServer::start(profile, &FAST).await else { return };
    let sn = "LIVE-BUY-1";
    let cab = shop::ready_cabinet(&s, sn, shop::quiet(5)).await;
    let mut live = Live::signed_in(&s, Role::Admin).await;
    live.sub(1, "orders").await;
    let cabinet = live.sub(2, &format!("cabinet/{sn}")).await;
    let lanes = cabinet["data"]["lanes"].as_array().expect("lanes");
    assert_eq!(lanes.len(), 3, "{cabinet}");
    assert!(lanes.iter().all(|l| l["calibrated"] == true && l["product"]["name"].is_string()), "{cabinet}");
    let token = shop::shopper(&s, "wechat", "live-buyer").await;
    let id = shop::open_visit(&s, &cab, &token, "wechat", "live-buyer").await;
    cab.take(0, 1).expect("a cola");
    // The lane chart moves while the door is open.
    let moved = live
        .until("A1 weighed one cola lighter", |v| {
            v["sub"] == 2
                && v["kind"] == "weights"
                && v["data"]["lanes"].as_array().is_some_and(|l| {
                    l.iter().any(|l| l["code"] == "A1" && l["grams"].as_f64().is_some_and(|g| g < 6.0 * 355.0 - 300.0))
                })
        })
        .await;
    assert!(moved["data"]["at_ms"].as_i64().is_some(), "{moved}");
    // Each lane row says how noisy its cell is, once known (calibration measured it).
    let rows = moved["data"]["lanes"].as_array().expect("lanes");
    assert!(rows.iter().all(|l| l["noise_g"].as_f64().is_some_and(|g| g > 0.0 && g < 20.0)), "{moved}");
    cab.close_door(1).await.expect("door closes");
    shop::order_in(&s, &token, id, "paid").await;
    live.until("the order paid in the feed", |v| {
        v["sub"] == 1 && v["data"]["id"] == id && v["data"]["status"] == "paid"
    })
    .await;
    live.until("the order paid on its cabinet", |v| {
        v["sub"] == 2 && v["kind"] == "order" && v["data"]["status"] == "paid"
    })
    .await;
    live.until("the cabinet free again", |v| {
        v["sub"] == 2
            && v["kind"] == "cabinet"
            && v["data"]["session"].is_null()
            && v["data"]["doors_open"] == json!([])
    })
    .await;
    // What a reviewer needs of it: lines, and the weight trace with the door open in it.
    let (status, detail) = s.call(Role::Admin, reqwest::Method::GET, &format!("/ops/orders/{id}"), None).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["order"]["lines"][0]["lane"], "A1", "{detail}");
    let trace = detail["trace"].as_array().expect("trace");
    assert!(trace.iter().any(|r| r["kind"] == "open") && trace.iter().any(|r| r["kind"] != "open"), "{detail}");
    let (status, _) = s.call(Role::Restocker, reqwest::Method::GET, &format!("/ops/orders/{id}"), None).await;
    assert_eq!(status, 403, "the orders are the managers'");
    let doors: Vec<bool> = deltas(&live.seen, 2, "door").map(|d| d["data"]["opened"] == true).collect();
    assert_eq!(doors, [true, false], "door events in order");
    let held = deltas(&live.seen, 2, "cabinet").any(|c| c["data"]["session"]["kind"] == "purchase");
    assert!(held, "the purchase session was shown holding the cabinet");
    let statuses: Vec<&str> = deltas(&live.seen, 1, "order").filter_map(|o| o["data"]["status"].as_str()).collect();
    assert!(statuses.contains(&"door_open") && statuses.last() == Some(&"paid"), "{statuses:?}");
    assert_in_order(&live.seen);
}
both_profiles!(a_purchase_seen_live, a_purchase_seen_live);

/// A reader of `cabinet/{sn}` (a cabinet that is logged in) with a 4 KiB receive buffer, so that
/// when it stops reading the server soon cannot send. The cabinet's device must be kept.
async fn slow_reader(s: &TestServer, sn: &str) -> (Live, heft::sim::device::DeviceClient) {
    let (_creds, dev) = s.logged_in(sn, 1).await;
    let token = s.ops_login(Role::Operator).await;
    let mut live = Live::connect_with(s.heft.http_addr, Auth::FirstMessage(&token), Some(4096)).await;
    live.next().await.expect("welcome");
    live.sub(1, &format!("cabinet/{sn}")).await;
    (live, dev)
}

/// `rounds` × 500 door events for `sn` on the node's live bus, as its actor publishes them, many
/// times faster than a cabinet could; the longest socket queue seen meanwhile.
async fn flood_doors(s: &TestServer, sn: &str, rounds: i64) -> usize {
    let bus = s.heft.services.live.clone();
    let mut longest = 0;
    for round in 0..rounds {
        for i in 0..500 {
            let at_ms = round * 500 + i;
            bus.publish(Change::Door { sn: sn.into(), door: 1, opened: i % 2 == 0, open: vec![], at_ms });
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        longest = longest.max(s.heft.live.longest_queue());
    }
    longest
}

/// A reader that stops reading while door events flood its cabinet: its queue never holds more
/// than `live.queue_capacity`, and once it reads again it is told `resync` and given a fresh
/// snapshot. The flood is published on the node's live bus, as the cabinet's actor does, many
/// times faster than a cabinet could.
async fn a_slow_reader_is_resynced(profile: Profile) {
    let capacity = 64;
    let extra = [("HEFT__LIVE__QUEUE_CAPACITY", "64"), ("HEFT__LIVE__MAX_RESYNCS", "1000")];
    let Some(s) = TestServer::start(profile, &extra).await else { return };
    let sn = "LIVE-SLOW-1";
    let (mut live, _dev) = slow_reader(&s, sn).await;
    let longest = flood_doors(&s, sn, 200).await;
    assert!(longest <= capacity, "a queue held {longest} messages, over its capacity of {capacity}");
    let resync = live.until("resync", |v| v["type"] == "resync").await;
    assert_eq!(resync["sub"], 1, "{resync}");
    let snapshot = live.next().await.expect("the fresh snapshot");
    assert_eq!((snapshot["type"].clone(), snapshot["sub"].clone()), (json!("snapshot"), json!(1)), "{snapshot}");
    assert_eq!(snapshot["data"]["cabinet"]["sn"], sn);
    assert_in_order(&live.seen);
}
both_profiles!(a_slow_reader_is_resynced, a_slow_reader_is_resynced);

/// One that keeps falling behind is closed, saying why.
async fn one_that_keeps_falling_behind_is_closed(profile: Profile) {
    let extra = [("HEFT__LIVE__QUEUE_CAPACITY", "16"), ("HEFT__LIVE__MAX_RESYNCS", "0")];
    let Some(s) = TestServer::start(profile, &extra).await else { return };
    let sn = "LIVE-SLOW-2";
    let (mut live, _dev) = slow_reader(&s, sn).await;
    flood_doors(&s, sn, 100).await;
    let (code, reason) = live.closed().await;
    assert_eq!(code, 4008, "{reason}");
    assert!(reason.starts_with("too slow"), "{reason}");
}
both_profiles!(one_that_keeps_falling_behind_is_closed, one_that_keeps_falling_behind_is_closed);

async fn sockets_without_a_valid_operator_are_closed(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[("HEFT__LIVE__AUTH_TIMEOUT_MS", "300")]).await else { return };
    // Silent: closed once the sign-in time is up.
    let mut silent = Live::connect(s.heft.http_addr, Auth::None).await;
    let (code, reason) = silent.closed().await;
    assert_eq!((code, reason.as_str()), (4001, "not authenticated in time"));
    // A forged token.
    let mut forged = Live::connect(s.heft.http_addr, Auth::FirstMessage("eyJ.forged.token")).await;
    assert_eq!(forged.closed().await.0, 4001);
    // A subscription before signing in is not a sign-in.
    let mut eager = Live::connect(s.heft.http_addr, Auth::None).await;
    eager.send(json!({"type": "sub", "id": 1, "topic": "fleet"})).await;
    assert_eq!(eager.closed().await.0, 4001);
    // A restocker, signed in the way a browser does: the fleet yes, the orders feed no.
    let token = s.ops_login(Role::Restocker).await;
    let mut restocker = Live::connect(s.heft.http_addr, Auth::Subprotocol(&token)).await;
    assert_eq!(restocker.next().await.expect("welcome")["type"], "welcome");
    restocker.sub(1, "fleet").await;
    restocker.send(json!({"type": "sub", "id": 2, "topic": "orders"})).await;
    let refused = restocker.until("refused", |v| v["type"] == "error").await;
    assert_eq!((refused["sub"].clone(), refused["code"].clone()), (json!(2), json!("forbidden")), "{refused}");
    // Bad requests are answered, and the socket stays.
    restocker.send(json!({"type": "sub", "id": 3, "topic": "weights"})).await;
    assert_eq!(restocker.until("bad topic", |v| v["type"] == "error").await["code"], "bad_topic");
    restocker.send(json!({"type": "sub", "id": 1, "topic": "alerts"})).await;
    assert_eq!(restocker.until("in use", |v| v["type"] == "error").await["code"], "sub_in_use");
    restocker.send(json!({"type": "ping"})).await;
    restocker.until("pong", |v| v["type"] == "pong").await;
    // A message over `live.max_message_bytes` ends the socket, saying so.
    let mut chatty = Live::signed_in(&s, Role::Admin).await;
    chatty.send(json!({"type": "sub", "id": 1, "topic": "x".repeat(5000)})).await;
    assert_eq!(chatty.closed().await.0, 1009);
    // The account is disabled: the socket goes.
    let me = s.get_ok("/ops/operators").await;
    let id = me["operators"]
        .as_array()
        .or(me.as_array())
        .and_then(|all| all.iter().find(|o| o["username"] == "test-restocker"))
        .and_then(|o| o["id"].as_i64())
        .expect("the restocker's id");
    let (status, body) = s
        .call(Role::Admin, reqwest::Method::PATCH, &format!("/ops/operators/{id}"), Some(&json!({"active": false})))
        .await;
    assert_eq!(status, 200, "{body}");
    let (code, reason) = restocker.closed().await;
    assert_eq!((code, reason.as_str()), (4003, "account disabled"));
    // And cannot come back.
    let mut again = Live::connect(s.heft.http_addr, Auth::Subprotocol(&token)).await;
    assert_eq!(again.closed().await, (4001, "account disabled".to_string()));
}
both_profiles!(sockets_without_a_valid_operator_are_closed, sockets_without_a_valid_operator_are_closed);

/// Two nodes on one database, cache and RabbitMQ: a browser on node B follows a cabinet whose
/// connection node A holds.
#[actix_rt::test]
async fn a_browser_on_one_node_sees_a_cabinet_on_another() {
    let Some(a) = TestServer::start(Profile::Production, &FAST).await else { return };
    let mut config = common::config(&a.storage, common::free_port(), &[("HEFT__NODE__ID", "node-b")]);
    config.security.seal_key = a.config.security.seal_key.clone();
    // The platforms are the ones node A talks to.
    config.wechat = a.config.wechat.clone();
    config.alipay = a.config.alipay.clone();
    let b = heft::app::Heft::start(config).await.expect("node B starts");
    let sn = "LIVE-NODES-1";
    let cab = shop::ready_cabinet(&a, sn, shop::quiet(9)).await;
    let token = a.ops_login(Role::Operator).await;
    let mut live = Live::connect(b.http_addr, Auth::FirstMessage(&token)).await;
    let welcome = live.next().await.expect("welcome");
    assert_eq!(welcome["node"], "node-b", "{welcome}");
    let snap = live.sub(1, &format!("cabinet/{sn}")).await;
    assert_eq!(snap["data"]["cabinet"]["node"], "node-1", "{snap}");
    cab.open_door(1).await.expect("door opens on node A");
    let door = live.until("the door, from node A", |v| v["kind"] == "door").await;
    assert_eq!(door["data"]["opened"], true, "{door}");
    live.until("its row, read on node B", |v| v["kind"] == "cabinet" && v["data"]["doors_open"] == json!([1])).await;
    cab.close_door(1).await.expect("door closes");
    b.stop().await;
}
