//! One load cell and its ADC, as a cabinet's firmware sees it: raw counts that are an offset plus
//! a gain times the grams on the lane (tray included). Every cell gets its own offset and gain, so
//! Heft's calibration has real work to do, and, unless it is a clean cell, the faults of a real
//! cell on a cheap 24-bit ADC board (HX711 class) in a fridge.
//!
//! A reading is a pure function of the cell's state, the time since installation, the cabinet's
//! temperature and the load ([`LoadCell::read`]), so tests can run a day of readings in
//! milliseconds. The cell notices load changes itself; as a reading cannot know when between it
//! and the previous one the load moved, it takes the middle ([`LoadCell::set_load`] says exactly).
//!
//! # What the realistic cell does, and where its numbers come from
//!
//! [`ScaleOptions::realistic`] describes a typical cell; each cell of a fleet draws its own
//! coefficients around those ([`LoadCell::random`]): sizes ×0.5 to ×1.5, time constants and
//! frequencies ×0.8 to ×1.2, and a random sign for the temperature coefficients and the
//! non-linearity. So most cells are as good as their class and a few a little worse, as in a fleet
//! of cheap cells.
//!
//! | effect | typical value | from |
//! |---|---|---|
//! | noise: Gaussian scatter | σ = `noise_g` (the caller's; `heft simulate`: 2 g) | as before |
//! | spikes: one reading 20 to 100 g off, either way | 3 an hour a cell | HX711 field reports |
//! | zero vs temperature away from 20 °C | 0.1 g/°C | R 60 limit: 0.14 g/°C |
//! | span vs temperature away from 20 °C | 6 ppm/°C | R 60 MPE: ≤ 12 ppm/°C; half |
//! | creep under load, recovering when unloaded | 0.015 % of the load, τ 15 min | R 60 creep and DR |
//! | aging: linear zero drift, own direction | 0.5 g/h (`--creep-g-per-h`) | as before; pessimistic |
//! | settling after a load change Δ | 0.5 Δ, 4 Hz, τ 0.1 s | assumed |
//! | shake when its door closes | 10 g, 6 Hz, τ 0.15 s | assumed |
//! | non-linearity, zero at 0 and at capacity | 1 g at 5 kg (0.01 % of 10 kg) | R 60 MPE: 2.33 g there |
//!
//! The shapes: creep relaxes toward `load_creep` × the load on the cell (tray included) with time
//! constant τ, so it comes back toward 0 as the load goes; settling is −0.5 Δ e^(−t/τ) cos(2π f t),
//! starting half way from the old load and overshooting, gone within 0.5 s (the lane ringing on its
//! cell); a door slam is an impulse, A e^(−t/τ) sin(2π f t), A ×0.5 to ×1.5 from slam to slam,
//! over in a few hundred ms; non-linearity is the parabola 4·k·C·u·(1 − u), u the load as a
//! fraction of capacity C. R 60 sets no limit on aging; 0.5 g/h is what the simulator always had.
//!
//! **OIML R 60-1:2017** (load cells), class C, apportioning factor p_LC = 0.7 (the default), read for
//! a lane cell of capacity E_max = 10 kg (12 products of 600 g and a tray fit) at n_LC = 3000
//! intervals (C3, usual in retail scales), so v = 10 kg / 3000 = 3.33 g, with v_min = 1 g assumed
//! (E_max/v_min = 10 000, common for single-point cells; the manufacturer declares it):
//! - MPE (§5.3.2, table 4, class C): p_LC × 0.5 v up to 500 v, × 1.0 v up to 2000 v, × 1.5 v up
//!   to 10 000 v: 1.17 g to 1.67 kg, 2.33 g to 6.67 kg, 3.5 g above. It includes non-linearity,
//!   hysteresis and the temperature effect on span over −10 to +40 °C (§5.6.1.1). The typical
//!   cell's span effect 30 °C away from 20 °C (1.8 g at 10 kg) plus its non-linearity stays inside.
//! - Creep (§5.5.1): within 30 min at 90 to 100 % of E_max, ≤ 0.7 × the MPE at p_LC = 0.7, i.e.
//!   0.735 v = 2.45 g (0.0245 % of the load), and between 20 and 30 min ≤ 0.15 × MPE = 0.53 g. The
//!   typical cell: 0.015 % × (1 − e^(−2)) = 1.3 g in 30 min, 0.19 g from 20 to 30 min.
//! - Minimum dead load output return, DR (§5.5.2): back at the minimum load after the creep test,
//!   ≤ 0.5 v = 1.67 g. The typical cell comes back 1.3 g off and recovers with the same τ.
//! - Temperature effect on the minimum dead load output, the zero (§5.6.1.3): ≤ p_LC × v_min per
//!   5 °C for class C, 0.7 g per 5 °C here.
//!
//! Source: the text of R 60-1:2017 as published in the `metanorma/mn-samples-oiml` repository
//! (`sources/r060/1/sections/05-metrological-requirements.adoc`), which also gives the C3 creep
//! examples (0.735 v, 0.1575 v) used above.
//!
//! **HX711 spikes**, field reports: a single reading far off among steady ones, then back
//! (bogde/HX711 issue #216: 170.8, 171.0, −143.4, 171.4; arduino.stackexchange.com question 38936:
//! 10.04 kg, 17.25 kg, 10.04 kg read every 3 s; bogde/HX711 issue #83: values 2^n − 1 in 1 to 5 %
//! of readings logged every 15 min). The causes reported are the board's serial timing being
//! interrupted and its wiring; how often depends on the board. A fleet of decent boards sees a few
//! an hour, which is what the realistic cell does. Spikes are events in time: whatever the rate at
//! which it is read, a cell reports about `spikes_per_h` of them an hour.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A broken load cell, for tests of how Heft copes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The reading never moves with load (a broken wire): its zero plus noise.
    Dead,
    /// Counts go down as load goes up (the signal pair swapped).
    Reversed,
}

