//! The physical cabinet and its firmware logic, as plain state: load cells under lanes of
//! products, doors, the lane map and price labels Heft last sent, and the answers firmware gives
//! to commands. No MQTT here, so every rule can be unit tested; the simulator's session loop
//! (`super::run_cabinet`) and the test handle (`super::handle::SimCabinet`) drive it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::Notify;

use super::scale::{Fault, LoadCell, ScaleOptions};
use super::thermal::Thermal;
use crate::device::frame::Header;
use crate::device::messages::{
    AckUp, CalibrateCmd, CalibrateResult, CalibrationStep, Command, ConfigCmd, OpenCmd, OpenResult, PriceTag,
    PriceTagsCmd, VersionResult,
};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CabinetError {
    #[error("channel {channel} does not exist (the cabinet has {channels})")]
    NoSuchChannel { channel: u32, channels: u32 },
    #[error("channel {channel} holds {have} units, cannot take {want}")]
    NotEnoughUnits { channel: u32, have: u32, want: u32 },
    #[error("channel {channel} carries {have_g} g placed by hand, cannot remove {want_g} g")]
    NotEnoughGrams { channel: u32, have_g: f64, want_g: f64 },
    #[error("grams must be a finite number above zero, got {0}")]
    BadGrams(f64),
}

/// How to build a cabinet.
#[derive(Debug, Clone, PartialEq)]
pub struct PhysicalOptions {
    pub channels: u32,
    pub scale: ScaleOptions,
    /// Seed for every random draw (cells, noise); `None` draws one.
    pub seed: Option<u64>,
    /// Broken cells, by channel.
    pub faults: Vec<(u32, Fault)>,
    /// The cabinet's temperature; each cabinet starts at its own point of the cycle (the phase
    /// given here is ignored).
    pub thermal: Thermal,
}

impl Default for PhysicalOptions {
    fn default() -> Self {
        PhysicalOptions {
            channels: 16,
            scale: ScaleOptions::default(),
            seed: None,
            faults: Vec::new(),
            thermal: Thermal::fridge(),
        }
    }
}

/// What a channel really carries.
#[derive(Debug, Clone, Default, PartialEq)]
struct Load {
    unit_g: f64,
    units: u32,
    /// Anything placed by hand (`place_grams`).
    extra_g: f64,
    /// The calibration operator's standard weight, while it is on the lane.
    standard_g: f64,
}

impl Load {
    fn grams(&self) -> f64 {
        self.unit_g * f64::from(self.units) + self.extra_g + self.standard_g
    }
}

/// The ground truth of one channel, tray excluded: what Heft's grams should come close to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LaneTruth {
    /// The lane Heft's last `config` put on this channel, if any.
    pub code: Option<String>,
    pub channel: u32,
    pub door: Option<u32>,
    pub unit_g: f64,
    pub units: u32,
    pub grams: f64,
}

/// An `up/ack` without the header, which the sender adds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AckBody {
    pub cmd_id: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

impl AckBody {
    fn ok(cmd_id: &str, result: serde_json::Value) -> AckBody {
        AckBody { cmd_id: cmd_id.to_string(), ok: true, error: None, result: Some(result) }
    }

    fn failed(cmd_id: &str, error: &str) -> AckBody {
        AckBody { cmd_id: cmd_id.to_string(), ok: false, error: Some(error.to_string()), result: None }
    }

    pub fn into_ack(self, h: Header) -> AckUp {
        AckUp { h, cmd_id: self.cmd_id, ok: self.ok, error: self.error, result: self.result }
    }
}

/// Results of executed commands kept for answering retries; Heft retries within seconds, so a
/// short memory is enough.
const REMEMBERED_RESULTS: usize = 64;

/// Readings averaged for one calibration reading: firmware waits for the lane to settle and
/// averages, as a real cabinet does before reporting a calibration point (about 0.8 s at 80 Hz).
pub const SETTLED_SAMPLES: u32 = 64;

/// The most separate calibration readings a command gets (`samples`): 51 s at 80 Hz.
pub const MAX_SAMPLES: u32 = 4096;

/// The ADC's rate: 80 Hz.
pub const SAMPLE_PERIOD: Duration = Duration::from_micros(12_500);

/// How long firmware waits after the operator placed the standard weights before it reads: the
/// lanes' ringing is gone by then, their creep is not.
pub const SETTLE_TIME: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Physical {
    cells: Vec<LoadCell>,
    loads: Vec<Load>,
    open_doors: BTreeSet<u32>,
    /// Doors unlocked by `open`, with when each locks itself again.
    unlocked: BTreeMap<u32, Instant>,
    /// Woken on every unlock, for handles waiting for one (`SimCabinet::wait_unlocked`).
    unlock_signal: Arc<Notify>,
    /// Doors that moved without Heft hearing it (offline, or the frame could not be sent); they
    /// are reported after the next login (protocol §8).
    door_news: BTreeSet<u32>,
    installed: Instant,
    /// How far the cabinet's own clock runs ahead of the real one: calibration readings are taken
    /// in simulated time (no real sleeping), which the cabinet has then spent.
    ahead: Duration,
    thermal: Thermal,
    config: Option<ConfigCmd>,
    labels: BTreeMap<String, PriceTag>,
    /// The boot whose downstream frames are being checked, and the highest seq executed in it.
    boot: u64,
    last_down_seq: u64,
    /// Executed commands of this boot and their acks, oldest first.
    done: VecDeque<AckBody>,
    /// Test knob: execute but do not answer this many more commands (the ack is lost).
    pub drop_acks: u32,
    /// Test knob: refuse every command.
    pub refuse: bool,
}

impl Physical {
    pub fn new(opts: &PhysicalOptions) -> Physical {
        let mut rng = StdRng::seed_from_u64(opts.seed.unwrap_or_else(rand::random));
        let cells = (0..opts.channels)
            .map(|ch| {
                let fault = opts.faults.iter().find(|(c, _)| *c == ch).map(|(_, f)| *f);
                LoadCell::random(&mut rng, opts.scale, fault)
            })
            .collect();
        // After the cells, so a seed gives the cells it always gave.
        let phase = opts.thermal.period.mul_f64(rng.gen_range(0.0..1.0));
        Physical::with_cells(cells).with_thermal(Thermal { phase, ..opts.thermal })
    }

