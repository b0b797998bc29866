//! Cabinets over real MQTT against an in-process Heft, in both profiles: login and heartbeat,
//! every kind of bad input, liveness (offline once, suspect under mass silence, recovery),
//! actor supervision, and a restart on the same port.

#[macro_use]
mod common;

use std::time::Duration;

use common::{EVENTUALLY, Profile, TestServer, eventually};
use heft::actors::watchdog::RoundReport;
use heft::device::frame::{Header, Heartbeat, Reject};
use heft::device::messages::WeightUp;
use heft::device::topic::{self, UpKind};
use heft::domain::liveness::{FleetHealth, Liveness};
use heft::domain::operator::Role;
use heft::sim::device::{ClientTls, ConnectOptions, DeviceClient};
use tokio::sync::watch;

/// A device heartbeating in the background until stopped.
struct Beater {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<DeviceClient>,
}

fn beat(mut dev: DeviceClient, every: Duration) -> Beater {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            dev.heartbeat(4.0, false).await.expect("heartbeat");
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stopped.changed() => return dev,
            }
        }
    });
    Beater { stop, task }
}

impl Beater {
    async fn stop(self) -> DeviceClient {
        let _ = self.stop.send(true);
        self.task.await.expect("beater")
    }
}

fn done(report: RoundReport) -> (FleetHealth, Vec<(String, Liveness, Liveness)>) {
    match report {
        RoundReport::Done { health, transitions, .. } => {
            (health, transitions.into_iter().map(|t| (t.sn, t.from, t.to)).collect())
        }
        other => panic!("watchdog round did not run: {other:?}"),
    }
}

async fn login_and_heartbeat(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[]).await else { return };
    let creds = s.provision("CAB-1");
    let mut dev = s.device(&creds, 1).await;
    let before = chrono::Utc::now().timestamp_millis();
    let ack = dev.login(EVENTUALLY).await.expect("login_ack");
    assert!(ack.ok, "{ack:?}");
    assert_eq!(ack.boot, 1);
    let cadence = ack.cadence.expect("cadence");
    assert_eq!(cadence.heartbeat_s, 1, "cadence comes from config");
    assert_eq!(cadence.closed_weight_s, s.config.protocol.closed_weight_s);
    assert!(ack.server_time_ms >= before && ack.server_time_ms <= chrono::Utc::now().timestamp_millis());

    let after_login = s.cabinet("CAB-1").await;
    assert_eq!(after_login["status"], "initializing");
    assert_eq!(after_login["liveness"], "online");
    assert_eq!(after_login["sellable"], false);
    assert_eq!(after_login["node"], s.config.node.id.as_str());
    assert_eq!(after_login["boot"], 1);
    assert_eq!(after_login["type"], "fridge");
    assert_eq!(after_login["connection"]["logged_in"], true);

    dev.heartbeat(4.5, true).await.expect("heartbeat");
    let cab = eventually("heartbeat visible", || async {
        let c = s.cabinet("CAB-1").await;
        (c["temperature_c"] == 4.5).then_some(c)
    })
    .await;
    assert_eq!(cab["heating"], true);
    assert!(cab["last_heartbeat_at"].is_string());
    assert_eq!(cab["connection"]["last_seq"], 2);

    // A heartbeat touches only the cache: the row and its events do not change.
    let events_before = s.get_ok("/ops/cabinets/CAB-1/events").await["events"].as_array().map(Vec::len);
    for i in 0..5 {
        dev.heartbeat(5.0 + f64::from(i), false).await.expect("heartbeat");
    }
    eventually("five more heartbeats", || async {
        let c = s.cabinet("CAB-1").await;
        (c["connection"]["last_seq"] == 7).then_some(())
    })
    .await;
    // Applied in order: the last heartbeat's facts win.
    assert_eq!(s.cabinet("CAB-1").await["temperature_c"], 9.0);
    let later = s.cabinet("CAB-1").await;
    let events_after = s.get_ok("/ops/cabinets/CAB-1/events").await["events"].as_array().map(Vec::len);
    assert_eq!(events_before, events_after);
    assert_eq!(later["liveness_changed_at"], after_login["liveness_changed_at"]);
    assert_eq!(later["last_login_at"], after_login["last_login_at"]);

    let m = s.metrics().await;
    assert_eq!(m["heft_frames_total{kind=\"heartbeat\"}"], 6.0);
    assert_eq!(m["heft_frames_total{kind=\"login\"}"], 1.0);
    assert_eq!(m["heft_cabinets_connected"], 1.0);
    assert_eq!(m["heft_cabinet_actors"], 1.0);
    assert_eq!(m["heft_mqtt_auth_total{result=\"accepted\"}"], 1.0);
    s.stop().await;
}
both_profiles!(login_and_heartbeat_visible, login_and_heartbeat);