/// The properties of load cells. For a fleet, the typical values each cell's own are drawn
/// around ([`LoadCell::random`]); for one cell ([`LoadCell::exact`]), its very values, signs
/// included. Zero in a field turns its effect off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleOptions {
    /// Standard deviation of one reading, in grams.
    pub noise_g: f64,
    /// Slow linear zero drift (aging), grams per hour; each cell of a fleet in a random direction.
    pub creep_g_per_h: f64,
    /// Wild single readings per hour.
    pub spikes_per_h: f64,
    /// How far off a spike is, in grams, either way: between these two.
    pub spike_min_g: f64,
    pub spike_max_g: f64,
    /// Zero shift per °C away from [`REFERENCE_C`], grams.
    pub zero_tc_g_per_c: f64,
    /// Relative change of the gain per °C away from [`REFERENCE_C`].
    pub span_tc_per_c: f64,
    /// Creep under load: the fraction of the load the reading creeps up by when it stays.
    pub load_creep: f64,
    /// How fast creep (and its recovery) goes: the time constant.
    pub load_creep_tau: Duration,
    /// Settling after a load change: the ringing's size as a fraction of the change.
    pub settle: f64,
    pub settle_hz: f64,
    pub settle_tau: Duration,
    /// Door-close vibration: its size in grams.
    pub shake_g: f64,
    pub shake_hz: f64,
    pub shake_tau: Duration,
    /// Non-linearity: the largest deviation (at half capacity) as a fraction of capacity.
    pub nonlinearity: f64,
    /// The cell's rated capacity (E_max), grams.
    pub capacity_g: f64,
}

impl Default for ScaleOptions {
    /// What every test cabinet has had so far: 2 g of noise and a linear creep of 0.5 g/h, nothing
    /// else. (Heft's statistics are to cope with the realistic cell before this changes.)
    fn default() -> Self {
        ScaleOptions { creep_g_per_h: 0.5, ..ScaleOptions::clean(2.0) }
    }
}