    /// A cabinet with these exact cells, one per channel.
    pub fn with_cells(cells: Vec<LoadCell>) -> Physical {
        Physical {
            loads: vec![Load::default(); cells.len()],
            cells,
            open_doors: BTreeSet::new(),
            unlocked: BTreeMap::new(),
            unlock_signal: Arc::new(Notify::new()),
            door_news: BTreeSet::new(),
            installed: Instant::now(),
            ahead: Duration::ZERO,
            thermal: Thermal::fridge(),
            config: None,
            labels: BTreeMap::new(),
            boot: 0,
            last_down_seq: 0,
            done: VecDeque::new(),
            drop_acks: 0,
            refuse: false,
        }
    }

    /// The same cabinet with this temperature (phase included).
    pub fn with_thermal(mut self, thermal: Thermal) -> Physical {
        self.thermal = thermal;
        self
    }

    pub fn thermal(&self) -> &Thermal {
        &self.thermal
    }

    /// The cabinet's own time since installation.
    pub fn now(&self) -> Duration {
        self.installed.elapsed() + self.ahead
    }

    /// The inside temperature `at` after installation, °C: what the cells feel and the heartbeat
    /// reports.
    pub fn temp_c_at(&self, at: Duration) -> f64 {
        self.thermal.temp_c_at(at)
    }

    /// Whether the heater (a fridge's compressor) runs `at` after installation.
    pub fn heating_at(&self, at: Duration) -> bool {
        self.thermal.heating_at(at)
    }

    /// Put random products on every channel (for fleets): 0 to 12 units of 50 to 600 g each.
    pub fn stock_randomly(&mut self, rng: &mut impl Rng) {
        for load in &mut self.loads {
            load.unit_g = (rng.gen_range(50.0..600.0_f64) * 10.0).round() / 10.0;
            load.units = rng.gen_range(0..=12);
        }
    }

    pub fn channels(&self) -> u32 {
        self.cells.len() as u32
    }

    pub fn cell(&self, channel: u32) -> Option<&LoadCell> {
        self.cells.get(channel as usize)
    }

    fn load(&mut self, channel: u32) -> Result<&mut Load, CabinetError> {
        let channels = self.channels();
        self.loads.get_mut(channel as usize).ok_or(CabinetError::NoSuchChannel { channel, channels })
    }

    /// Channel `channel`'s cell reads with `noise_g` of noise from now on.
    pub fn set_noise(&mut self, channel: u32, noise_g: f64) -> Result<(), CabinetError> {
        let channels = self.channels();
        let cell = self.cells.get_mut(channel as usize).ok_or(CabinetError::NoSuchChannel { channel, channels })?;
        cell.set_noise(noise_g);
        Ok(())
    }

    /// Fill a lane: `units` products of `unit_g` each, replacing what it held.
    pub fn stock(&mut self, channel: u32, unit_g: f64, units: u32) -> Result<(), CabinetError> {
        positive(unit_g)?;
        let load = self.load(channel)?;
        load.unit_g = unit_g;
        load.units = units;
        Ok(())
    }

    /// A customer takes `units` products.
    pub fn take(&mut self, channel: u32, units: u32) -> Result<(), CabinetError> {
        let load = self.load(channel)?;
        if load.units < units {
            return Err(CabinetError::NotEnoughUnits { channel, have: load.units, want: units });
        }
        load.units -= units;
        Ok(())
    }

    /// Products put back (or restocked) on the lane, of the lane's current unit weight.
    pub fn put(&mut self, channel: u32, units: u32) -> Result<(), CabinetError> {
        let load = self.load(channel)?;
        load.units = load.units.saturating_add(units);
        Ok(())
    }

    /// Something other than the lane's product put on it: a foreign item, a hand.
    pub fn place_grams(&mut self, channel: u32, g: f64) -> Result<(), CabinetError> {
        positive(g)?;
        self.load(channel)?.extra_g += g;
        Ok(())
    }

    pub fn remove_grams(&mut self, channel: u32, g: f64) -> Result<(), CabinetError> {
        positive(g)?;
        let load = self.load(channel)?;
        // A little slack for the rounding of repeated additions.
        if load.extra_g + 1e-9 < g {
            return Err(CabinetError::NotEnoughGrams { channel, have_g: load.extra_g, want_g: g });
        }
        load.extra_g = (load.extra_g - g).max(0.0);
        Ok(())
    }

    /// Someone pulls the door open. It need not be unlocked (tests open doors by hand); an unlock
    /// is used up by it. Returns whether the door was closed before.
    ///
    /// Every move counts as unheard until the caller reports it ([`Physical::door_reported`]).
    pub fn open(&mut self, door: u32) -> bool {
        self.unlocked.remove(&door);
        let changed = self.open_doors.insert(door);
        if changed {
            self.door_news.insert(door);
        }
        changed
    }

    /// Returns whether the door was open before. Closing it shakes its lanes' cells.
    pub fn close(&mut self, door: u32) -> bool {
        self.close_at(door, self.now())
    }

    /// As [`Physical::close`], `at` after installation.
    pub fn close_at(&mut self, door: u32, at: Duration) -> bool {
        let changed = self.open_doors.remove(&door);
        if changed {
            self.door_news.insert(door);
            for ch in self.door_channels(door) {
                if let Some(cell) = self.cells.get_mut(ch as usize) {
                    cell.shake(at);
                }
            }
        }
        changed
    }

    /// The channels behind a door by the last configuration; every channel when the cabinet does
    /// not know (no configuration, or a door it lacks), as the whole cabinet shakes anyway.
    fn door_channels(&self, door: u32) -> Vec<u32> {
        match self.config.iter().flat_map(|c| &c.doors).find(|d| d.door == door) {
            Some(d) => d.lanes.iter().map(|l| l.channel).collect(),
            None => (0..self.channels()).collect(),
        }
    }

    /// The controller lost power: with its RAM go the doors it owed Heft, so after the next login
    /// only the doors open then are reported (protocol §8).
    pub fn lose_power(&mut self) {
        self.door_news.clear();
    }

    /// Heft heard about the door's last move (its `up/door` frame went out).
    pub fn door_reported(&mut self, door: u32) {
        self.door_news.remove(&door);
    }

    /// The `up/door` frames owed after a login, as (door, open), by door: every door open now,
    /// and every door that moved while Heft could not hear it (so a door closed while offline is
    /// reported closed). Each stays owed until [`Physical::door_reported`].
    pub fn doors_to_report(&self) -> Vec<(u32, bool)> {
        let doors: BTreeSet<u32> = self.open_doors.union(&self.door_news).copied().collect();
        doors.into_iter().map(|d| (d, self.is_open(d))).collect()
    }

