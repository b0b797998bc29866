//! The simulated cabinet (`heft::sim::handle::SimCabinet`) against an in-process Heft, in both
//! profiles: it logs in, heartbeats, its weight and door frames are accepted, the weight cadence
//! follows the doors, it reconnects on request, and commands published on its down topic (as
//! Heft will publish them) are answered on `up/ack`, retries included.

#[macro_use]
mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine;
use common::{EVENTUALLY, Profile, TestServer, eventually};
use heft::device::frame::{self, Envelope};
use heft::device::messages::AckUp;
use heft::provision::Credentials;
use heft::sim::handle::{SimCabinet, SimCabinetOptions};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;
use tokio::sync::mpsc;

const WEIGHTS: &str = "heft_frames_total{kind=\"weight\"}";
const DOORS: &str = "heft_frames_total{kind=\"door\"}";
const ACKS: &str = "heft_frames_total{kind=\"ack\"}";

fn opts() -> SimCabinetOptions {
    SimCabinetOptions { channels: 8, seed: Some(7), position: Some((31.230416, 121.473701)), ..Default::default() }
}

/// No frame of the simulated cabinet may be dropped by Heft.
async fn assert_nothing_rejected(s: &TestServer) {
    let m = s.metrics().await;
    let rejected: Vec<_> = m.iter().filter(|(k, v)| k.starts_with("heft_frames_rejected_total") && **v > 0.0).collect();
    assert!(rejected.is_empty(), "Heft dropped frames: {rejected:?}");
}

async fn reports(profile: Profile) {
    // Fast open and after-close cadence, and a closed-door period long enough to be silent.
    let extra = [
        ("HEFT__PROTOCOL__OPEN_WEIGHT_MS", "100"),
        ("HEFT__PROTOCOL__AFTER_CLOSE_WEIGHT_MS", "100"),
        ("HEFT__PROTOCOL__AFTER_CLOSE_S", "1"),
        ("HEFT__PROTOCOL__CLOSED_WEIGHT_S", "3600"),
    ];
    let Some(s) = TestServer::start(profile, &extra).await else { return };
    let creds = s.provision("SIM-CAB-1");
    let cab = SimCabinet::start(creds, &s.broker, opts()).await.expect("simulated cabinet logs in");
    let c = s.cabinet("SIM-CAB-1").await;
    assert_eq!(c["liveness"], "online");
    assert_eq!(c["connection"]["logged_in"], true);
    assert_eq!(c["boot"], cab.boot());
    eventually("heartbeats arrive (heartbeat_s = 1)", || async {
        s.cabinet("SIM-CAB-1").await["last_heartbeat_at"].is_string().then_some(())
    })
    .await;

    // A weight frame on demand is accepted.
    cab.stock(0, 330.0, 6).expect("stock");
    let before = s.metric(WEIGHTS).await;
    cab.send_weights_now().await.expect("weights sent");
    eventually("weight frame accepted", || async { (s.metric(WEIGHTS).await > before).then_some(()) }).await;

    // Door open: a door frame, then weights every 100 ms.
    cab.open_door(0).await.expect("door frame sent");
    eventually("door frame accepted", || async { (s.metric(DOORS).await == 1.0).then_some(()) }).await;
    cab.open_door(0).await.expect("already open");
    let open_from = s.metric(WEIGHTS).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let streamed = s.metric(WEIGHTS).await - open_from;
    assert!(streamed >= 5.0, "{streamed} weight frames in 1.5 s with the door open");
    cab.take(0, 2).expect("a customer takes two");
    assert_eq!(cab.truth()[0].grams, 4.0 * 330.0);

    // Door closed: a door frame, weights for after_close_s more, then quiet.
    cab.close_door(0).await.expect("door frame sent");
    eventually("second door frame accepted", || async { (s.metric(DOORS).await == 2.0).then_some(()) }).await;
    let closed_at = s.metric(WEIGHTS).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after_close = s.metric(WEIGHTS).await - closed_at;
    assert!(after_close >= 4.0, "{after_close} weight frames in the after-close second");
    let quiet_from = s.metric(WEIGHTS).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let quiet = s.metric(WEIGHTS).await - quiet_from;
    assert!(quiet <= 1.0, "{quiet} weight frames with the door closed (period 3600 s)");
    assert_eq!(s.metric(DOORS).await, 2.0, "opening an open door sends nothing");
    assert_eq!(cab.stats().doors_sent.load(Ordering::Relaxed), 2);

    // Disconnect: offline until asked; then a new login with a new boot.
    let boot = cab.boot();
    cab.disconnect().await;
    assert_eq!(cab.stats().connected.load(Ordering::Relaxed), 0);
    assert!(cab.send_weights_now().await.is_err(), "no weights while offline");
    cab.reconnect().await.expect("logs in again");
    assert!(cab.boot() > boot);
    eventually("logged in again", || async {
        let c = s.cabinet("SIM-CAB-1").await;
        (c["connection"]["logged_in"] == true && c["boot"] == cab.boot()).then_some(())
    })
    .await;
    let before = s.metric(WEIGHTS).await;
    cab.send_weights_now().await.expect("weights sent");
    eventually("weight frame accepted", || async { (s.metric(WEIGHTS).await > before).then_some(()) }).await;
    assert_nothing_rejected(&s).await;
    cab.stop().await;
    s.stop().await;
}
both_profiles!(a_simulated_cabinet_reports_weights_and_doors, reports);