impl ScaleOptions {
    /// Gaussian noise only: no spikes, temperature effects, creep, transients, vibration or
    /// non-linearity.
    pub fn clean(noise_g: f64) -> ScaleOptions {
        ScaleOptions {
            creep_g_per_h: 0.0,
            spikes_per_h: 0.0,
            zero_tc_g_per_c: 0.0,
            span_tc_per_c: 0.0,
            load_creep: 0.0,
            settle: 0.0,
            shake_g: 0.0,
            nonlinearity: 0.0,
            ..ScaleOptions::realistic(noise_g)
        }
    }

    /// A C3 cell on an HX711-class board, as the module documentation explains.
    pub fn realistic(noise_g: f64) -> ScaleOptions {
        ScaleOptions {
            noise_g,
            creep_g_per_h: 0.5,
            spikes_per_h: 3.0,
            spike_min_g: 20.0,
            spike_max_g: 100.0,
            zero_tc_g_per_c: 0.1,
            span_tc_per_c: 6e-6,
            load_creep: 1.5e-4,
            load_creep_tau: Duration::from_secs(15 * 60),
            settle: 0.5,
            settle_hz: 4.0,
            settle_tau: Duration::from_millis(100),
            shake_g: 10.0,
            shake_hz: 6.0,
            shake_tau: Duration::from_millis(150),
            nonlinearity: 1e-4,
            capacity_g: 10_000.0,
        }
    }

    /// One cell's own values, drawn around these; `direction` is the aging drift's.
    fn vary(&self, rng: &mut StdRng, direction: f64) -> ScaleOptions {
        ScaleOptions {
            noise_g: self.noise_g,
            creep_g_per_h: direction * self.creep_g_per_h,
            spikes_per_h: self.spikes_per_h * size(rng),
            spike_min_g: self.spike_min_g,
            spike_max_g: self.spike_max_g,
            zero_tc_g_per_c: self.zero_tc_g_per_c * size(rng) * sign(rng),
            span_tc_per_c: self.span_tc_per_c * size(rng) * sign(rng),
            load_creep: self.load_creep * size(rng),
            load_creep_tau: self.load_creep_tau.mul_f64(pace(rng)),
            settle: self.settle * size(rng),
            settle_hz: self.settle_hz * pace(rng),
            settle_tau: self.settle_tau.mul_f64(pace(rng)),
            shake_g: self.shake_g * size(rng),
            shake_hz: self.shake_hz * pace(rng),
            shake_tau: self.shake_tau.mul_f64(pace(rng)),
            nonlinearity: self.nonlinearity * size(rng) * sign(rng),
            capacity_g: self.capacity_g,
        }
    }
}

/// `heft simulate --cell`: which cell the fleet has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CellKind {
    /// [`ScaleOptions::realistic`].
    Realistic,
    /// [`ScaleOptions::clean`]: noise (and the given aging drift) only.
    Clean,
}

impl CellKind {
    pub fn options(self, noise_g: f64) -> ScaleOptions {
        match self {
            CellKind::Realistic => ScaleOptions::realistic(noise_g),
            CellKind::Clean => ScaleOptions::clean(noise_g),
        }
    }
}

/// The temperature at which a cell's zero and gain are the ones drawn: the factory's.
pub const REFERENCE_C: f64 = 20.0;

/// How far each cell's sizes and rates stray from the fleet's: ±50 %.
const SPREAD: f64 = 0.5;
/// Time constants and frequencies are mechanics alike in every cell: ±20 %.
const PACE_SPREAD: f64 = 0.2;

fn size(rng: &mut StdRng) -> f64 {
    rng.gen_range(1.0 - SPREAD..=1.0 + SPREAD)
}

fn pace(rng: &mut StdRng) -> f64 {
    rng.gen_range(1.0 - PACE_SPREAD..=1.0 + PACE_SPREAD)
}

fn sign(rng: &mut StdRng) -> f64 {
    if rng.gen_bool(0.5) { 1.0 } else { -1.0 }
}