    /// Whether an `open` command left the door unlocked and nobody has opened it yet.
    pub fn is_unlocked(&self, door: u32) -> bool {
        self.is_unlocked_at(door, Instant::now())
    }

    /// As [`Physical::is_unlocked`], at another moment (the lock re-engages on its own, with no
    /// frame, when `unlock_s` has passed).
    pub fn is_unlocked_at(&self, door: u32, at: Instant) -> bool {
        self.unlocked.get(&door).is_some_and(|until| at < *until)
    }

    /// Notified whenever a door is unlocked.
    pub fn unlock_signal(&self) -> Arc<Notify> {
        self.unlock_signal.clone()
    }

    pub fn is_open(&self, door: u32) -> bool {
        self.open_doors.contains(&door)
    }

    pub fn any_open(&self) -> bool {
        !self.open_doors.is_empty()
    }

    /// Ground truth per channel (index = channel), tray excluded.
    pub fn truth(&self) -> Vec<LaneTruth> {
        let lanes: BTreeMap<u32, (String, u32)> = self
            .config
            .iter()
            .flat_map(|c| &c.doors)
            .flat_map(|d| d.lanes.iter().map(move |l| (l.channel, (l.code.clone(), d.door))))
            .collect();
        self.loads
            .iter()
            .enumerate()
            .map(|(ch, load)| {
                let channel = ch as u32;
                let lane = lanes.get(&channel);
                LaneTruth {
                    code: lane.map(|l| l.0.clone()),
                    channel,
                    door: lane.map(|l| l.1),
                    unit_g: load.unit_g,
                    units: load.units,
                    grams: load.grams(),
                }
            })
            .collect()
    }

    /// One reading of every channel, index = channel.
    pub fn read_counts(&mut self) -> Vec<i64> {
        self.read_counts_at(self.now())
    }

    /// As [`Physical::read_counts`], `at` after installation (tests drive simulated time with it:
    /// creep, temperature, settling).
    pub fn read_counts_at(&mut self, at: Duration) -> Vec<i64> {
        let temp_c = self.temp_c_at(at);
        self.cells.iter_mut().zip(&self.loads).map(|(cell, load)| cell.read(load.grams(), at, temp_c)).collect()
    }

    /// The loads of `channels` were just set by hand at `at`: their cells start settling then.
    fn placed(&mut self, channels: &[u32], at: Duration) {
        for &ch in channels {
            let ch = ch as usize;
            if let (Some(cell), Some(load)) = (self.cells.get_mut(ch), self.loads.get(ch)) {
                cell.set_load(load.grams(), at);
            }
        }
    }

    /// `n` readings of `channels` at the ADC's rate from `from`: one row of counts per reading, in
    /// the order of `channels`.
    fn sample(&mut self, channels: &[u32], n: u32, from: Duration) -> Vec<Vec<i64>> {
        (0..n)
            .map(|i| {
                let at = from + SAMPLE_PERIOD * i;
                let temp_c = self.temp_c_at(at);
                let read = |ch: &u32| {
                    let ch = *ch as usize;
                    match (self.cells.get_mut(ch), self.loads.get(ch)) {
                        (Some(cell), Some(load)) => cell.read(load.grams(), at, temp_c),
                        _ => 0,
                    }
                };
                channels.iter().map(read).collect()
            })
            .collect()
    }

    pub fn last_config(&self) -> Option<&ConfigCmd> {
        self.config.as_ref()
    }

    /// What the shelf labels show, by lane code.
    pub fn price_tags(&self) -> Vec<PriceTag> {
        self.labels.values().cloned().collect()
    }

    /// The boot whose commands are obeyed.
    pub fn boot(&self) -> u64 {
        self.boot
    }

    /// A login was accepted: a new boot, whose downstream frames must have a seq above the
    /// login_ack's. Executed commands of the old boot are forgotten.
    pub fn begin_boot(&mut self, boot: u64, login_ack_seq: u64) {
        self.boot = boot;
        self.last_down_seq = login_ack_seq;
        self.done.clear();
    }

    /// The check of every downstream frame (protocol §7): for the current boot, with a seq above
    /// the last one executed. Advances the seq when it passes.
    pub fn accept_down(&mut self, m: &serde_json::Value, boot: u64) -> bool {
        if boot != self.boot {
            self.begin_boot(boot, 0);
        }
        let for_us = m.get("boot").and_then(|v| v.as_u64()) == Some(boot);
        let seq = m.get("seq").and_then(|v| v.as_u64()).unwrap_or(0);
        if !for_us || seq <= self.last_down_seq {
            return false;
        }
        self.last_down_seq = seq;
        true
    }

    /// What firmware does with a verified command of `kind` while logged in with `boot`: the ack
    /// to send, or `None` when it is ignored (another boot, an old seq, no cmd_id) or its ack is
    /// to be lost (`drop_acks`). A `cmd_id` already executed is answered with the same result
    /// again and not executed twice.
    pub fn handle(&mut self, kind: &str, m: &serde_json::Value, boot: u64) -> Option<AckBody> {
        if !self.accept_down(m, boot) {
            return None;
        }
        let cmd_id = m.get("cmd_id").and_then(|v| v.as_str())?;
        let ack = if let Some(done) = self.done.iter().find(|a| a.cmd_id == cmd_id) {
            done.clone()
        } else if self.refuse {
            // Not remembered: refusing is not executing, so a retry after the knob is turned
            // off is carried out.
            AckBody::failed(cmd_id, "refused by test")
        } else {
            let ack = self.execute(kind, cmd_id, m);
            if self.done.len() == REMEMBERED_RESULTS {
                self.done.pop_front();
            }
            self.done.push_back(ack.clone());
            ack
        };
        if self.drop_acks > 0 {
            self.drop_acks -= 1;
            return None;
        }
        Some(ack)
    }