/// An MQTT client that sees what the cabinet publishes on `topic` (the broker has no topic ACLs),
/// and can publish as Heft would. Connects with another provisioned cabinet's credentials.
struct Spy {
    client: AsyncClient,
    frames: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
}

impl Spy {
    async fn start(broker: &str, creds: &Credentials, topic: &str) -> Spy {
        let (host, port) = broker.rsplit_once(':').expect("HOST:PORT");
        let mut o = MqttOptions::new(creds.sn.clone(), host, port.parse().expect("port"));
        o.set_credentials(creds.sn.clone(), creds.token.clone());
        let (client, mut eventloop) = AsyncClient::new(o, 16);
        client.subscribe(topic, QoS::AtLeastOnce).await.expect("subscribe");
        let (tx, frames) = mpsc::unbounded_channel();
        let (subscribed, is_subscribed) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut subscribed = Some(subscribed);
            while let Ok(event) = eventloop.poll().await {
                match event {
                    Event::Incoming(Packet::SubAck(_)) => {
                        if let Some(s) = subscribed.take() {
                            let _ = s.send(());
                        }
                    }
                    Event::Incoming(Packet::Publish(p)) => {
                        let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                    }
                    _ => {}
                }
            }
        });
        tokio::time::timeout(EVENTUALLY, is_subscribed).await.expect("suback in time").expect("suback");
        Spy { client, frames }
    }

    /// Publish `m` signed with `key` on `topic`, as Heft publishes a command.
    async fn command(&self, key: &[u8], topic: &str, m: &serde_json::Value) {
        let payload = frame::sign(key, topic, m).expect("sign");
        self.client.publish(topic, QoS::AtLeastOnce, false, payload).await.expect("publish");
    }

    /// The next ack, its signature checked with `key`; `None` if none comes within `wait`.
    async fn ack(&mut self, key: &[u8], wait: Duration) -> Option<AckUp> {
        let (topic, payload) = tokio::time::timeout(wait, self.frames.recv()).await.ok()??;
        let env = Envelope::parse(&payload).expect("envelope");
        env.verify(topic.as_bytes(), key).expect("signed with the cabinet's key");
        Some(env.message().expect("an AckUp"))
    }
}

