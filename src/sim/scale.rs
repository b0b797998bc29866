//! One load cell and its ADC, as a cabinet's firmware sees it: raw counts that are an offset plus
//! a gain times the grams on the lane (tray included), with Gaussian noise and a slow creep. Every
//! cell gets its own offset and gain, so Heft's calibration has real work to do.

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

/// What the whole cabinet's cells share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleOptions {
    /// Standard deviation of one reading, in grams.
    pub noise_g: f64,
    /// How fast the reading creeps, in grams per hour (each cell in a random direction).
    pub creep_g_per_h: f64,
}

impl Default for ScaleOptions {
    fn default() -> Self {
        ScaleOptions { noise_g: 2.0, creep_g_per_h: 0.5 }
    }
}

/// Ranges the random cells are drawn from.
const ZERO_COUNTS: std::ops::Range<i64> = 50_000..500_000;
const GAIN_COUNTS_PER_G: std::ops::Range<f64> = 80.0..400.0;
const TRAY_G: std::ops::Range<f64> = 150.0..450.0;

#[derive(Debug, Clone)]
pub struct LoadCell {
    zero: i64,
    gain: f64,
    tray_g: f64,
    /// Signed creep rate, grams per hour.
    drift_g_per_h: f64,
    noise_g: f64,
    fault: Option<Fault>,
    rng: StdRng,
}

impl LoadCell {
    /// A cell with random offset, gain, tray and creep direction drawn from `rng`.
    pub fn random(rng: &mut StdRng, opts: ScaleOptions, fault: Option<Fault>) -> LoadCell {
        let direction = if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
        LoadCell {
            zero: rng.gen_range(ZERO_COUNTS),
            gain: rng.gen_range(GAIN_COUNTS_PER_G),
            tray_g: rng.gen_range(TRAY_G),
            drift_g_per_h: direction * opts.creep_g_per_h,
            noise_g: opts.noise_g,
            fault,
            rng: StdRng::seed_from_u64(rng.r#gen()),
        }
    }

    /// A cell with exactly these properties (for tests that need known numbers).
    pub fn new(zero: i64, gain: f64, tray_g: f64, drift_g_per_h: f64, noise_g: f64, seed: u64) -> LoadCell {
        LoadCell { zero, gain, tray_g, drift_g_per_h, noise_g, fault: None, rng: StdRng::seed_from_u64(seed) }
    }

    pub fn with_fault(mut self, fault: Option<Fault>) -> LoadCell {
        self.fault = fault;
        self
    }

    /// ADC counts with nothing on the cell, not even the tray.
    pub fn zero(&self) -> i64 {
        self.zero
    }

    /// Counts per gram.
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

    /// One reading with `load_g` grams on the tray, `elapsed` after the cell was installed.
    pub fn read(&mut self, load_g: f64, elapsed: Duration) -> i64 {
        let noise_g = self.noise_g * gaussian(&mut self.rng);
        let creep_g = self.drift_g_per_h * elapsed.as_secs_f64() / 3600.0;
        let grams = match self.fault {
            None => self.tray_g + load_g + creep_g + noise_g,
            Some(Fault::Reversed) => -(self.tray_g + load_g + creep_g) + noise_g,
            Some(Fault::Dead) => noise_g,
        };
        self.zero + (self.gain * grams).round() as i64
    }
}

/// A standard normal sample (Box–Muller), so no distribution crate is needed.
fn gaussian(rng: &mut StdRng) -> f64 {
    // u1 in (0, 1]: ln(0) would be infinite.
    let u1: f64 = 1.0 - rng.r#gen::<f64>();
    let u2: f64 = rng.r#gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: usize = 20_000;

    fn stats(cell: &mut LoadCell, load_g: f64, elapsed: Duration) -> (f64, f64) {
        let reads: Vec<f64> = (0..N).map(|_| cell.read(load_g, elapsed) as f64).collect();
        let mean = reads.iter().sum::<f64>() / N as f64;
        let var = reads.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (N - 1) as f64;
        (mean, var.sqrt())
    }

    #[test]
    fn mean_is_zero_plus_gain_times_load_and_tray() {
        let mut cell = LoadCell::new(100_000, 200.0, 300.0, 0.0, 2.0, 1);
        let (mean, _) = stats(&mut cell, 500.0, Duration::ZERO);
        let want = 100_000.0 + 200.0 * (300.0 + 500.0);
        // The mean of N reads is within a few standard errors (σ = 400 counts / √N ≈ 3).
        assert!((mean - want).abs() < 15.0, "mean {mean}, want {want}");
    }

    #[test]
    fn spread_is_noise_times_gain() {
        let mut cell = LoadCell::new(100_000, 250.0, 300.0, 0.0, 2.0, 2);
        let (_, sigma) = stats(&mut cell, 100.0, Duration::ZERO);
        assert!((sigma - 500.0).abs() < 15.0, "σ {sigma}, want 500");
    }

    #[test]
    fn creep_moves_the_reading_over_hours() {
        let mut cell = LoadCell::new(100_000, 100.0, 300.0, 0.5, 0.0, 3);
        let now = cell.read(0.0, Duration::ZERO);
        let later = cell.read(0.0, Duration::from_secs(4 * 3600));
        assert_eq!(later - now, 200, "0.5 g/h for 4 h at 100 counts/g");
    }

    #[test]
    fn reversed_goes_down_with_load() {
        let mut cell = LoadCell::new(100_000, 150.0, 300.0, 0.0, 2.0, 4).with_fault(Some(Fault::Reversed));
        let (empty, _) = stats(&mut cell, 0.0, Duration::ZERO);
        let (loaded, _) = stats(&mut cell, 500.0, Duration::ZERO);
        assert!((empty - loaded - 150.0 * 500.0).abs() < 30.0, "empty {empty}, loaded {loaded}");
    }

    #[test]
    fn dead_is_constant_apart_from_noise() {
        let mut cell = LoadCell::new(100_000, 150.0, 300.0, 0.5, 2.0, 5).with_fault(Some(Fault::Dead));
        let (empty, sigma) = stats(&mut cell, 0.0, Duration::ZERO);
        let (loaded, _) = stats(&mut cell, 5_000.0, Duration::from_secs(3600));
        assert!((empty - 100_000.0).abs() < 15.0 && (loaded - 100_000.0).abs() < 15.0, "{empty} {loaded}");
        assert!((sigma - 300.0).abs() < 15.0, "σ {sigma}");
    }

    #[test]
    fn the_same_seed_gives_the_same_cells_and_readings() {
        let make = || {
            let mut rng = StdRng::seed_from_u64(42);
            let mut cell = LoadCell::random(&mut rng, ScaleOptions::default(), None);
            (cell.zero(), cell.gain(), cell.tray_g(), cell.read(100.0, Duration::ZERO))
        };
        assert_eq!(make(), make());
        let (zero, gain, tray, _) = make();
        assert!(ZERO_COUNTS.contains(&zero) && GAIN_COUNTS_PER_G.contains(&gain) && TRAY_G.contains(&tray));
    }
}