    fn execute(&mut self, kind: &str, cmd_id: &str, m: &serde_json::Value) -> AckBody {
        let result = match kind {
            "config" => parse::<ConfigCmd>(m).and_then(|c| self.configure(c)),
            "price_tags" => parse::<PriceTagsCmd>(m).and_then(|p| self.label(p)),
            "calibrate" => parse::<CalibrateCmd>(m).and_then(|c| self.calibrate(c)),
            "open" => parse::<OpenCmd>(m).and_then(|o| self.unlock(o)),
            // The streaming itself is the connection loop's (`sim::run`): it sees the ack.
            "weigh" => Ok(serde_json::json!({})),
            _ => Err("unsupported"),
        };
        match result {
            Ok(r) => AckBody::ok(cmd_id, r),
            Err(e) => AckBody::failed(cmd_id, e),
        }
    }

    fn configure(&mut self, c: ConfigCmd) -> Result<serde_json::Value, &'static str> {
        // Firmware refuses a map naming a channel it does not have, rather than half-apply it.
        if c.doors.iter().flat_map(|d| &d.lanes).any(|l| l.channel >= self.channels()) {
            return Err("no_such_channel");
        }
        let version = version(c.version);
        self.config = Some(c);
        version
    }

    fn label(&mut self, p: PriceTagsCmd) -> Result<serde_json::Value, &'static str> {
        // Every label is its own device: one not named keeps what it showed.
        for tag in p.tags {
            self.labels.insert(tag.lane.clone(), tag);
        }
        version(p.version)
    }

    /// Unlock the door for `unlock_s`. Without a configuration the cabinet cannot know its doors,
    /// so it trusts the command.
    fn unlock(&mut self, o: OpenCmd) -> Result<serde_json::Value, &'static str> {
        if let Some(c) = &self.config
            && !c.doors.iter().any(|d| d.door == o.door)
        {
            return Err("no_such_door");
        }
        self.unlocked.insert(o.door, Instant::now() + Duration::from_secs(o.unlock_s));
        self.unlock_signal.notify_waiters();
        serde_json::to_value(OpenResult { door: o.door }).map_err(|_| "internal")
    }

    /// The simulated operator follows the cabinet's display: empty lanes for `tare` (taking off
    /// their own standard weights, but no products), the standard weight on every lane for `span`
    /// (left there) and `verify` (taken off again after the reading).
    fn calibrate(&mut self, c: CalibrateCmd) -> Result<serde_json::Value, &'static str> {
        if c.channels.iter().any(|&ch| ch >= self.channels()) {
            return Err("no_such_channel");
        }
        let standard_g = match (c.step, c.standard_g) {
            (CalibrationStep::Tare, _) => 0.0,
            (_, Some(g)) if g.is_finite() && g > 0.0 => g,
            _ => return Err("bad_command"),
        };
        for &ch in &c.channels {
            self.loads[ch as usize].standard_g = standard_g;
        }
        let placed_at = self.now();
        self.placed(&c.channels, placed_at);
        // Without `samples`, the mean of SETTLED_SAMPLES readings, as firmware always answered.
        let n = c.samples.map_or(SETTLED_SAMPLES, |n| n.clamp(1, MAX_SAMPLES));
        let samples = self.sample(&c.channels, n, placed_at + SETTLE_TIME);
        let counts = mean_counts(&samples, c.channels.len());
        // The cabinet spent that time reading; its clock goes on from there.
        let done = SETTLE_TIME + SAMPLE_PERIOD * n;
        self.ahead += done;
        if c.step == CalibrationStep::Verify {
            for &ch in &c.channels {
                self.loads[ch as usize].standard_g = 0.0;
            }
            self.placed(&c.channels, placed_at + done);
        }
        let samples = if c.samples.is_some() { samples } else { Vec::new() };
        serde_json::to_value(CalibrateResult { counts, samples, door_open: self.is_open(c.door) })
            .map_err(|_| "internal")
    }
}

/// Each column's mean (rounded toward zero, as firmware's integer division does).
fn mean_counts(samples: &[Vec<i64>], columns: usize) -> Vec<i64> {
    let n = samples.len().max(1) as i128;
    (0..columns)
        .map(|j| {
            let sum: i128 = samples.iter().filter_map(|row| row.get(j)).map(|&c| i128::from(c)).sum();
            (sum / n) as i64
        })
        .collect()
}

fn parse<T: serde::de::DeserializeOwned>(m: &serde_json::Value) -> Result<T, &'static str> {
    serde_json::from_value::<Command<T>>(m.clone()).map(|c| c.body).map_err(|_| "bad_command")
}

fn version(version: u64) -> Result<serde_json::Value, &'static str> {
    serde_json::to_value(VersionResult { version }).map_err(|_| "internal")
}