async fn acks(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[]).await else { return };
    let creds = s.provision("SIM-CAB-2");
    let key = base64::engine::general_purpose::STANDARD.decode(&creds.frame_key).expect("key");
    let spy_creds = s.provision("SIM-SPY");
    let mut spy = Spy::start(&s.broker, &spy_creds, "cabinets/SIM-CAB-2/up/ack").await;
    let cab = SimCabinet::start(creds, &s.broker, opts()).await.expect("simulated cabinet logs in");
    let boot = cab.boot();
    // Heft's downstream seq is its clock in ms; commands come after the login_ack.
    let seq0 = chrono::Utc::now().timestamp_millis() as u64 + 60_000;

    let config = json!({"boot": boot, "seq": seq0, "cmd_id": "cfg-1", "version": 3, "doors": [
        {"door": 0, "lanes": [{"code": "A1", "channel": 0}, {"code": "A2", "channel": 1}]}
    ]});
    spy.command(&key, "cabinets/SIM-CAB-2/down/config", &config).await;
    let ack = spy.ack(&key, EVENTUALLY).await.expect("config ack");
    assert_eq!((ack.cmd_id.as_str(), ack.ok, ack.result), ("cfg-1", true, Some(json!({"version": 3}))));
    assert_eq!(ack.h.boot, boot);
    assert_eq!(cab.last_config().map(|c| c.version), Some(3));
    assert_eq!(cab.truth()[1].code.as_deref(), Some("A2"));

    // The first ack is lost; Heft's retry (same cmd_id, higher seq) gets the same answer.
    cab.set_drop_acks(1);
    let tags = |seq: u64| {
        json!({"boot": boot, "seq": seq, "cmd_id": "pt-1", "version": 4, "tags": [
            {"lane": "A1", "name": "Cola 330ml", "price_fen": 350}
        ]})
    };
    spy.command(&key, "cabinets/SIM-CAB-2/down/price_tags", &tags(seq0 + 1)).await;
    assert!(spy.ack(&key, Duration::from_secs(1)).await.is_none(), "the first ack is lost");
    assert_eq!(cab.price_tags().len(), 1, "but the labels changed");
    spy.command(&key, "cabinets/SIM-CAB-2/down/price_tags", &tags(seq0 + 2)).await;
    let ack = spy.ack(&key, EVENTUALLY).await.expect("ack of the retry");
    assert_eq!((ack.cmd_id.as_str(), ack.ok, ack.result), ("pt-1", true, Some(json!({"version": 4}))));

    // A replayed frame (same seq) and one for another boot are ignored.
    spy.command(&key, "cabinets/SIM-CAB-2/down/price_tags", &tags(seq0 + 2)).await;
    let mut other_boot = tags(seq0 + 3);
    other_boot["boot"] = json!(boot - 1);
    spy.command(&key, "cabinets/SIM-CAB-2/down/price_tags", &other_boot).await;
    assert!(spy.ack(&key, Duration::from_secs(1)).await.is_none(), "no answer to either");

    // Calibration: the operator puts the standard weight on for span and leaves it there.
    let span = json!({"boot": boot, "seq": seq0 + 4, "cmd_id": "cal-1", "door": 0, "step": "span",
        "channels": [0, 1], "standard_g": 500.0});
    spy.command(&key, "cabinets/SIM-CAB-2/down/calibrate", &span).await;
    let ack = spy.ack(&key, EVENTUALLY).await.expect("calibrate ack");
    let result = ack.result.expect("result");
    assert_eq!(result["counts"].as_array().map(Vec::len), Some(2));
    assert_eq!(result["door_open"], false);
    assert_eq!(cab.truth()[0].grams, 500.0);

    assert_eq!(cab.acks_sent(), 3);
    eventually("Heft accepted the acks", || async { (s.metric(ACKS).await == 3.0).then_some(()) }).await;
    assert_nothing_rejected(&s).await;
    cab.stop().await;
    s.stop().await;
}
both_profiles!(commands_on_the_down_topic_are_acked, acks);

/// `heft simulate` provisions its cabinets as type `sim` and describes it with their load cells,
/// so none logs in to a `channel_count` alert (an undescribed type is taken for 32 channels).
#[actix_rt::test]
async fn simulate_describes_its_cabinet_type() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: heft::sim::SimArgs,
    }
    let Some(s) = TestServer::start(Profile::Embedded, &[]).await else { return };
    let argv = ["simulate", "--cabinets", "2", "--duration", "3", "--channels", "12", "--broker", s.broker.as_str()];
    let cli = <Cli as clap::Parser>::parse_from(argv);
    heft::sim::run(cli.args, s.config.clone()).await.expect("heft simulate runs");
    for sn in ["SIM-00001", "SIM-00002"] {
        let cab = s.cabinet(sn).await;
        assert_eq!((cab["type"].as_str(), cab["last_login_at"].is_string()), (Some("sim"), true), "{cab}");
    }
    let t = s.ops_login(heft::domain::operator::Role::Operator).await;
    let types = common::ok(&s, "GET", "/ops/cabinet-types", &t, None).await;
    let sim = types["types"].as_array().and_then(|all| all.iter().find(|k| k["name"] == "sim")).cloned();
    assert_eq!(sim.map(|k| k["sensor_channels"].clone()), Some(json!(12)), "{types}");
    assert!(s.alerts("code=channel_count").await.is_empty(), "a simulated cabinet flagged for its channels");
    s.stop().await;
}