async fn position_and_burst(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[]).await else { return };
    // A cabinet that reports its position at login is indexed for nearby search.
    let creds = s.provision("CAB-GEO");
    let mut dev = s.device(&creds, 1).await;
    dev.position = Some((31.2304, 121.4737));
    assert!(dev.login(EVENTUALLY).await.expect("login_ack").ok);
    let cab = s.cabinet("CAB-GEO").await;
    assert_eq!((cab["lat"].as_f64(), cab["lng"].as_f64()), (Some(31.2304), Some(121.4737)));
    let near = s.heft.services.cache.geo_search(121.4740, 31.2306, 500.0, 10).await.expect("geo search");
    assert_eq!(near.iter().map(|h| h.member.as_str()).collect::<Vec<_>>(), ["CAB-GEO"]);
    assert!(s.heft.services.cache.geo_search(116.40, 39.90, 5_000.0, 10).await.expect("geo").is_empty());

    // Bursts from several cabinets at once: more than the ~200 queued frames at which rumqttd
    // stops serving a link until it is woken; nothing may be lost or stall.
    const PER_CABINET: u64 = 150;
    const CABINETS: u64 = 5;
    let mut tasks = Vec::new();
    for i in 0..CABINETS {
        let (_, mut dev) = s.logged_in(&format!("CAB-BURST-{i}"), 1).await;
        tasks.push(tokio::spawn(async move {
            for n in 0..PER_CABINET {
                dev.heartbeat(f64::from(u32::try_from(n % 100).unwrap_or(0)) / 10.0, false).await.expect("heartbeat");
            }
            dev
        }));
    }
    let mut devs = Vec::new();
    for t in tasks {
        devs.push(t.await.expect("burst"));
    }
    eventually("every burst frame handled", || async {
        (s.metric("heft_frames_total{kind=\"heartbeat\"}").await == (CABINETS * PER_CABINET) as f64).then_some(())
    })
    .await;
    for i in 0..CABINETS {
        assert_eq!(s.cabinet(&format!("CAB-BURST-{i}")).await["connection"]["last_seq"], PER_CABINET + 1);
    }
    assert_eq!(s.metric("heft_frames_rejected_total{reason=\"replay\"}").await, 0.0);
    assert_eq!(s.metric("heft_bridge_inflight").await, 0.0);
    s.stop().await;
}
both_profiles!(positions_are_indexed_and_bursts_are_not_lost, position_and_burst);

/// rumqttd never slows a publisher down for a slow subscriber: it keeps each subscription
/// filter's frames in a log of fixed size, and a subscriber further behind loses what fell off.
/// Here the bridge passes one frame at a time to the actors (`bridge_queue` = 1) while cabinets
/// send 4,000 heartbeats (≈ 600 KB, against the 32 KiB every filter had before the bridge had a
/// log of its own, `mqtt.bridge_log_bytes`): each one reaches its actor.
async fn burst_behind_bridge(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[("HEFT__MQTT__BRIDGE_QUEUE", "1")]).await else { return };
    const PER_CABINET: u64 = 400;
    const CABINETS: u64 = 10;
    let mut devs = Vec::new();
    for i in 0..CABINETS {
        devs.push(s.logged_in(&format!("CAB-HELD-{i}"), 1).await.1);
    }
    let tasks = devs.into_iter().map(|mut dev| {
        tokio::spawn(async move {
            for n in 0..PER_CABINET {
                dev.heartbeat(f64::from(u32::try_from(n % 100).unwrap_or(0)) / 10.0, false).await.expect("heartbeat");
            }
            dev
        })
    });
    let devs = futures_util::future::join_all(tasks).await;
    eventually("every frame of the bursts handled", || async {
        (s.metric("heft_frames_total{kind=\"heartbeat\"}").await == (CABINETS * PER_CABINET) as f64).then_some(())
    })
    .await;
    for i in 0..CABINETS {
        assert_eq!(s.cabinet(&format!("CAB-HELD-{i}")).await["connection"]["last_seq"], PER_CABINET + 1);
    }
    drop(devs);
    s.stop().await;
}
both_profiles!(a_burst_behind_a_slow_bridge_is_not_lost, burst_behind_bridge);