/// Ranges the random cells are drawn from.
const ZERO_COUNTS: std::ops::Range<i64> = 50_000..500_000;
const GAIN_COUNTS_PER_G: std::ops::Range<f64> = 80.0..400.0;
const TRAY_G: std::ops::Range<f64> = 150.0..450.0;

/// Mixed into a cell's seed for its other random streams, so its noise stays what it was before
/// cells had them.
const COEFFICIENT_SALT: u64 = 0x9e37_79b9_7f4a_7c15;
const EVENT_SALT: u64 = 0xc2b2_ae3d_27d4_eb4f;

/// A ringing that lasts this many time constants is over (e^−20 of its size).
const RING_LIFE: f64 = 20.0;
/// Ringings remembered at once; older ones are long faded when more come this fast.
const MAX_RINGS: usize = 16;

/// A damped oscillation started at `at`, `amplitude_g` at its start.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ring {
    at: Duration,
    amplitude_g: f64,
}

#[derive(Debug, Clone)]
pub struct LoadCell {
    zero: i64,
    gain: f64,
    tray_g: f64,
    /// This cell's own properties.
    opts: ScaleOptions,
    fault: Option<Fault>,
    /// Noise, as before cells had more than noise.
    rng: StdRng,
    /// Spikes and shakes.
    events: StdRng,
    /// The latest moment the cell has seen; it never goes back.
    clock: Duration,
    /// Grams on the cell (tray included) since its last change; `None` before the first reading.
    load_g: Option<f64>,
    /// Creep under load now, grams, and when it was last brought up to date.
    creep_g: f64,
    creep_at: Duration,
    /// Load changes still settling (amplitude = the ringing's start) and door shakes.
    steps: Vec<Ring>,
    shakes: Vec<Ring>,
}

impl LoadCell {
    /// A cell with random offset, gain and tray, and its own properties drawn around `opts`.
    pub fn random(rng: &mut StdRng, opts: ScaleOptions, fault: Option<Fault>) -> LoadCell {
        // The draws and their order are those of before, so a seeded default cabinet is the same.
        let direction = sign(rng);
        let zero = rng.gen_range(ZERO_COUNTS);
        let gain = rng.gen_range(GAIN_COUNTS_PER_G);
        let tray_g = rng.gen_range(TRAY_G);
        let seed: u64 = rng.r#gen();
        let own = opts.vary(&mut StdRng::seed_from_u64(seed ^ COEFFICIENT_SALT), direction);
        LoadCell::exact(zero, gain, tray_g, own, seed).with_fault(fault)
    }

    /// A clean cell with exactly these properties (for tests that need known numbers).
    pub fn new(zero: i64, gain: f64, tray_g: f64, drift_g_per_h: f64, noise_g: f64, seed: u64) -> LoadCell {
        let opts = ScaleOptions { creep_g_per_h: drift_g_per_h, ..ScaleOptions::clean(noise_g) };
        LoadCell::exact(zero, gain, tray_g, opts, seed)
    }

    /// A cell with exactly these properties, `opts` taken as they are (no drawing around them).
    pub fn exact(zero: i64, gain: f64, tray_g: f64, opts: ScaleOptions, seed: u64) -> LoadCell {
        LoadCell {
            zero,
            gain,
            tray_g,
            opts,
            fault: None,
            rng: StdRng::seed_from_u64(seed),
            events: StdRng::seed_from_u64(seed ^ EVENT_SALT),
            clock: Duration::ZERO,
            load_g: None,
            creep_g: 0.0,
            creep_at: Duration::ZERO,
            steps: Vec::new(),
            shakes: Vec::new(),
        }
    }

    /// The cell turns noisier (or quieter) from now on: a loose wire, moisture in the bridge.
    pub fn set_noise(&mut self, noise_g: f64) {
        self.opts.noise_g = noise_g.max(0.0);
    }

    pub fn with_fault(mut self, fault: Option<Fault>) -> LoadCell {
        self.fault = fault;
        self
    }