fn positive(g: f64) -> Result<(), CabinetError> {
    if g.is_finite() && g > 0.0 { Ok(()) } else { Err(CabinetError::BadGrams(g)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::units::Fen;
    use serde_json::json;

    const BOOT: u64 = 7;

    /// Four quiet cells with known numbers: zero 100_000·(ch+1), gain 100 + 50·ch, tray 300 g.
    fn cabinet(noise_g: f64) -> Physical {
        let cells = (0..4)
            .map(|ch| LoadCell::new(100_000 * (ch + 1), 100.0 + 50.0 * ch as f64, 300.0, 0.0, noise_g, ch as u64))
            .collect();
        let mut p = Physical::with_cells(cells);
        p.begin_boot(BOOT, 100);
        p
    }

    fn cmd(seq: u64, cmd_id: &str, body: serde_json::Value) -> serde_json::Value {
        let mut m = json!({"boot": BOOT, "seq": seq, "cmd_id": cmd_id});
        if let (Some(m), serde_json::Value::Object(b)) = (m.as_object_mut(), body) {
            m.extend(b);
        }
        m
    }

    fn config(version: u64) -> serde_json::Value {
        json!({"version": version, "doors": [
            {"door": 0, "lanes": [{"code": "A1", "channel": 0}, {"code": "A2", "channel": 1}]},
            {"door": 1, "lanes": [{"code": "B1", "channel": 2}]}
        ]})
    }

    fn calibrate(step: &str, standard_g: Option<f64>) -> serde_json::Value {
        json!({"door": 0, "step": step, "channels": [1, 0], "standard_g": standard_g})
    }

    fn counts(ack: &AckBody) -> Vec<i64> {
        let r: CalibrateResult = serde_json::from_value(ack.result.clone().expect("result")).expect("calibrate result");
        r.counts
    }

    #[test]
    fn ignores_other_boots_and_old_seqs() {
        let mut p = cabinet(0.0);
        let mut other = cmd(200, "c1", config(1));
        other["boot"] = json!(BOOT - 1);
        assert_eq!(p.handle("config", &other, BOOT), None, "another boot");
        assert_eq!(p.handle("config", &cmd(100, "c1", config(1)), BOOT), None, "not above the login_ack's seq");
        assert!(p.last_config().is_none());
        assert!(p.handle("config", &cmd(201, "c1", config(1)), BOOT).is_some());
        assert_eq!(p.handle("config", &cmd(201, "c2", config(2)), BOOT), None, "same seq again");
        assert_eq!(p.handle("config", &cmd(150, "c3", config(3)), BOOT), None, "lower seq");
        assert_eq!(p.last_config().map(|c| c.version), Some(1));
        assert_eq!(p.handle("config", &json!({"boot": BOOT, "seq": 300}), BOOT), None, "no cmd_id to answer");
    }

    #[test]
    fn a_new_boot_starts_a_new_sequence() {
        let mut p = cabinet(0.0);
        assert!(p.handle("config", &cmd(500, "c1", config(1)), BOOT).is_some());
        p.begin_boot(BOOT + 1, 10);
        let mut m = cmd(11, "c2", config(2));
        m["boot"] = json!(BOOT + 1);
        assert!(p.handle("config", &m, BOOT + 1).is_some(), "seq compares within the new boot only");
    }

    #[test]
    fn a_retried_cmd_id_gets_the_same_ack_without_running_again() {
        let mut p = cabinet(2.0);
        let first = p.handle("calibrate", &cmd(101, "cal-1", calibrate("verify", Some(500.0))), BOOT).expect("ack");
        // Were it executed again, the noisy reading would differ.
        let again = p.handle("calibrate", &cmd(102, "cal-1", calibrate("verify", Some(500.0))), BOOT).expect("ack");
        assert_eq!(first, again);
        let other = p.handle("calibrate", &cmd(103, "cal-2", calibrate("verify", Some(500.0))), BOOT).expect("ack");
        assert_ne!(counts(&first), counts(&other), "a new cmd_id is executed");
        // The memory is bounded: the oldest results are forgotten.
        for i in 0..REMEMBERED_RESULTS as u64 {
            p.handle("price_tags", &cmd(200 + i, &format!("pt-{i}"), json!({"version": i, "tags": []})), BOOT);
        }
        let late = p.handle("calibrate", &cmd(1000, "cal-1", calibrate("verify", Some(500.0))), BOOT).expect("ack");
        assert_ne!(counts(&late), counts(&first), "forgotten, so executed again");
    }

    #[test]
    fn config_is_stored_and_acked_with_its_version() {
        let mut p = cabinet(0.0);
        let ack = p.handle("config", &cmd(101, "c1", config(4)), BOOT).expect("ack");
        assert_eq!(ack, AckBody { cmd_id: "c1".into(), ok: true, error: None, result: Some(json!({"version": 4})) });
        let c = p.last_config().expect("stored");
        assert_eq!(c.doors.len(), 2);
        assert_eq!(c.doors[1].lanes[0].code, "B1");
        let truth = p.truth();
        assert_eq!(truth.len(), 4);
        assert_eq!((truth[2].code.as_deref(), truth[2].door), (Some("B1"), Some(1)));
        assert_eq!((truth[3].code.as_deref(), truth[3].door), (None, None));
        // A map naming a channel the cabinet lacks is refused whole.
        let mut bad = config(5);
        bad["doors"][0]["lanes"][0]["channel"] = json!(4);
        let ack = p.handle("config", &cmd(102, "c2", bad), BOOT).expect("ack");
        assert_eq!((ack.ok, ack.error.as_deref()), (false, Some("no_such_channel")));
        assert_eq!(p.last_config().map(|c| c.version), Some(4));
    }

    #[test]
    fn price_tags_are_stored_and_acked_with_their_version() {
        let mut p = cabinet(0.0);
        let tags = json!({"version": 9, "tags": [
            {"lane": "A1", "name": "Cola 330ml", "price_fen": 350},
            {"lane": "A2", "name": "", "price_fen": 0}
        ]});
        let ack = p.handle("price_tags", &cmd(101, "p1", tags), BOOT).expect("ack");
        assert_eq!((ack.ok, ack.result), (true, Some(json!({"version": 9}))));
        let update = json!({"version": 10, "tags": [{"lane": "A1", "name": "Cola 500ml", "price_fen": 450}]});
        p.handle("price_tags", &cmd(102, "p2", update), BOOT).expect("ack");
        assert_eq!(
            p.price_tags(),
            vec![
                PriceTag { lane: "A1".into(), name: "Cola 500ml".into(), price_fen: Fen(450) },
                PriceTag { lane: "A2".into(), name: "".into(), price_fen: Fen(0) }
            ]
        );
    }

    #[test]
    fn unknown_and_malformed_commands_are_refused() {
        let mut p = cabinet(0.0);
        let ack = p.handle("reboot", &cmd(101, "r1", json!({})), BOOT).expect("ack");
        assert_eq!(ack, AckBody { cmd_id: "r1".into(), ok: false, error: Some("unsupported".into()), result: None });
        let ack = p.handle("config", &cmd(102, "c1", json!({"version": "x"})), BOOT).expect("ack");
        assert_eq!(ack.error.as_deref(), Some("bad_command"));
        let ack = p.handle("calibrate", &cmd(103, "k1", calibrate("span", None)), BOOT).expect("ack");
        assert_eq!(ack.error.as_deref(), Some("bad_command"), "span needs a standard weight");
        let mut far = calibrate("tare", None);
        far["channels"] = json!([0, 9]);
        let ack = p.handle("calibrate", &cmd(104, "k2", far), BOOT).expect("ack");
        assert_eq!(ack.error.as_deref(), Some("no_such_channel"));
    }

    #[test]
    fn the_operator_places_and_removes_the_standard_weight() {
        let mut p = cabinet(0.0);
        p.stock(3, 250.0, 2).expect("stock");
        // Tare: lanes as they are (empty trays), in the order asked: channel 1 then 0.
        let tare = p.handle("calibrate", &cmd(101, "t", calibrate("tare", None)), BOOT).expect("ack");
        assert_eq!(counts(&tare), vec![200_000 + 150 * 300, 100_000 + 100 * 300]);
        assert_eq!(tare.result.as_ref().map(|r| r["door_open"].clone()), Some(json!(false)));
        // Span: the weight goes on and stays.
        let span = p.handle("calibrate", &cmd(102, "s", calibrate("span", Some(500.0))), BOOT).expect("ack");
        assert_eq!(counts(&span), vec![200_000 + 150 * 800, 100_000 + 100 * 800]);
        assert_eq!(p.truth()[0].grams, 500.0);
        assert_eq!(p.truth()[3].grams, 500.0, "the stocked lane is untouched");
        // Verify with the door open: the weight is read (not doubled), then taken off.
        p.open(0);
        let verify = p.handle("calibrate", &cmd(103, "v", calibrate("verify", Some(500.0))), BOOT).expect("ack");
        assert_eq!(counts(&verify), counts(&span));
        assert_eq!(verify.result.as_ref().map(|r| r["door_open"].clone()), Some(json!(true)));
        assert_eq!((p.truth()[0].grams, p.truth()[1].grams), (0.0, 0.0));
        // A span left unverified: the next tare starts from empty lanes again.
        p.handle("calibrate", &cmd(104, "s2", calibrate("span", Some(500.0))), BOOT).expect("ack");
        let tare2 = p.handle("calibrate", &cmd(105, "t2", calibrate("tare", None)), BOOT).expect("ack");
        assert_eq!(counts(&tare2), counts(&tare));
    }

    #[test]
    fn calibrated_grams_track_the_truth() {
        let mut p = Physical::new(&PhysicalOptions { channels: 4, seed: Some(11), ..PhysicalOptions::default() });
        p.begin_boot(BOOT, 0);
        let step = |p: &mut Physical, seq, name: &str, g: Option<f64>| {
            let body = json!({"door": 0, "step": name, "channels": [0, 1, 2, 3], "standard_g": g});
            counts(&p.handle("calibrate", &cmd(seq, name, body), BOOT).expect("ack"))
        };
        let zero = step(&mut p, 1, "tare", None);
        let span = step(&mut p, 2, "span", Some(1000.0));
        let gain: Vec<f64> = zero.iter().zip(&span).map(|(z, s)| (s - z) as f64 / 1000.0).collect();
        let verify = step(&mut p, 3, "verify", Some(1000.0));
        for ch in 0..4 {
            let g = (verify[ch] - zero[ch]) as f64 / gain[ch];
            assert!((g - 1000.0).abs() < 1.5, "channel {ch} verifies at {g} g");
        }
        p.stock(0, 330.0, 6).expect("stock");
        p.stock(2, 95.5, 10).expect("stock");
        p.place_grams(3, 42.0).expect("place");
        // Single readings: within a few σ (2 g) of the truth.
        let read = p.read_counts();
        for t in p.truth() {
            let ch = t.channel as usize;
            let g = (read[ch] - zero[ch]) as f64 / gain[ch];
            assert!((g - t.grams).abs() < 10.0, "channel {ch}: read {g} g, truth {} g", t.grams);
        }
    }

    fn calibrate_result(ack: &AckBody) -> CalibrateResult {
        serde_json::from_value(ack.result.clone().expect("result")).expect("calibrate result")
    }

    fn sampled(step: &str, standard_g: Option<f64>, samples: u32) -> serde_json::Value {
        json!({"door": 0, "step": step, "channels": [1, 0], "standard_g": standard_g, "samples": samples})
    }

    #[test]
    fn calibrate_returns_separate_samples_on_request() {
        let mut p = cabinet(2.0);
        let before = p.now();
        let span = p.handle("calibrate", &cmd(101, "s", sampled("span", Some(500.0), 200)), BOOT).expect("ack");
        let r = calibrate_result(&span);
        assert_eq!((r.samples.len(), r.samples.iter().all(|row| row.len() == 2)), (200, true), "a row per reading");
        for (j, truth) in [(0, 200_000.0 + 150.0 * 800.0), (1, 100_000.0 + 100.0 * 800.0)] {
            let column: Vec<f64> = r.samples.iter().map(|row| row[j] as f64).collect();
            let sum: i64 = r.samples.iter().map(|row| row[j]).sum();
            assert_eq!(r.counts[j], sum / 200, "counts are the samples' mean");
            // Separate readings, each with its noise: σ = 2 g at 150 and 100 counts/g.
            let mean = column.iter().sum::<f64>() / 200.0;
            let sigma = (column.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / 199.0).sqrt();
            let gain = if j == 0 { 150.0 } else { 100.0 };
            assert!((sigma / gain - 2.0).abs() < 0.4, "channel column {j}: σ {} g", sigma / gain);
            assert!((mean - truth).abs() / gain < 1.0, "column {j}: mean {mean}, truth {truth}");
        }
        // 1 s for the lanes to settle, then 200 readings at 80 Hz, in the cabinet's own time.
        assert!(p.now() >= before + Duration::from_millis(3500), "{:?}", p.now() - before);
        let few = p.handle("calibrate", &cmd(102, "v", sampled("verify", Some(500.0), 0)), BOOT).expect("ack");
        assert_eq!(calibrate_result(&few).samples.len(), 1, "at least one");
        let many = p.handle("calibrate", &cmd(103, "t", sampled("tare", None, 100_000)), BOOT).expect("ack");
        assert_eq!(calibrate_result(&many).samples.len(), MAX_SAMPLES as usize, "at most {MAX_SAMPLES}");
        // Not asked for: one steady reading per channel, as before.
        let plain = p.handle("calibrate", &cmd(104, "t2", calibrate("tare", None)), BOOT).expect("ack");
        assert_eq!(plain.result.as_ref().map(|r| r.get("samples").is_none()), Some(true));
    }

    #[test]
    fn samples_start_once_the_lanes_settled() {
        // Cells whose lanes ring hard after a change (half the change at first) and creep fast
        // (0.1 % of the load, τ 2 s), so both would show.
        let creep_tau = Duration::from_secs(2);
        let opts =
            ScaleOptions { settle: 0.5, load_creep: 1e-3, load_creep_tau: creep_tau, ..ScaleOptions::clean(0.0) };
        let cells = (0..2).map(|ch| LoadCell::exact(100_000, 100.0, 300.0, opts, ch)).collect();
        let mut p = Physical::with_cells(cells);
        p.begin_boot(BOOT, 100);
        p.read_counts();
        // 80 readings from 1 s after the weight went on: no ringing (500 g off at first), and the
        // creep toward +1 g goes on from 0.39 g (1 − e^−0.5) to 0.63 g (1 − e^−1).
        let span = p.handle("calibrate", &cmd(101, "s", sampled("span", Some(1000.0), 80)), BOOT).expect("ack");
        let r = calibrate_result(&span);
        let grams = |c: i64| (c - 100_000) as f64 / 100.0 - 300.0 - 0.3;
        for (first, last) in [(r.samples[0][0], r.samples[79][0]), (r.samples[0][1], r.samples[79][1])] {
            assert!((grams(first) - 1000.39).abs() < 0.02 && (grams(last) - 1000.63).abs() < 0.02, "{first}, {last}");
        }
        assert!(r.samples.iter().flatten().all(|&c| (grams(c) - 1000.5).abs() < 0.15), "{:?}", r.samples);
        // Verify takes the weight off when done: the lanes ring from then.
        p.handle("calibrate", &cmd(102, "v", sampled("verify", Some(1000.0), 8)), BOOT).expect("ack");
        let lifted = p.read_counts_at(p.now());
        assert!(grams(lifted[0]) > 100.0, "still swinging back: {} g", grams(lifted[0]));
    }

    #[test]
    fn a_realistic_cabinet_still_calibrates() {
        let scale = ScaleOptions::realistic(2.0);
        let mut p =
            Physical::new(&PhysicalOptions { channels: 4, scale, seed: Some(11), ..PhysicalOptions::default() });
        p.begin_boot(BOOT, 0);
        let step = |p: &mut Physical, seq, name: &str, g: Option<f64>| {
            let body = json!({"door": 0, "step": name, "channels": [0, 1, 2, 3], "standard_g": g, "samples": 256});
            calibrate_result(&p.handle("calibrate", &cmd(seq, name, body), BOOT).expect("ack")).counts
        };
        let zero = step(&mut p, 1, "tare", None);
        let span = step(&mut p, 2, "span", Some(1000.0));
        let verify = step(&mut p, 3, "verify", Some(1000.0));
        for ch in 0..4 {
            let gain = (span[ch] - zero[ch]) as f64 / 1000.0;
            let g = (verify[ch] - zero[ch]) as f64 / gain;
            // A spike among the 256 readings moves the mean by at most 0.4 g.
            assert!((g - 1000.0).abs() < 2.0, "channel {ch} verifies at {g} g");
        }
    }

    #[test]
    fn closing_a_door_shakes_its_lanes() {
        let opts = ScaleOptions { shake_g: 10.0, ..ScaleOptions::clean(0.0) };
        let cells = (0..4).map(|ch| LoadCell::exact(100_000, 100.0, 300.0, opts, ch)).collect();
        let mut p = Physical::with_cells(cells);
        p.begin_boot(BOOT, 100);
        let still = p.read_counts_at(Duration::ZERO);
        let moved = |p: &mut Physical, from: Duration| {
            let mut moved = [false; 4];
            for k in 1..24 {
                let read = p.read_counts_at(from + SAMPLE_PERIOD * k);
                for ch in 0..4 {
                    moved[ch] |= read[ch] != still[ch];
                }
            }
            moved
        };
        // Without a configuration the cabinet cannot tell the door's lanes: all shake.
        p.open(0);
        assert!(p.close_at(0, Duration::from_secs(1)));
        assert_eq!(moved(&mut p, Duration::from_secs(1)), [true; 4]);
        // Configured: door 1 holds channel 2 alone.
        p.handle("config", &cmd(101, "c1", config(1)), BOOT).expect("ack");
        p.open(1);
        p.close_at(1, Duration::from_secs(10));
        assert_eq!(moved(&mut p, Duration::from_secs(10)), [false, false, true, false]);
        // A door already closed does not slam.
        assert!(!p.close_at(1, Duration::from_secs(20)));
        assert_eq!(moved(&mut p, Duration::from_secs(20)), [false; 4]);
    }

    #[test]
    fn the_cells_feel_the_cabinets_temperature() {
        let opts = ScaleOptions { zero_tc_g_per_c: 0.1, ..ScaleOptions::clean(0.0) };
        let cells = vec![LoadCell::exact(100_000, 100.0, 300.0, opts, 0)];
        let mut p = Physical::with_cells(cells).with_thermal(Thermal::fridge());
        // The top of the band (5.5 °C) as the compressor starts, the bottom (2.5 °C) 12 min later.
        let cold_at = Duration::from_secs(12 * 60);
        assert!(p.heating_at(Duration::ZERO) && !p.heating_at(cold_at));
        assert_eq!((p.temp_c_at(Duration::ZERO), p.temp_c_at(cold_at)), (5.5, 2.5));
        let warm = p.read_counts_at(Duration::ZERO)[0];
        let cold = p.read_counts_at(cold_at)[0];
        assert_eq!(warm - cold, 30, "3 °C × 0.1 g/°C × 100 counts/g");
        // Every cabinet of a fleet at its own point of the cycle, the same for a seed.
        let at =
            |seed| Physical::new(&PhysicalOptions { seed: Some(seed), ..PhysicalOptions::default() }).thermal().phase;
        assert_eq!(at(1), at(1));
        assert_ne!(at(1), at(2));
        assert!(at(1) < Thermal::fridge().period);
    }

    #[test]
    fn knobs_drop_and_refuse() {
        let mut p = cabinet(0.0);
        p.drop_acks = 1;
        assert_eq!(p.handle("config", &cmd(101, "c1", config(1)), BOOT), None, "the ack is lost");
        assert!(p.last_config().is_some(), "but the command was carried out");
        let retry = p.handle("config", &cmd(102, "c1", config(1)), BOOT).expect("the retry is answered");
        assert!(retry.ok);
        p.refuse = true;
        let ack = p.handle("config", &cmd(103, "c2", config(2)), BOOT).expect("ack");
        assert_eq!((ack.ok, ack.error.as_deref()), (false, Some("refused by test")));
        assert_eq!(p.last_config().map(|c| c.version), Some(1));
        p.refuse = false;
        let ack = p.handle("config", &cmd(104, "c2", config(2)), BOOT).expect("ack");
        assert!(ack.ok, "a refusal is not remembered as a result");
    }

    #[test]
    fn stock_take_put_and_hand_placed_grams() {
        let mut p = cabinet(0.0);
        p.stock(1, 330.0, 5).expect("stock");
        p.take(1, 2).expect("take");
        assert_eq!(p.take(1, 4), Err(CabinetError::NotEnoughUnits { channel: 1, have: 3, want: 4 }));
        p.put(1, 1).expect("put");
        p.place_grams(1, 12.5).expect("place");
        let t = &p.truth()[1];
        assert_eq!((t.unit_g, t.units, t.grams), (330.0, 4, 4.0 * 330.0 + 12.5));
        assert!(p.remove_grams(1, 13.0).is_err());
        p.remove_grams(1, 12.5).expect("remove");
        assert_eq!(p.truth()[1].grams, 1320.0);
        assert_eq!(p.stock(4, 1.0, 1), Err(CabinetError::NoSuchChannel { channel: 4, channels: 4 }));
        assert!(matches!(p.place_grams(0, f64::NAN), Err(CabinetError::BadGrams(_))));
        // Counts follow the load: channel 1 at gain 150 and tray 300 g.
        assert_eq!(p.read_counts()[1], 200_000 + 150 * (300 + 1320));
    }

    fn open(door: u32, unlock_s: u64) -> serde_json::Value {
        json!({"door": door, "session_id": 42, "unlock_s": unlock_s})
    }

    #[test]
    fn open_unlocks_the_door_and_acks_it() {
        let mut p = cabinet(0.0);
        p.handle("config", &cmd(101, "c1", config(1)), BOOT).expect("ack");
        assert!(!p.is_unlocked(1));
        let ack = p.handle("open", &cmd(102, "o1", open(1, 30)), BOOT).expect("ack");
        assert_eq!(ack, AckBody { cmd_id: "o1".into(), ok: true, error: None, result: Some(json!({"door": 1})) });
        assert!(p.is_unlocked(1) && !p.is_unlocked(0), "only the door asked for");
        assert!(!p.is_open(1), "unlocked, not opened: that is the shopper's part");
        // Opening uses the unlock up: closing the door again leaves it locked.
        assert!(p.open(1));
        assert!(!p.is_unlocked(1));
        p.close(1);
        assert!(!p.is_unlocked(1));
    }

    #[test]
    fn a_retried_open_is_answered_the_same_and_not_executed_again() {
        let mut p = cabinet(0.0);
        p.handle("config", &cmd(101, "c1", config(1)), BOOT).expect("ack");
        let first = p.handle("open", &cmd(102, "o1", open(1, 30)), BOOT).expect("ack");
        p.open(1);
        p.close(1);
        let again = p.handle("open", &cmd(103, "o1", open(1, 30)), BOOT).expect("ack");
        assert_eq!(first, again);
        assert!(!p.is_unlocked(1), "the retry did not unlock the door a second time");
        // A lost ack: the retry is answered, and the door was unlocked once.
        p.drop_acks = 1;
        assert_eq!(p.handle("open", &cmd(104, "o2", open(0, 30)), BOOT), None);
        assert!(p.is_unlocked(0));
        let retry = p.handle("open", &cmd(105, "o2", open(0, 30)), BOOT).expect("ack");
        assert_eq!((retry.ok, retry.result), (true, Some(json!({"door": 0}))));
    }

    #[test]
    fn open_refuses_a_door_the_configuration_lacks() {
        let mut p = cabinet(0.0);
        // No configuration yet: the cabinet cannot tell, and obeys.
        assert!(p.handle("open", &cmd(101, "o1", open(5, 30)), BOOT).expect("ack").ok);
        p.handle("config", &cmd(102, "c1", config(1)), BOOT).expect("ack");
        let ack = p.handle("open", &cmd(103, "o2", open(2, 30)), BOOT).expect("ack");
        assert_eq!(ack, AckBody { cmd_id: "o2".into(), ok: false, error: Some("no_such_door".into()), result: None });
        assert!(!p.is_unlocked(2));
        let ack = p.handle("open", &cmd(104, "o3", json!({"door": 1})), BOOT).expect("ack");
        assert_eq!(ack.error.as_deref(), Some("bad_command"), "session_id and unlock_s are required");
    }

    #[test]
    fn an_unlock_nobody_uses_expires() {
        let mut p = cabinet(0.0);
        p.handle("open", &cmd(101, "o1", open(1, 10)), BOOT).expect("ack");
        let now = Instant::now();
        assert!(p.is_unlocked_at(1, now + Duration::from_secs(9)));
        assert!(!p.is_unlocked_at(1, now + Duration::from_secs(11)), "locked again after unlock_s");
        p.handle("open", &cmd(102, "o2", open(1, 0)), BOOT).expect("ack");
        assert!(!p.is_unlocked(1), "unlock_s 0 locks at once");
        assert_eq!(p.doors_to_report(), vec![], "locking and unlocking are no door moves");
    }

    #[test]
    fn doors_owed_after_a_login() {
        let mut p = cabinet(0.0);
        assert_eq!(p.doors_to_report(), vec![], "nothing open, nothing moved");
        // Moves Heft heard of (reported by the caller) are not owed again.
        p.open(1);
        p.door_reported(1);
        assert_eq!(p.doors_to_report(), vec![(1, true)], "an open door is reported after every login");
        p.close(1);
        p.door_reported(1);
        assert_eq!(p.doors_to_report(), vec![]);
        // Offline: door 1 opens and closes, door 2 opens, door 3 opens and its frame is lost.
        p.open(1);
        p.close(1);
        p.open(2);
        p.open(3);
        assert_eq!(p.doors_to_report(), vec![(1, false), (2, true), (3, true)]);
        // A report that could not be sent stays owed.
        p.door_reported(1);
        assert_eq!(p.doors_to_report(), vec![(2, true), (3, true)]);
        p.door_reported(2);
        p.door_reported(3);
        assert_eq!(p.doors_to_report(), vec![(2, true), (3, true)], "open doors again at the next login");
        // Door 2 closed while offline: reported closed once, then forgotten.
        p.close(2);
        assert_eq!(p.doors_to_report(), vec![(2, false), (3, true)]);
        p.door_reported(2);
        assert_eq!(p.doors_to_report(), vec![(3, true)]);
        // Already where it was: not a move.
        assert!(!p.close(2));
        assert_eq!(p.doors_to_report(), vec![(3, true)]);
    }

    #[test]
    fn doors() {
        let mut p = cabinet(0.0);
        assert!(!p.any_open());
        assert!(p.open(1));
        assert!(!p.open(1), "already open");
        assert!(p.is_open(1) && !p.is_open(0) && p.any_open());
        assert!(p.close(1));
        assert!(!p.close(1));
        assert!(!p.any_open());
    }
}
