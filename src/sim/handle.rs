//! A simulated cabinet for tests: it runs like a fleet cabinet (logs in, heartbeats, streams
//! weights at the cadence of `login_ack`, answers commands, reconnects after a lost connection)
//! while the test acts on it from outside: stocks lanes, takes products, opens doors.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::cabinet::{CabinetError, LaneTruth, Physical, PhysicalOptions};
use super::device::DeviceClientError;
use super::scale::{Fault, ScaleOptions};
use super::{Behaviour, Connected, Rig, SimStats, first_boot, lock, open_session, run_sessions};
use crate::device::messages::{ConfigCmd, PriceTag};
use crate::provision::Credentials;

/// A staged fault that failed: the cabinet's goods or its connection.
#[derive(Debug, thiserror::Error)]
pub enum SimFault {
    #[error(transparent)]
    Goods(#[from] CabinetError),
    #[error(transparent)]
    Device(#[from] DeviceClientError),
}

/// What the handle asks of the running cabinet. Replies carry errors as text because the
/// connection's error stays with the task (which ends the session on it).
pub(crate) enum Request {
    Door { door: u32, open: bool, reply: oneshot::Sender<Result<(), String>> },
    Weights(oneshot::Sender<Result<(), String>>),
    Disconnect(oneshot::Sender<()>),
    Reconnect(oneshot::Sender<Result<(), String>>),
    Stop,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimCabinetOptions {
    pub channels: u32,
    /// Noise of one reading, standard deviation in grams.
    pub noise_g: f64,
    pub creep_g_per_h: f64,
    /// Realistic cells (spikes, temperature, creep under load, settling, a shake at the door's
    /// close, non-linearity: `ScaleOptions::realistic`) rather than noise and drift only.
    pub realistic: bool,
    /// Seed for the load cells and their noise, for repeatable tests.
    pub seed: Option<u64>,
    pub faults: Vec<(u32, Fault)>,
    /// GCJ-02 (lat, lng) reported at login.
    pub position: Option<(f64, f64)>,
    /// MQTT keep-alive ([`super::KEEP_ALIVE`] unless set).
    pub keep_alive: Duration,
}

impl Default for SimCabinetOptions {
    fn default() -> Self {
        let scale = ScaleOptions::default();
        SimCabinetOptions {
            channels: 16,
            noise_g: scale.noise_g,
            creep_g_per_h: scale.creep_g_per_h,
            realistic: false,
            seed: None,
            faults: Vec::new(),
            position: None,
            keep_alive: super::KEEP_ALIVE,
        }
    }
}

impl SimCabinetOptions {
    pub fn physical(&self) -> PhysicalOptions {
        PhysicalOptions {
            channels: self.channels,
            scale: ScaleOptions {
                noise_g: self.noise_g,
                creep_g_per_h: self.creep_g_per_h,
                ..if self.realistic { ScaleOptions::realistic(self.noise_g) } else { ScaleOptions::default() }
            },
            seed: self.seed,
            faults: self.faults.clone(),
            ..PhysicalOptions::default()
        }
    }
}

/// What acts on a running simulated cabinet from outside: its physical state, and requests to
/// its session task (doors, weights, connection). Cheap to clone. [`SimCabinet`] is one plus the
/// task; a fleet started with [`super::spawn_remote_fleet`] hands out one per cabinet. When every
/// remote of a cabinet is dropped, the cabinet stops.
#[derive(Clone)]
pub struct CabinetRemote {
    sn: String,
    physical: Arc<Mutex<Physical>>,
    requests: mpsc::UnboundedSender<Request>,
}

impl CabinetRemote {
    pub(crate) fn new(sn: String, physical: Arc<Mutex<Physical>>, requests: mpsc::UnboundedSender<Request>) -> Self {
        CabinetRemote { sn, physical, requests }
    }

    pub fn sn(&self) -> &str {
        &self.sn
    }

    /// Act on the physical cabinet directly.
    pub fn physical<R>(&self, f: impl FnOnce(&mut Physical) -> R) -> R {
        f(&mut lock(&self.physical))
    }

    /// Publish a weight frame now, outside the cadence.
    pub async fn send_weights_now(&self) -> Result<(), DeviceClientError> {
        self.ask(Request::Weights).await
    }

    /// Whether an `open` command left the door unlocked (and nobody has opened it since).
    pub fn is_unlocked(&self, door: u32) -> bool {
        lock(&self.physical).is_unlocked(door)
    }

    /// Wait until the door is unlocked by an `open` command, at most `timeout`; returns whether it
    /// was. Woken by the unlock itself, so no polling delay.
    pub async fn wait_unlocked(&self, door: u32, timeout: Duration) -> bool {
        let signal = lock(&self.physical).unlock_signal();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Created before the check, so an unlock between the two still wakes it.
            let unlocked = signal.notified();
            if self.is_unlocked(door) {
                return true;
            }
            if tokio::time::timeout_at(deadline, unlocked).await.is_err() {
                return false;
            }
        }
    }

    /// Open a door; the `up/door` frame (with counts) is published before this returns.
    pub async fn open_door(&self, door: u32) -> Result<(), DeviceClientError> {
        self.ask(|reply| Request::Door { door, open: true, reply }).await
    }

    /// Close a door; the `up/door` frame is published before this returns.
    pub async fn close_door(&self, door: u32) -> Result<(), DeviceClientError> {
        self.ask(|reply| Request::Door { door, open: false, reply }).await
    }

    async fn ask(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<(), String>>) -> Request,
    ) -> Result<(), DeviceClientError> {
        let (reply, answer) = oneshot::channel();
        let gone = || DeviceClientError::Connection("the simulated cabinet has stopped".into());
        self.requests.send(request(reply)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?.map_err(DeviceClientError::Connection)
    }
}

/// A running simulated cabinet. Dropping it (and every clone of its remote) stops the cabinet: its
/// task notices the handle is gone and disconnects.
pub struct SimCabinet {
    remote: CabinetRemote,
    stats: Arc<SimStats>,
    task: tokio::task::JoinHandle<()>,
}

impl SimCabinet {
    /// Connect, log in, and run the cabinet in a spawned task. Fails when the first connection or
    /// login fails; later losses are retried with backoff, as a real cabinet does.
    pub async fn start(
        creds: Credentials,
        broker: &str,
        opts: SimCabinetOptions,
    ) -> Result<SimCabinet, DeviceClientError> {
        let physical = Arc::new(Mutex::new(Physical::new(&opts.physical())));
        let (requests, rx) = mpsc::unbounded_channel();
        // No fleet-wide rate: the cadence of login_ack rules.
        let (_, weight_every_ms) = watch::channel(0);
        let b = Behaviour {
            broker: broker.to_string(),
            keep_alive: opts.keep_alive,
            drop_heartbeats: 0.0,
            bad_signatures: 0.0,
            disconnect_after: None,
            door_open: false,
            lanes: opts.channels as usize,
            weight_every_ms,
            without_login: None,
        };
        let rig = Rig::with_requests(physical.clone(), opts.position, rx);
        let stats = Arc::new(SimStats::default());
        let mut boot = first_boot() + 1;
        let (dev, cadence) = open_session(&creds, &b, &rig, &stats, &mut boot).await?;
        let remote = CabinetRemote::new(creds.sn.clone(), physical, requests);
        let connected = Connected { dev, cadence, boot };
        let task = tokio::spawn(run_sessions(creds, b, rig, stats.clone(), Some(connected)));
        Ok(SimCabinet { remote, stats, task })
    }

    pub fn sn(&self) -> &str {
        self.remote.sn()
    }

    /// What a shopper (or anything else outside the test) needs to act on this cabinet; the
    /// cabinet keeps running while this handle lives.
    pub fn remote(&self) -> &CabinetRemote {
        &self.remote
    }

    /// The boot of the current (or last) login: commands must carry it.
    pub fn boot(&self) -> u64 {
        lock(&self.remote.physical).boot()
    }

    /// Act on the physical cabinet directly (anything the methods below do not cover).
    pub fn physical<R>(&self, f: impl FnOnce(&mut Physical) -> R) -> R {
        f(&mut lock(&self.remote.physical))
    }

    pub fn stock(&self, channel: u32, unit_g: f64, units: u32) -> Result<(), CabinetError> {
        lock(&self.remote.physical).stock(channel, unit_g, units)
    }

    pub fn take(&self, channel: u32, units: u32) -> Result<(), CabinetError> {
        lock(&self.remote.physical).take(channel, units)
    }

    pub fn put(&self, channel: u32, units: u32) -> Result<(), CabinetError> {
        lock(&self.remote.physical).put(channel, units)
    }

    /// A fault the nightly stocktake must catch: the door pulled open with no session (a broken
    /// lock, a forced door), `units` taken from `channel` while a few open-door readings go out,
    /// and the door shut again.
    pub async fn force_take(&self, door: u32, channel: u32, units: u32) -> Result<(), SimFault> {
        self.open_door(door).await?;
        self.take(channel, units)?;
        for _ in 0..3 {
            self.send_weights_now().await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.close_door(door).await?;
        Ok(())
    }

    /// A fault the nightly stocktake must catch: `units` leave `channel` behind the closed door
    /// after Heft weighed the session before (a settlement or a restock count that missed them:
    /// the shopper's hand still in the door, the restocker taking one back). The readings that
    /// follow show it.
    pub fn slip_out(&self, channel: u32, units: u32) -> Result<(), CabinetError> {
        self.take(channel, units)
    }

    pub fn place_grams(&self, channel: u32, g: f64) -> Result<(), CabinetError> {
        lock(&self.remote.physical).place_grams(channel, g)
    }

    pub fn remove_grams(&self, channel: u32, g: f64) -> Result<(), CabinetError> {
        lock(&self.remote.physical).remove_grams(channel, g)
    }

    /// Ground truth per channel (index = channel), tray excluded.
    pub fn truth(&self) -> Vec<LaneTruth> {
        lock(&self.remote.physical).truth()
    }

    pub fn last_config(&self) -> Option<ConfigCmd> {
        lock(&self.remote.physical).last_config().cloned()
    }

    pub fn price_tags(&self) -> Vec<PriceTag> {
        lock(&self.remote.physical).price_tags()
    }

    /// Acks published so far (lost ones, see `set_drop_acks`, not counted).
    pub fn acks_sent(&self) -> u64 {
        self.stats.acks_sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The cabinet's counters (frames, weights, doors, acks, reconnects…).
    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// Carry out the next `n` commands but lose their acks, so Heft has to retry.
    pub fn set_drop_acks(&self, n: u32) {
        lock(&self.remote.physical).drop_acks = n;
    }

    /// Refuse every command (ok: false, "refused by test") until turned off.
    pub fn set_refuse(&self, refuse: bool) {
        lock(&self.remote.physical).refuse = refuse;
    }

    /// Whether an `open` command left the door unlocked (and nobody has opened it since).
    pub fn is_unlocked(&self, door: u32) -> bool {
        self.remote.is_unlocked(door)
    }

    /// Wait until Heft's `open` command unlocks the door, at most `timeout`; returns whether it did.
    pub async fn wait_unlocked(&self, door: u32, timeout: Duration) -> bool {
        self.remote.wait_unlocked(door, timeout).await
    }

    /// Open a door; the `up/door` frame is published before this returns, and weights stream at
    /// the open-door period.
    pub async fn open_door(&self, door: u32) -> Result<(), DeviceClientError> {
        self.remote.open_door(door).await
    }

    /// Close a door; the `up/door` frame is published before this returns. Once every door is
    /// closed, weights follow the after-close period, then the closed one.
    pub async fn close_door(&self, door: u32) -> Result<(), DeviceClientError> {
        self.remote.close_door(door).await
    }

    /// Publish a weight frame now, outside the cadence.
    pub async fn send_weights_now(&self) -> Result<(), DeviceClientError> {
        self.remote.send_weights_now().await
    }

    /// Drop the connection and stay offline until [`SimCabinet::reconnect`].
    pub async fn disconnect(&self) {
        let (reply, done) = oneshot::channel();
        if self.remote.requests.send(Request::Disconnect(reply)).is_ok() {
            let _ = done.await;
        }
    }

    /// Connect and log in again (with a new boot) after [`SimCabinet::disconnect`]; returns
    /// once logged in. Does nothing when connected.
    pub async fn reconnect(&self) -> Result<(), DeviceClientError> {
        self.remote.ask(Request::Reconnect).await
    }

    /// Disconnect and end the cabinet's task.
    pub async fn stop(self) {
        let _ = self.remote.requests.send(Request::Stop);
        // Bounded, so a task stuck in a connect attempt cannot hang a test.
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(15), &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// A stand-in for Heft's device side, for tests of the simulator without a server: an embedded
/// broker whose local link answers every login with `ok` and a fast cadence, records every upstream
/// frame (signature checked) and publishes signed commands. Needs the actix runtime
/// (`#[actix_rt::test]`) for the broker's listener.
#[cfg(test)]
pub(crate) mod fake_heft {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use base64::Engine;
    use rumqttd::Notification;
    use serde_json::{Value, json};
    use tokio::sync::mpsc;

    use crate::device::broker::{Broker, Downlink};
    use crate::device::frame::{self, Cadence, Envelope};
    use crate::provision::Credentials;

    pub const CADENCE: Cadence = Cadence {
        heartbeat_s: 3600,
        closed_weight_s: 3600,
        open_weight_ms: 100,
        after_close_weight_ms: 100,
        after_close_s: 1,
    };

    pub struct FakeHeft {
        pub broker: String,
        pub creds: Credentials,
        pub commands: Commander,
        /// Upstream frames as (kind, m).
        frames: mpsc::UnboundedReceiver<(String, Value)>,
        _running: Broker,
    }

    /// Sends signed commands to the cabinet, from anywhere (a mock HTTP handler).
    #[derive(Clone)]
    pub struct Commander {
        sn: String,
        key: Vec<u8>,
        downlink: Downlink,
        /// The last accepted login's boot, for commands.
        boot: Arc<AtomicU64>,
        /// Downstream seq: above the login_ack's, which is the clock in ms at login.
        seq: Arc<AtomicU64>,
    }

    impl Commander {
        /// Publish a signed command of `kind` with `body`'s fields, for the current boot.
        pub fn command(&self, kind: &str, cmd_id: &str, body: Value) {
            let mut m = json!({"boot": self.boot.load(Ordering::SeqCst),
                "seq": self.seq.fetch_add(1, Ordering::SeqCst), "cmd_id": cmd_id});
            if let (Some(m), Value::Object(b)) = (m.as_object_mut(), body) {
                m.extend(b);
            }
            let topic = format!("cabinets/{}/down/{kind}", self.sn);
            self.downlink.publish(topic.clone(), frame::sign(&self.key, &topic, &m).expect("sign")).expect("publish");
        }
    }

    impl FakeHeft {
        pub async fn start(sn: &str) -> FakeHeft {
            let port =
                std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
            let mut cfg: crate::config::MqttConfig = toml::from_str(&format!(
                "listen = \"127.0.0.1:{port}\"\nmax_connections = 16\nmax_packet_bytes = 65536\n\
                 max_frame_bytes = 16384\nconnection_timeout_ms = 5000\nmax_inflight_count = 100\n\
                 max_outgoing_packet_count = 200\nmax_segment_size = 65536\nmax_segment_count = 4\n\
                 next_connection_delay_ms = 0\nbridge_queue = 1024"
            ))
            .expect("mqtt config");
            cfg.max_connections = 16;
            let auth: crate::device::broker::AuthFn = Box::new(|_, _, _| Box::pin(async { true }));
            let (running, links) = Broker::start(&cfg, auth).await.expect("broker starts");
            let mut link = links.up;
            // The listener binds on its own thread, a moment after start returns.
            let mut tries = 0;
            while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
                tries += 1;
                assert!(tries < 200, "the fake broker never listened");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let key: Vec<u8> = (0..32u8).collect();
            let creds = Credentials {
                sn: sn.to_string(),
                token: "fake-token".into(),
                frame_key: base64::engine::general_purpose::STANDARD.encode(&key),
            };
            let downlink = running.downlink.clone();
            let boot = Arc::new(AtomicU64::new(0));
            let (tx, frames) = mpsc::unbounded_channel();
            let (k, d, b, sn) = (key.clone(), downlink.clone(), boot.clone(), sn.to_string());
            tokio::spawn(async move {
                loop {
                    match link.next().await {
                        Ok(Some(Notification::Forward(f))) => {
                            let topic = String::from_utf8_lossy(&f.publish.topic).to_string();
                            let Some(kind) = topic.strip_prefix(&format!("cabinets/{sn}/up/")) else { continue };
                            let env = Envelope::parse(&f.publish.payload).expect("envelope");
                            env.verify(topic.as_bytes(), &k).expect("signed with the cabinet's key");
                            let m: Value = env.message().expect("json");
                            if kind == "login" {
                                let login_boot = m["boot"].as_u64().expect("boot");
                                b.store(login_boot, Ordering::SeqCst);
                                let now = chrono::Utc::now().timestamp_millis();
                                let ack = json!({"boot": login_boot, "seq": now, "ok": true,
                                    "server_time_ms": now, "cadence": CADENCE});
                                let t = format!("cabinets/{sn}/down/login_ack");
                                d.publish(t.clone(), frame::sign(&k, &t, &ack).expect("sign")).expect("publish");
                            }
                            let _ = tx.send((kind.to_string(), m));
                        }
                        Ok(Some(Notification::Unschedule)) => {
                            if link.wake().await.is_err() {
                                break;
                            }
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            });
            let seq = Arc::new(AtomicU64::new(chrono::Utc::now().timestamp_millis() as u64 + 600_000));
            let commands = Commander { sn: creds.sn.clone(), key, downlink, boot, seq };
            FakeHeft { broker: format!("127.0.0.1:{port}"), creds, commands, frames, _running: running }
        }

        pub fn command(&self, kind: &str, cmd_id: &str, body: Value) {
            self.commands.command(kind, cmd_id, body)
        }

        /// The next upstream frame, if one comes within `wait`.
        pub async fn next(&mut self, wait: Duration) -> Option<(String, Value)> {
            tokio::time::timeout(wait, self.frames.recv()).await.ok().flatten()
        }

        /// The next frame of `kind`, skipping others.
        pub async fn next_of(&mut self, kind: &str, wait: Duration) -> Option<Value> {
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let (k, m) = self.next(deadline.saturating_duration_since(tokio::time::Instant::now())).await?;
                if k == kind {
                    return Some(m);
                }
            }
        }

        /// Frames up to and including the next login, dropped; returns the login.
        pub async fn skip_to_login(&mut self, wait: Duration) -> Option<Value> {
            self.next_of("login", wait).await
        }

        /// Every frame that arrives within `wait`.
        pub async fn collect(&mut self, wait: Duration) -> Vec<(String, Value)> {
            let deadline = tokio::time::Instant::now() + wait;
            let mut got = Vec::new();
            while let Some(f) = self.next(deadline.saturating_duration_since(tokio::time::Instant::now())).await {
                got.push(f);
            }
            got
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::fake_heft::FakeHeft;
    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    fn opts() -> SimCabinetOptions {
        SimCabinetOptions { channels: 4, seed: Some(3), ..SimCabinetOptions::default() }
    }

    fn doors(frames: &[(String, serde_json::Value)]) -> Vec<(u64, bool)> {
        frames
            .iter()
            .filter(|(k, _)| k == "door")
            .map(|(_, m)| (m["door"].as_u64().expect("door"), m["open"].as_bool().expect("open")))
            .collect()
    }

    #[actix_rt::test]
    async fn after_a_login_the_cabinet_reports_open_doors_and_doors_moved_offline() {
        let mut heft = FakeHeft::start("SIM-DOORS").await;
        let cab = SimCabinet::start(heft.creds.clone(), &heft.broker, opts()).await.expect("logs in");
        heft.skip_to_login(WAIT).await.expect("login");
        let quiet = heft.collect(Duration::from_millis(300)).await;
        assert_eq!(doors(&quiet), vec![], "nothing open, nothing moved: no door frame");

        cab.open_door(1).await.expect("door frame sent");
        let open = heft.next_of("door", WAIT).await.expect("door frame");
        assert_eq!((open["door"].clone(), open["open"].clone()), (json!(1), json!(true)));
        assert_eq!(open["counts"].as_array().map(Vec::len), Some(4));

        // Offline, door 1 closes and door 2 opens; nobody hears it.
        cab.disconnect().await;
        assert!(cab.close_door(1).await.is_err(), "not connected");
        assert!(cab.open_door(2).await.is_err(), "not connected");
        heft.collect(Duration::from_millis(200)).await;
        cab.reconnect().await.expect("logs in again");
        heft.skip_to_login(WAIT).await.expect("login");
        // The door frames come first, before any weight.
        let first: Vec<_> = [heft.next(WAIT).await, heft.next(WAIT).await].into_iter().flatten().collect();
        assert_eq!(doors(&first), vec![(1, false), (2, true)], "{first:?}");
        assert!(first.iter().all(|(_, m)| m["counts"].as_array().is_some_and(|c| c.len() == 4)));

        // Door 2 is still open: reported again after the next login, and only it.
        cab.disconnect().await;
        cab.reconnect().await.expect("logs in again");
        heft.skip_to_login(WAIT).await.expect("login");
        assert_eq!(doors(&heft.collect(Duration::from_millis(500)).await), vec![(2, true)]);

        // Closed while connected: Heft heard it, so nothing is owed after the next login.
        cab.close_door(2).await.expect("door frame sent");
        assert_eq!(heft.next_of("door", WAIT).await.map(|m| m["open"].clone()), Some(json!(false)));
        cab.disconnect().await;
        cab.reconnect().await.expect("logs in again");
        heft.skip_to_login(WAIT).await.expect("login");
        assert_eq!(doors(&heft.collect(Duration::from_millis(500)).await), vec![]);
        cab.stop().await;
    }

    /// `weigh`: weights at the after-close cadence (100 ms) for `after_close_s` (1 s), then back to
    /// the closed cadence (an hour here): nothing more.
    #[actix_rt::test]
    async fn weigh_streams_at_the_after_close_cadence_then_stops() {
        let mut heft = FakeHeft::start("SIM-WEIGH").await;
        let cab = SimCabinet::start(heft.creds.clone(), &heft.broker, opts()).await.expect("logs in");
        heft.skip_to_login(WAIT).await.expect("login");
        let weights = |frames: &[(String, serde_json::Value)]| frames.iter().filter(|(k, _)| k == "weight").count();
        assert_eq!(weights(&heft.collect(Duration::from_millis(300)).await), 0, "closed cadence: an hour");
        heft.command("weigh", "weigh-1", json!({}));
        let streamed = heft.collect(Duration::from_millis(1500)).await;
        let ack = streamed.iter().find(|(k, _)| k == "ack").map(|(_, m)| m.clone()).expect("ack");
        assert_eq!((ack["cmd_id"].clone(), ack["ok"].clone()), (json!("weigh-1"), json!(true)));
        let n = weights(&streamed);
        assert!((5..=12).contains(&n), "about ten readings in the second after weigh, got {n}");
        assert!(
            streamed
                .iter()
                .filter(|(k, _)| k == "weight")
                .all(|(_, m)| m["counts"].as_array().map(Vec::len) == Some(4))
        );
        assert_eq!(weights(&heft.collect(Duration::from_millis(1000)).await), 0, "back to the closed cadence");
        cab.stop().await;
    }

    #[actix_rt::test]
    async fn heft_opens_a_door_and_a_handle_waits_for_it() {
        let mut heft = FakeHeft::start("SIM-OPEN").await;
        let cab = SimCabinet::start(heft.creds.clone(), &heft.broker, opts()).await.expect("logs in");
        heft.skip_to_login(WAIT).await.expect("login");
        assert!(!cab.wait_unlocked(1, Duration::from_millis(100)).await, "nothing unlocked it");
        let waiter = {
            let remote = cab.remote().clone();
            tokio::spawn(async move { remote.wait_unlocked(1, WAIT).await })
        };
        heft.command("open", "open-1", json!({"door": 1, "session_id": 9, "unlock_s": 30}));
        assert!(waiter.await.expect("waiter"), "unlocked");
        let ack = heft.next_of("ack", WAIT).await.expect("ack");
        assert_eq!(
            (ack["cmd_id"].clone(), ack["ok"].clone(), ack["result"].clone()),
            (json!("open-1"), json!(true), json!({"door": 1}))
        );
        // The retry Heft sends when the ack is late: the same answer, no second unlock.
        cab.open_door(1).await.expect("door frame sent");
        assert!(!cab.is_unlocked(1), "opening used the unlock up");
        heft.command("open", "open-1", json!({"door": 1, "session_id": 9, "unlock_s": 30}));
        let again = heft.next_of("ack", WAIT).await.expect("ack");
        assert_eq!(again["result"], json!({"door": 1}));
        assert!(!cab.is_unlocked(1));
        cab.stop().await;
    }
}
