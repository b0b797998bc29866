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
    /// Seed for the load cells and their noise, for repeatable tests.
    pub seed: Option<u64>,
    pub faults: Vec<(u32, Fault)>,
    /// GCJ-02 (lat, lng) reported at login.
    pub position: Option<(f64, f64)>,
}

impl Default for SimCabinetOptions {
    fn default() -> Self {
        let scale = ScaleOptions::default();
        SimCabinetOptions {
            channels: 16,
            noise_g: scale.noise_g,
            creep_g_per_h: scale.creep_g_per_h,
            seed: None,
            faults: Vec::new(),
            position: None,
        }
    }
}

impl SimCabinetOptions {
    pub fn physical(&self) -> PhysicalOptions {
        PhysicalOptions {
            channels: self.channels,
            scale: ScaleOptions { noise_g: self.noise_g, creep_g_per_h: self.creep_g_per_h },
            seed: self.seed,
            faults: self.faults.clone(),
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
        self.remote.ask(Request::Weights).await
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