    /// ADC counts with nothing on the cell, not even the tray, at [`REFERENCE_C`].
    pub fn zero(&self) -> i64 {
        self.zero
    }

    /// Counts per gram at [`REFERENCE_C`].
    pub fn gain(&self) -> f64 {
        self.gain
    }

    /// The empty lane's tray, which the cell always carries.
    pub fn tray_g(&self) -> f64 {
        self.tray_g
    }

    pub fn fault(&self) -> Option<Fault> {
        self.fault
    }

    /// This cell's own properties (for a random cell, as drawn).
    pub fn options(&self) -> &ScaleOptions {
        &self.opts
    }

    /// One reading with `load_g` grams on the tray, `at` after the cell was installed, at
    /// `temp_c`. A load other than the last one read is noticed as a change halfway since then.
    pub fn read(&mut self, load_g: f64, at: Duration, temp_c: f64) -> i64 {
        let total_g = self.tray_g + load_g;
        let since_last = self.advance(total_g, at, false);
        let noise_g = self.opts.noise_g * gaussian(&mut self.rng);
        // From `at` itself, not the cell's clock: the drift of a reading depends on its time only.
        let aging_g = self.opts.creep_g_per_h * at.as_secs_f64() / 3600.0;
        let grams = match self.fault {
            None => self.sensed(total_g, temp_c) + aging_g + noise_g,
            Some(Fault::Reversed) => -(self.sensed(total_g, temp_c) + aging_g) + noise_g,
            Some(Fault::Dead) => noise_g,
        };
        let grams = grams + self.spike(since_last);
        self.zero + (self.gain * grams).round() as i64
    }

    /// The load on the tray becomes `load_g` at exactly `at` (someone put it there); the settling
    /// starts then rather than where a reading would guess.
    pub fn set_load(&mut self, load_g: f64, at: Duration) {
        self.advance(self.tray_g + load_g, at, true);
    }

    /// The cabinet shook at `at` (its door closed): a short decaying vibration, of a size that
    /// differs from slam to slam.
    pub fn shake(&mut self, at: Duration) {
        if self.opts.shake_g == 0.0 {
            return;
        }
        let amplitude_g =
            self.opts.shake_g * self.events.gen_range(1.0 - SPREAD..=1.0 + SPREAD) * sign(&mut self.events);
        push_ring(&mut self.shakes, Ring { at: at.max(self.clock), amplitude_g });
    }

    /// Bring the cell's memory up to `at` with `total_g` on it, changed (if it did) `exactly` at
    /// `at` or halfway since the previous reading. Returns the time since the previous reading.
    fn advance(&mut self, total_g: f64, at: Duration, exactly: bool) -> Duration {
        // Readings may come out of order (a test's simulated time, then the real clock): the
        // cell's memory only moves forward.
        let now = at.max(self.clock);
        let since = now - self.clock;
        let Some(before) = self.load_g else {
            // The first reading: the cell has stood with this load since it was installed.
            self.load_g = Some(total_g);
            self.creep_g = self.opts.load_creep * total_g;
            (self.clock, self.creep_at) = (now, now);
            return Duration::ZERO;
        };
        if total_g != before {
            let changed = if exactly { now } else { self.clock + since / 2 };
            self.relax(before, changed);
            if self.opts.settle != 0.0 {
                push_ring(&mut self.steps, Ring { at: changed, amplitude_g: -self.opts.settle * (total_g - before) });
            }
            self.load_g = Some(total_g);
        }
        self.relax(total_g, now);
        self.clock = now;
        let (settle_tau, shake_tau) = (self.opts.settle_tau, self.opts.shake_tau);
        self.steps.retain(|r| alive(r, now, settle_tau));
        self.shakes.retain(|r| alive(r, now, shake_tau));
        since
    }

    /// First-order creep: toward `load_creep` × the load, with `total_g` on the cell until `until`.
    fn relax(&mut self, total_g: f64, until: Duration) {
        let target = self.opts.load_creep * total_g;
        let dt = until.saturating_sub(self.creep_at);
        self.creep_g = target + (self.creep_g - target) * decay(dt.as_secs_f64(), self.opts.load_creep_tau);
        self.creep_at = self.creep_at.max(until);
    }