async fn rotation(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[]).await else { return };
    let (_, mut old) = s.logged_in("CAB-R", 1).await;
    let new_creds = {
        let mut conn = s.heft.services.db.write_conn().expect("db");
        heft::provision::provision(&mut conn, &s.heft.services.seal, "CAB-R", "fridge", true).expect("rotate")
    };
    // The running node picks the new key up on the first frame it fails to verify.
    let mut new = s.device(&new_creds, 2).await;
    new.send_login().await.expect("publish");
    eventually("the new key's first frame fails and reloads the key", || async {
        (s.metric("heft_frames_rejected_total{reason=\"bad_signature\"}").await >= 1.0).then_some(())
    })
    .await;
    new.boot = 3;
    assert!(new.login(EVENTUALLY).await.expect("login_ack").ok, "new credentials work without a restart");
    // The old connection was dropped when the new one connected with the same client id.
    old.closed(EVENTUALLY).await.expect("old connection closed");
    // And a frame signed with the old key no longer verifies.
    let topic = topic::up("CAB-R", UpKind::Heartbeat);
    let m = serde_json::to_string(&Heartbeat { h: Header { boot: 3, seq: 50, ts: None }, temp_c: 4.0, heating: false })
        .expect("json");
    new.publish_raw(&topic, format!(r#"{{"m":{m},"s":"{}"}}"#, old.sign_raw(&topic, &m)).into_bytes())
        .await
        .expect("publish");
    eventually("old key refused", || async {
        (s.metric("heft_frames_rejected_total{reason=\"bad_signature\"}").await >= 2.0).then_some(())
    })
    .await;
    s.stop().await;
}
both_profiles!(rotated_credentials_take_effect_without_a_restart, rotation);

/// Anyone connected may publish on any cabinet's topic. A forged frame makes the actor look for a
/// new key (and reloads are rate-limited: an hour here), yet it cannot hold back the key a rotated
/// cabinet brings: the cabinet reconnects with its new token, which the forger does not have.
async fn rotation_despite_forgery(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[("HEFT__PROTOCOL__RELOGIN_INTERVAL_S", "3600")]).await else { return };
    let (_, mut old) = s.logged_in("CAB-K", 1).await;
    let (_, forger) = s.logged_in("CAB-F", 1).await;
    let topic = topic::up("CAB-K", UpKind::Heartbeat);
    let m = serde_json::to_string(&Heartbeat { h: Header { boot: 1, seq: 9, ts: None }, temp_c: 4.0, heating: false })
        .expect("json");
    forger
        .publish_raw(&topic, format!(r#"{{"m":{m},"s":"{}"}}"#, forger.sign_raw(&topic, &m)).into_bytes())
        .await
        .expect("forge");
    eventually("the forged frame is refused (and spends the reload)", || async {
        (s.metric("heft_frames_rejected_total{reason=\"bad_signature\"}").await >= 1.0).then_some(())
    })
    .await;
    // The actor handles frames in order, and waits for a reload: once this heartbeat is in, the
    // reload the forgery caused is over, with the old key.
    old.heartbeat(4.0, false).await.expect("heartbeat");
    eventually("the reload is over", || async {
        (s.cabinet("CAB-K").await["connection"]["last_seq"] == 2).then_some(())
    })
    .await;
    let new_creds = {
        let mut conn = s.heft.services.db.write_conn().expect("db");
        heft::provision::provision(&mut conn, &s.heft.services.seal, "CAB-K", "fridge", true).expect("rotate")
    };
    let mut new = s.device(&new_creds, 2).await;
    new.send_login().await.expect("publish");
    eventually("the new key's first frame fails", || async {
        (s.metric("heft_frames_rejected_total{reason=\"bad_signature\"}").await >= 2.0).then_some(())
    })
    .await;
    new.boot = 3;
    assert!(new.login(EVENTUALLY).await.expect("login_ack").ok, "the rotated key works at once");
    s.stop().await;
}
both_profiles!(forged_frames_cannot_hold_back_a_rotated_key, rotation_despite_forgery);

async fn refused_connections(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[]).await else { return };
    let creds = s.provision("CAB-1");
    let attempt = |opts: ConnectOptions, creds: heft::provision::Credentials| {
        let broker = s.broker.clone();
        async move { DeviceClient::connect(&broker, &creds, 1, opts).await.err() }
    };
    let wrong_password = ConnectOptions { password: Some("not-the-token".into()), ..Default::default() };
    assert!(attempt(wrong_password, creds.clone()).await.is_some(), "wrong password must be refused");
    let other_client_id = ConnectOptions { client_id: Some("CAB-2".into()), ..Default::default() };
    assert!(attempt(other_client_id, creds.clone()).await.is_some(), "client id != username must be refused");
    let mut unknown = creds.clone();
    unknown.sn = "CAB-404".into();
    assert!(attempt(ConnectOptions::default(), unknown).await.is_some(), "unprovisioned sn must be refused");
    let m = s.metrics().await;
    assert_eq!(m["heft_mqtt_auth_total{result=\"wrong_password\"}"], 1.0);
    assert_eq!(m["heft_mqtt_auth_total{result=\"client_id_mismatch\"}"], 1.0);
    assert_eq!(m["heft_mqtt_auth_total{result=\"unknown_cabinet\"}"], 1.0);
    // The right credentials still work.
    assert!(attempt(ConnectOptions::default(), creds).await.is_none());
    s.stop().await;
}
both_profiles!(wrong_credentials_are_refused, refused_connections);

async fn bad_frames(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[("HEFT__MQTT__MAX_FRAME_BYTES", "2048")]).await else { return };
    let (_a_creds, mut a) = s.logged_in("CAB-A", 1).await;
    let (_b_creds, mut b) = s.logged_in("CAB-B", 1).await;
    let hb = |h: Header| serde_json::to_string(&Heartbeat { h, temp_c: 4.0, heating: false }).expect("json");

    // 1. A frame for B's topic signed with A's key.
    let b_topic = topic::up("CAB-B", UpKind::Heartbeat);
    let m = hb(Header { boot: 1, seq: 100, ts: None });
    let forged = format!(r#"{{"m":{m},"s":"{}"}}"#, a.sign_raw(&b_topic, &m));
    a.publish_raw(&b_topic, forged.into_bytes()).await.expect("publish");
    // 2. Missing signature, and a signature that is not even base64.
    a.publish_raw(&b_topic, format!(r#"{{"m":{m}}}"#).into_bytes()).await.expect("publish");
    a.publish_raw(&b_topic, format!(r#"{{"m":{m},"s":"%%%"}}"#).into_bytes()).await.expect("publish");
    // 3. A replayed seq: the same signed frame twice.
    let a_topic = topic::up("CAB-A", UpKind::Heartbeat);
    let m = hb(Header { boot: 1, seq: 5, ts: None });
    let frame = format!(r#"{{"m":{m},"s":"{}"}}"#, a.sign_raw(&a_topic, &m));
    a.publish_raw(&a_topic, frame.clone().into_bytes()).await.expect("publish");
    a.publish_raw(&a_topic, frame.into_bytes()).await.expect("publish");
    // 4. Another boot, correctly signed.
    let m = hb(Header { boot: 7, seq: 6, ts: None });
    a.publish_raw(&a_topic, format!(r#"{{"m":{m},"s":"{}"}}"#, a.sign_raw(&a_topic, &m)).into_bytes())
        .await
        .expect("publish");
    // 5. Malformed JSON, unknown topics, an oversize payload, a cabinet that does not exist.
    a.publish_raw(&a_topic, b"{not json".to_vec()).await.expect("publish");
    a.publish_raw("cabinets/CAB-A/up/selfie", b"{}".to_vec()).await.expect("publish");
    a.publish_raw("somewhere/else", b"{}".to_vec()).await.expect("publish");
    a.publish_raw(&a_topic, vec![b' '; 4096]).await.expect("publish");
    let ghost = topic::up("CAB-GHOST", UpKind::Heartbeat);
    let m = hb(Header { boot: 1, seq: 1, ts: None });
    a.publish_raw(&ghost, format!(r#"{{"m":{m},"s":"{}"}}"#, a.sign_raw(&ghost, &m)).into_bytes())
        .await
        .expect("publish");
    // 6. A signed message whose fields are wrong.
    let m = r#"{"boot":1,"seq":9,"temp_c":"warm","heating":false}"#;
    a.publish_raw(&a_topic, format!(r#"{{"m":{m},"s":"{}"}}"#, a.sign_raw(&a_topic, m)).into_bytes())
        .await
        .expect("publish");

    let expected = [
        ("bad_signature", 2.0),
        ("missing_signature", 1.0),
        ("replay", 1.0),
        ("wrong_boot", 1.0),
        ("malformed", 1.0),
        ("unknown_topic", 2.0),
        ("oversize", 1.0),
        ("unknown_cabinet", 1.0),
        ("bad_message", 1.0),
    ];
    let counted = |m: &std::collections::HashMap<String, f64>| -> Vec<(String, f64)> {
        Reject::ALL
            .iter()
            .map(|r| {
                let key = format!("heft_frames_rejected_total{{reason=\"{}\"}}", r.as_str());
                (r.as_str().to_string(), m.get(&key).copied().unwrap_or(0.0))
            })
            .filter(|(_, n)| *n > 0.0)
            .collect()
    };
    let want: Vec<(String, f64)> = expected.iter().map(|(r, n)| (r.to_string(), *n)).collect();
    let mut want_sorted = want.clone();
    want_sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut last = Vec::new();
    let matched = tokio::time::timeout(EVENTUALLY, async {
        loop {
            let mut got = counted(&s.metrics().await);
            got.sort_by(|a, b| a.0.cmp(&b.0));
            if got == want_sorted {
                return;
            }
            last = got;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(matched.is_ok(), "rejections counted {last:?}, expected {want_sorted:?}");

    // Security alerts for the signature cases, against the cabinet whose topic was abused.
    let alerts = s.alerts("sn=CAB-B").await;
    let codes: Vec<&str> = alerts.iter().filter_map(|a| a["code"].as_str()).collect();
    assert!(codes.contains(&"frame_bad_signature"), "{codes:?}");
    assert!(codes.contains(&"frame_missing_signature"), "{codes:?}");
    let bad_sig = alerts.iter().find(|a| a["code"] == "frame_bad_signature").expect("alert");
    assert_eq!(bad_sig["audience"], "security");
    // Two bad signatures within the cooldown: one row, the second counted when it next fires.
    assert_eq!(alerts.iter().filter(|a| a["code"] == "frame_bad_signature").count(), 1);
    let a_alerts = s.alerts("sn=CAB-A").await;
    assert!(a_alerts.iter().any(|a| a["code"] == "frame_replay"), "{a_alerts:?}");

    // Nothing stalled: both cabinets still get through, and the replayed frame was applied once.
    a.skip_to_seq(100);
    a.heartbeat(6.5, false).await.expect("heartbeat");
    b.heartbeat(7.5, true).await.expect("heartbeat");
    eventually("valid frames still flow", || async {
        let (ca, cb) = (s.cabinet("CAB-A").await, s.cabinet("CAB-B").await);
        (ca["temperature_c"] == 6.5 && cb["temperature_c"] == 7.5).then_some(())
    })
    .await;
    let m = s.metrics().await;
    // A's accepted heartbeats: seq 5 (once) and the last one. B's: the last one. No forged one.
    assert_eq!(m["heft_frames_total{kind=\"heartbeat\"}"], 3.0);
    s.stop().await;
}
both_profiles!(bad_frames_are_dropped_counted_and_alerted, bad_frames);

async fn stale_boot(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[]).await else { return };
    let (creds, dev) = s.logged_in("CAB-1", 5).await;
    dev.disconnect().await;
    let mut again = s.device(&creds, 4).await;
    let ack = again.login(EVENTUALLY).await.expect("login_ack");
    assert!(!ack.ok);
    assert_eq!(ack.reason.as_deref(), Some("stale_boot"));
    assert_eq!(ack.last_boot, Some(5), "tells the cabinet what to jump past");
    // The accepted login sent again (as anyone on the broker could): dropped as a replay, and
    // not answered, or a replayer could keep the cabinet logging in.
    again.boot = 5;
    again.send_login().await.expect("publish");
    eventually("replayed login counted", || async {
        (s.metric("heft_frames_rejected_total{reason=\"replay\"}").await == 1.0).then_some(())
    })
    .await;
    again.boot = 6;
    let ack = again.login(EVENTUALLY).await.expect("login_ack");
    assert!(ack.ok, "the replay must not have been answered: {ack:?}");
    assert_eq!(ack.boot, 6);
    assert_eq!(s.cabinet("CAB-1").await["boot"], 6);
    assert_eq!(s.metric("heft_frames_rejected_total{reason=\"stale_boot\"}").await, 1.0);
    s.stop().await;
}
both_profiles!(a_login_must_advance_the_boot, stale_boot);

async fn offline_once(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[]).await else { return };
    let mut beaters = Vec::new();
    for i in 0..3 {
        let (_, dev) = s.logged_in(&format!("CAB-{i}"), 1).await;
        beaters.push(beat(dev, Duration::from_millis(200)));
    }
    let (_, mut quiet) = s.logged_in("CAB-Q", 1).await;
    quiet.heartbeat(4.0, false).await.expect("heartbeat");
    // Silent for longer than offline_after_s (2 s).
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let (health, transitions) = done(s.heft.check_liveness().await.expect("round"));
    assert_eq!(health, FleetHealth::Healthy);
    assert_eq!(transitions, vec![("CAB-Q".to_string(), Liveness::Online, Liveness::Offline)]);
    // Further rounds change nothing: offline once, one event.
    for _ in 0..2 {
        let (_, transitions) = done(s.heft.check_liveness().await.expect("round"));
        assert!(transitions.is_empty(), "{transitions:?}");
    }
    assert_eq!(s.cabinet("CAB-Q").await["liveness"], "offline");
    let events = s.liveness_events("CAB-Q").await;
    assert_eq!(events.iter().filter(|(_, to)| to == "offline").count(), 1, "{events:?}");
    let open = s.alerts("code=cabinet_offline&open=true").await;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["sn"], "CAB-Q");
    assert_eq!(open[0]["audience"], "maintenance");
    for i in 0..3 {
        assert_eq!(s.cabinet(&format!("CAB-{i}")).await["liveness"], "online");
    }
    assert_eq!(s.metric("heft_cabinets_connected").await, 3.0);

    // It comes back: online again, with exactly one event, and the alert resolved.
    quiet.heartbeat(4.0, false).await.expect("heartbeat");
    quiet.heartbeat(4.1, false).await.expect("heartbeat");
    eventually("back online", || async { (s.cabinet("CAB-Q").await["liveness"] == "online").then_some(()) }).await;
    let (_, transitions) = done(s.heft.check_liveness().await.expect("round"));
    assert!(transitions.is_empty(), "{transitions:?}");
    let events = s.liveness_events("CAB-Q").await;
    let recoveries: Vec<_> = events.iter().filter(|(from, to)| from == "offline" && to == "online").collect();
    // One at the first login (provisioned cabinets start offline), one for this recovery.
    assert_eq!(recoveries.len(), 2, "{events:?}");
    assert_eq!(events.last(), Some(&("offline".to_string(), "online".to_string())));
    assert!(s.alerts("code=cabinet_offline&open=true").await.is_empty());
    eventually("connected gauge back", || async { (s.metric("heft_cabinets_connected").await == 4.0).then_some(()) })
        .await;
    for b in beaters {
        b.stop().await;
    }
    s.stop().await;
}
both_profiles!(a_silent_cabinet_goes_offline_once_and_recovers, offline_once);

async fn mass_silence(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[("HEFT__LIVENESS__MIN_FLEET", "5")]).await else { return };
    let mut beaters = Vec::new();
    for i in 0..2 {
        let (_, dev) = s.logged_in(&format!("LOUD-{i}"), 1).await;
        beaters.push(beat(dev, Duration::from_millis(200)));
    }
    let mut quiet = Vec::new();
    for i in 0..8 {
        let (_, mut dev) = s.logged_in(&format!("QUIET-{i}"), 1).await;
        dev.heartbeat(4.0, false).await.expect("heartbeat");
        quiet.push(dev);
    }
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let (health, transitions) = done(s.heft.check_liveness().await.expect("round"));
    assert_eq!(health, FleetHealth::Unhealthy);
    assert_eq!(transitions.len(), 8, "{transitions:?}");
    assert!(
        transitions
            .iter()
            .all(|(sn, from, to)| sn.starts_with("QUIET-") && *from == Liveness::Online && *to == Liveness::Suspect)
    );
    let alerts = s.alerts("code=ingest_unhealthy&open=true").await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["audience"], "ops");
    assert!(alerts[0]["message"].as_str().unwrap_or("").contains("2 of 10"), "{}", alerts[0]["message"]);
    // Still unhealthy next round: nobody goes offline, no second alert.
    let (health, transitions) = done(s.heft.check_liveness().await.expect("round"));
    assert_eq!(health, FleetHealth::Unhealthy);
    assert!(transitions.is_empty(), "{transitions:?}");
    assert_eq!(s.alerts("code=ingest_unhealthy").await.len(), 1);
    assert!(s.alerts("code=cabinet_offline").await.is_empty());
    assert_eq!(s.get_ok("/ops/cabinets?liveness=suspect").await["cabinets"].as_array().map(Vec::len), Some(8));

    // The fleet is heard again: each suspect returns online with one event, the alert clears.
    for dev in quiet.iter_mut() {
        dev.heartbeat(4.0, false).await.expect("heartbeat");
    }
    eventually("all back online", || async {
        let page = s.get_ok("/ops/cabinets?liveness=online").await;
        (page["cabinets"].as_array().map(Vec::len) == Some(10)).then_some(())
    })
    .await;
    let (health, transitions) = done(s.heft.check_liveness().await.expect("round"));
    assert_eq!(health, FleetHealth::Healthy);
    assert!(transitions.is_empty());
    assert!(s.alerts("code=ingest_unhealthy&open=true").await.is_empty());
    for i in 0..8 {
        let events = s.liveness_events(&format!("QUIET-{i}")).await;
        assert_eq!(
            events,
            vec![
                ("offline".into(), "online".into()),
                ("online".into(), "suspect".into()),
                ("suspect".into(), "online".into())
            ]
        );
    }
    for b in beaters {
        b.stop().await;
    }
    s.stop().await;
}
both_profiles!(mass_silence_makes_suspects_not_offline, mass_silence);

async fn crash_restart(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[]).await else { return };
    let (_, mut a) = s.logged_in("CAB-A", 1).await;
    let (_, mut b) = s.logged_in("CAB-B", 1).await;
    b.heartbeat(4.0, false).await.expect("heartbeat");
    assert!(s.heft.crash_cabinet("CAB-A").await);
    // The restarted actor reloads the cabinet and asks it to log in again.
    let ack = a.wait_login_ack(EVENTUALLY).await.expect("login_required");
    assert!(!ack.ok);
    assert_eq!(ack.reason.as_deref(), Some("login_required"));
    assert_eq!(ack.boot, 1, "the reloaded state knows the last boot");
    a.boot = 2;
    assert!(a.login(EVENTUALLY).await.expect("login_ack").ok);
    a.heartbeat(5.5, false).await.expect("heartbeat");
    eventually("A heard after restart", || async { (s.cabinet("CAB-A").await["temperature_c"] == 5.5).then_some(()) })
        .await;
    // B never noticed: same session, its frames still accepted.
    b.heartbeat(6.5, false).await.expect("heartbeat");
    eventually("B unaffected", || async {
        let c = s.cabinet("CAB-B").await;
        (c["temperature_c"] == 6.5 && c["connection"]["boot"] == 1 && c["connection"]["last_seq"] == 3).then_some(())
    })
    .await;
    let m = s.metrics().await;
    assert_eq!(m["heft_cabinet_actor_restarts_total"], 1.0);
    assert_eq!(m["heft_bridge_inflight"], 0.0, "frames lost with the crashed actor are not still counted");
    assert_eq!(m["heft_cabinet_actors"], 2.0);
    assert_eq!(m["heft_cabinets_connected"], 2.0);
    s.stop().await;
}
both_profiles!(a_crashed_cabinet_actor_is_restarted_alone, crash_restart);

async fn restart_same_port(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[]).await else { return };
    let (creds, mut dev) = s.logged_in("CAB-1", 1).await;
    let broker = s.broker.clone();
    let (storage, config) = s.stop().await;
    let why = dev.closed(EVENTUALLY).await.expect("connection closes when serve stops");
    assert!(!why.is_empty());
    let s = TestServer::start_with(storage, config).await;
    assert_eq!(s.broker, broker, "same MQTT port");
    let mut dev = s.device(&creds, 2).await;
    let ack = dev.login(EVENTUALLY).await.expect("login_ack");
    assert!(ack.ok, "{ack:?}");
    dev.heartbeat(3.0, true).await.expect("heartbeat");
    eventually("heard after restart", || async { (s.cabinet("CAB-1").await["temperature_c"] == 3.0).then_some(()) })
        .await;
    s.stop().await;
}
both_profiles!(restarting_serve_brings_the_broker_back_on_its_port, restart_same_port);

async fn http_surface(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[]).await else { return };
    let healthz = s.http.get(format!("{}/healthz", s.base)).send().await.expect("healthz");
    assert_eq!(healthz.status(), 200);
    let readyz: serde_json::Value =
        s.http.get(format!("{}/readyz", s.base)).send().await.expect("readyz").json().await.expect("json");
    assert_eq!(readyz["status"], "ready");
    assert_eq!(readyz["checks"]["database"], "ok");
    assert_eq!(readyz["checks"]["cache"], "ok");

    let no_token = s.http.get(format!("{}/ops/cabinets", s.base)).send().await.expect("request");
    assert_eq!(no_token.status(), 401);
    let body: serde_json::Value = no_token.json().await.expect("json");
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(body["message"], "missing bearer token");
    let wrong = s.http.get(format!("{}/ops/cabinets", s.base)).bearer_auth("nope").send().await.expect("request");
    assert_eq!(wrong.status(), 401);
    assert_eq!(wrong.json::<serde_json::Value>().await.expect("json")["message"], "invalid token");

    let (status, body) = s.get("/ops/cabinets/bad!sn").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_request")));
    let (status, body) = s.get("/ops/cabinets/CAB-NONE").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, _) = s.get("/ops/cabinets?liveness=sleepy").await;
    assert_eq!(status, 400);
    let (status, _) = s.get("/ops/cabinets?limit=0").await;
    assert_eq!(status, 400);

    for i in 0..5 {
        s.provision(&format!("CAB-{i}"));
    }
    let page = s.get_ok("/ops/cabinets?limit=3").await;
    let sns: Vec<&str> = page["cabinets"].as_array().expect("list").iter().filter_map(|c| c["sn"].as_str()).collect();
    assert_eq!(sns, ["CAB-0", "CAB-1", "CAB-2"]);
    let next = page["next_after"].as_str().expect("next page");
    let page = s.get_ok(&format!("/ops/cabinets?limit=3&after={next}")).await;
    assert_eq!(page["cabinets"].as_array().map(Vec::len), Some(2));
    assert!(page["next_after"].is_null());
    let never = s.cabinet("CAB-0").await;
    assert_eq!(never["liveness"], "offline");
    assert!(never["last_heartbeat_at"].is_null());

    let metrics = s.http.get(format!("{}/metrics", s.base)).send().await.expect("metrics").text().await.expect("text");
    for name in [
        "heft_cabinets_connected",
        "heft_frames_total",
        "heft_frames_rejected_total",
        "heft_heartbeat_ratio",
        "heft_cabinet_actors",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
    s.stop().await;
}
both_profiles!(health_metrics_and_ops_api, http_surface);

async fn router_limit(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[("HEFT__MQTT__MAX_CONNECTIONS", "1")]).await else { return };
    let (_, _first) = s.logged_in("CAB-1", 1).await;
    let second = s.provision("CAB-2");
    let refused = DeviceClient::connect(&s.broker, &second, 1, ConnectOptions::default()).await;
    assert!(refused.is_err(), "mqtt.max_connections = 1 admits one cabinet only");
    s.stop().await;
}
both_profiles!(the_router_limits_come_from_config, router_limit);

async fn simulated_fleet(profile: Profile) {
    use heft::sim::{Behaviour, SimStats, spawn_fleet};
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    let Some(s) = TestServer::start(profile, &[]).await else { return };
    let creds: Vec<_> = (0..4).map(|i| s.provision(&format!("SIM-{i}"))).collect();
    let (_rate, weight_every_ms) = watch::channel(0u64);
    let broker = s.broker.clone();
    // Four cabinets that drop their connection every 2 s; the fourth signs its frames (all but the
    // login) with a wrong key.
    let behaviour = |i: usize| Behaviour {
        broker: broker.clone(),
        keep_alive: heft::sim::KEEP_ALIVE,
        drop_heartbeats: 0.0,
        bad_signatures: if i == 3 { 1.0 } else { 0.0 },
        disconnect_after: Some(Duration::from_secs(2)),
        door_open: false,
        lanes: 4,
        weight_every_ms: weight_every_ms.clone(),
        without_login: None,
    };
    let stats = Arc::new(SimStats::default());
    let tasks = spawn_fleet(creds, behaviour, stats.clone(), 100).await;
    eventually("every cabinet logged in twice", || async {
        (s.metric("heft_frames_total{kind=\"login\"}").await >= 8.0).then_some(())
    })
    .await;
    let line = stats.line(Duration::ZERO, 0.0);
    assert!(stats.reconnects.load(Ordering::Relaxed) >= 4, "each cabinet reconnected: {line:?}");
    eventually("the honest cabinets' heartbeats land", || async {
        let mut heard = 0;
        for i in 0..3 {
            heard += usize::from(s.cabinet(&format!("SIM-{i}")).await["last_heartbeat_at"].is_string());
        }
        (heard == 3).then_some(())
    })
    .await;
    // The forger's logins are its own, but every heartbeat it signs with a wrong key is dropped
    // and reported.
    eventually("security alert for the forged frames", || async {
        (!s.alerts("sn=SIM-3&code=frame_bad_signature").await.is_empty()).then_some(())
    })
    .await;
    assert!(s.metric("heft_frames_rejected_total{reason=\"bad_signature\"}").await >= 1.0);
    assert!(s.cabinet("SIM-3").await["last_heartbeat_at"].is_null());
    for t in tasks {
        t.abort();
    }
    s.stop().await;
}
both_profiles!(the_simulator_follows_the_protocol_and_reconnects, simulated_fleet);

/// The cache is a cache: Redis loses every key of this deployment mid-run. Within one watchdog
/// round the heartbeat tracking and the GEO index are back from the database, and a cabinet's
/// next heartbeat refills its hash. And every key Heft writes has a bounded lifetime but the
/// fixed few (`hb`, `geo`, `count:*`).
#[actix_rt::test]
async fn cache_wiped_mid_run() {
    let Some(s) = TestServer::start(Profile::Production, &[]).await else { return };
    let prefix = s.heft.services.config.cache.prefix.clone();
    let creds = s.provision("CAB-WIPE");
    let mut dev = s.device(&creds, 1).await;
    dev.position = Some((31.2304, 121.4737));
    assert!(dev.login(EVENTUALLY).await.expect("login_ack").ok);
    dev.heartbeat(4.0, false).await.expect("heartbeat");
    eventually("heartbeat cached", || async {
        s.cabinet("CAB-WIPE").await["temperature_c"].as_f64().is_some().then_some(())
    })
    .await;
    // A lease per order, as captures take: its fencing counter must not live for ever.
    let cache = s.heft.services.cache.clone();
    cache.lease_acquire("capture:1", "test", 1000).await.expect("lease").expect("free");
    let redis = redis::Client::open(common::REDIS_URL).expect("redis url");
    let mut conn = redis.get_multiplexed_async_connection().await.expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut conn).await.expect("keys");
    let fixed = |k: &str| {
        let rest = k.strip_prefix(&format!("{prefix}:")).unwrap_or(k);
        rest == "hb" || rest == "geo" || rest == "nodes" || rest.starts_with("count:")
    };
    for key in keys.iter().filter(|k| !fixed(k)) {
        let ttl: i64 = redis::cmd("PTTL").arg(key).query_async(&mut conn).await.expect("pttl");
        assert!(ttl > 0, "{key} has no lifetime ({ttl})");
    }
    assert!(keys.iter().any(|k| k.ends_with(":fence:capture:1")), "{keys:?}");

    // Redis loses them all.
    let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.expect("del");
    assert!(cache.geo_search(121.4740, 31.2306, 500.0, 10).await.expect("geo").is_empty());
    assert_eq!(cache.heartbeat_tracked().await.expect("tracked"), 0);
    // One round brings back what the watchdog needs and what nearby search reads.
    done(s.heft.check_liveness().await.expect("round"));
    let near = cache.geo_search(121.4740, 31.2306, 500.0, 10).await.expect("geo search");
    assert_eq!(near.iter().map(|h| h.member.as_str()).collect::<Vec<_>>(), ["CAB-WIPE"]);
    assert_eq!(cache.heartbeat_tracked().await.expect("tracked"), 1);
    // The next heartbeat refills the cabinet's hash from the database.
    dev.heartbeat(5.0, false).await.expect("heartbeat");
    let facts = eventually("cabinet hash refilled", || async {
        let f = cache.cabinet_get("CAB-WIPE").await.expect("hash");
        f.contains_key("status").then_some(f)
    })
    .await;
    assert_eq!(facts.get("liveness").map(String::as_str), Some("online"), "{facts:?}");
    assert_eq!(facts.get("lat").map(String::as_str), Some("31.2304"), "{facts:?}");
    assert_eq!(s.cabinet("CAB-WIPE").await["temperature_c"], 5.0);
    assert_eq!(s.cabinet("CAB-WIPE").await["liveness"], "online");
    s.stop().await;
}

/// `login_ack` says how many channels `counts` must carry (the cabinet type's), and a cabinet
/// that sends another number is reported to maintenance once, naming the lanes it leaves unweighed.
async fn channel_count(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[]).await else { return };
    let kind =
        serde_json::json!({ "sensor_channels": 8, "temp_min_c": 0.0, "temp_max_c": 8.0, "temp_alert_after_s": 600 });
    let (status, body) = s.call(Role::Admin, reqwest::Method::PUT, "/ops/cabinet-types/fridge", Some(&kind)).await;
    assert_eq!(status, 200, "{body}");
    let creds = s.provision("CHAN-1");
    let mut dev = s.device(&creds, 1).await;
    let ack = dev.login(EVENTUALLY).await.expect("login_ack");
    assert_eq!(ack.channels, Some(8), "{ack:?}");

    // Eight channels: nothing to say.
    let weight = |dev: &mut DeviceClient, n: usize| WeightUp { h: dev.header(), counts: vec![1000; n] };
    let w = weight(&mut dev, 8);
    dev.send(UpKind::Weight, &w).await.expect("weight");
    // Three: said once, however many such readings follow.
    for _ in 0..3 {
        let w = weight(&mut dev, 3);
        dev.send(UpKind::Weight, &w).await.expect("weight");
    }
    eventually("the readings are taken", || async {
        (s.cabinet("CHAN-1").await["connection"]["last_seq"] == 5).then_some(())
    })
    .await;
    let alerts = eventually("the channel_count alert", || async {
        Some(s.alerts("code=channel_count&sn=CHAN-1&open=true").await).filter(|a| !a.is_empty())
    })
    .await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["occurrences"], 1, "{alerts:?}");
    let message = alerts[0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("sends 3") && message.contains("has 8"), "{message}");
    s.stop().await;
}
both_profiles!(channel_count_sent_and_checked, channel_count);

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))).expect("TLS fixture")
}

/// TLS options trusting `ca`, with a client certificate when `client` names one.
fn tls_options(ca: &str, client: Option<&str>) -> ConnectOptions {
    let client = client.map(|c| (fixture(&format!("{c}.pem")), fixture(&format!("{c}.key"))));
    ConnectOptions {
        tls: Some(ClientTls { ca_pem: fixture(ca), client }),
        timeout: Duration::from_secs(5),
        ..ConnectOptions::default()
    }
}

/// The certificate a TLS listener presents now (DER).
async fn presented_certificate(addr: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls::pki_types::CertificateDer::pem_slice_iter(&fixture("ca.pem")) {
        roots.add(ca.expect("ca")).expect("ca");
    }
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let tls =
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp).await.expect("handshake");
    tls.get_ref().1.peer_certificates().expect("certificate")[0].to_vec()
}

fn der_of(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(&fixture(pem)).expect("pem").to_vec()
}

/// MQTT over TLS beside plain TCP: server certificate, optional then required client
/// certificates from the configured CA, and a certificate replaced on disk taken up without a
/// restart while connected cabinets stay connected.
#[actix_rt::test]
async fn mqtt_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    std::fs::write(&cert, fixture("server.pem")).expect("write");
    std::fs::write(&key, fixture("server.key")).expect("write");
    let ca = format!("{}/tests/fixtures/tls/ca.pem", env!("CARGO_MANIFEST_DIR"));
    let tls_addr = format!("127.0.0.1:{}", common::free_port());
    let (cert_s, key_s) = (cert.to_string_lossy().into_owned(), key.to_string_lossy().into_owned());
    let env = |mode: &'static str| {
        vec![
            ("HEFT__MQTT__TLS__LISTEN", tls_addr.clone()),
            ("HEFT__MQTT__TLS__CERT_FILE", cert_s.clone()),
            ("HEFT__MQTT__TLS__KEY_FILE", key_s.clone()),
            ("HEFT__MQTT__TLS__CLIENT_CERTS", mode.to_string()),
            ("HEFT__MQTT__TLS__CLIENT_CA_FILE", ca.clone()),
            ("HEFT__MQTT__TLS__RELOAD_CHECK_S", "1".to_string()),
        ]
    };
    let optional = env("optional");
    let extra: Vec<(&str, &str)> = optional.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let Some(s) = TestServer::start(Profile::Embedded, &extra).await else { return };
    let creds = s.provision("TLS-1");

    // No client certificate (optional), then the cabinet's own: both log in.
    let mut plain_tls = DeviceClient::connect(&tls_addr, &creds, 1, tls_options("ca.pem", None)).await.expect("TLS");
    assert!(plain_tls.login(EVENTUALLY).await.expect("login_ack").ok);
    plain_tls.disconnect().await;
    let mut dev =
        DeviceClient::connect(&tls_addr, &creds, 2, tls_options("ca.pem", Some("client"))).await.expect("mTLS");
    assert!(dev.login(EVENTUALLY).await.expect("login_ack").ok);
    // A certificate from another CA is refused in the handshake, and a cabinet that does not
    // trust Heft's CA does not connect.
    let stranger = DeviceClient::connect(&tls_addr, &creds, 3, tls_options("ca.pem", Some("stranger-client"))).await;
    assert!(stranger.is_err(), "a foreign client certificate must be refused");
    assert!(DeviceClient::connect(&tls_addr, &creds, 3, tls_options("stranger-ca.pem", None)).await.is_err());
    // Plain TCP still works beside it.
    let other = s.provision("TLS-2");
    assert!(s.device(&other, 1).await.login(EVENTUALLY).await.expect("login_ack").ok);

    // Rotation: new files on disk are used for new connections within reload_check_s.
    assert_eq!(presented_certificate(&tls_addr).await, der_of("server.pem"));
    std::fs::write(&key, fixture("server-rotated.key")).expect("write");
    std::fs::write(&cert, fixture("server-rotated.pem")).expect("write");
    let rotated = der_of("server-rotated.pem");
    let started = std::time::Instant::now();
    while presented_certificate(&tls_addr).await != rotated {
        assert!(started.elapsed() < EVENTUALLY, "the rotated certificate was not taken up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The cabinet connected before the rotation is still connected.
    dev.heartbeat(4.5, false).await.expect("heartbeat");
    eventually("the heartbeat over the old connection", || async {
        (s.cabinet("TLS-1").await["connection"]["last_seq"] == 2).then_some(())
    })
    .await;
    s.stop().await;

    // Required: a cabinet without a client certificate cannot connect; with one it can.
    let required = env("required");
    let extra: Vec<(&str, &str)> = required.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let Some(s) = TestServer::start(Profile::Embedded, &extra).await else { return };
    let creds = s.provision("TLS-1");
    assert!(DeviceClient::connect(&tls_addr, &creds, 1, tls_options("ca.pem", None)).await.is_err());
    let mut dev =
        DeviceClient::connect(&tls_addr, &creds, 1, tls_options("ca.pem", Some("client"))).await.expect("mTLS");
    assert!(dev.login(EVENTUALLY).await.expect("login_ack").ok);
    s.stop().await;
}