    /// What the bridge says, in grams, before noise and aging: the load through the cell's
    /// temperature-dependent span and its non-linearity, plus zero shift, creep and ringing.
    fn sensed(&self, total_g: f64, temp_c: f64) -> f64 {
        let o = &self.opts;
        let off_c = temp_c - REFERENCE_C;
        total_g * (1.0 + o.span_tc_per_c * off_c)
            + self.nonlinear_g(total_g)
            + o.zero_tc_g_per_c * off_c
            + self.creep_g
            + self.ringing_g()
    }

    /// The parabola 4·k·C·u·(1 − u), u the load as a fraction of capacity C: zero at 0 and at C.
    fn nonlinear_g(&self, total_g: f64) -> f64 {
        let c = self.opts.capacity_g;
        if c <= 0.0 {
            return 0.0;
        }
        let u = total_g / c;
        4.0 * self.opts.nonlinearity * c * u * (1.0 - u)
    }

    /// Settling after load changes (starting at the old load: cos) and door shakes (an impulse:
    /// sin), at the cell's clock.
    fn ringing_g(&self) -> f64 {
        let o = &self.opts;
        let settling = ring_sum(&self.steps, self.clock, o.settle_hz, o.settle_tau, f64::cos);
        settling + ring_sum(&self.shakes, self.clock, o.shake_hz, o.shake_tau, f64::sin)
    }

    /// A spike's grams, or 0: spikes come as a Poisson process, so over `since_last` one came
    /// with probability 1 − e^(−rate·t).
    fn spike(&mut self, since_last: Duration) -> f64 {
        let rate_per_s = self.opts.spikes_per_h / 3600.0;
        // NaN and negative rates alike: no spikes.
        if rate_per_s.is_nan() || rate_per_s <= 0.0 || since_last.is_zero() {
            return 0.0;
        }
        let p = 1.0 - (-rate_per_s * since_last.as_secs_f64()).exp();
        if !self.events.gen_bool(p.clamp(0.0, 1.0)) {
            return 0.0;
        }
        let (lo, hi) =
            (self.opts.spike_min_g.min(self.opts.spike_max_g), self.opts.spike_min_g.max(self.opts.spike_max_g));
        self.events.gen_range(lo..=hi) * sign(&mut self.events)
    }
}

fn push_ring(rings: &mut Vec<Ring>, ring: Ring) {
    if rings.len() == MAX_RINGS {
        rings.remove(0);
    }
    rings.push(ring);
}

fn alive(ring: &Ring, now: Duration, tau: Duration) -> bool {
    now.saturating_sub(ring.at).as_secs_f64() < RING_LIFE * tau.as_secs_f64()
}

/// e^(−t/τ); a zero τ is over at once.
fn decay(t_s: f64, tau: Duration) -> f64 {
    let tau_s = tau.as_secs_f64();
    if t_s <= 0.0 {
        1.0
    } else if tau_s > 0.0 {
        (-t_s / tau_s).exp()
    } else {
        0.0
    }
}

/// The sum of damped oscillations `wave(2π·hz·t)·e^(−t/τ)` of the rings started by `now`.
fn ring_sum(rings: &[Ring], now: Duration, hz: f64, tau: Duration, wave: fn(f64) -> f64) -> f64 {
    rings
        .iter()
        .filter(|r| r.at <= now)
        .map(|r| {
            let t = (now - r.at).as_secs_f64();
            r.amplitude_g * decay(t, tau) * wave(2.0 * std::f64::consts::PI * hz * t)
        })
        .sum()
}

/// A standard normal sample (Box–Muller), so no distribution crate is needed.
fn gaussian(rng: &mut StdRng) -> f64 {
    // u1 in (0, 1]: ln(0) would be infinite.
    let u1: f64 = 1.0 - rng.r#gen::<f64>();
    let u2: f64 = rng.r#gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests;
