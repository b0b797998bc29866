//! Stock by weight after a day: realistic load cells in a fridge (noise, spikes, the compressor's
//! temperature cycle, creep under load and a zero that ages at 2 g/h) are calibrated from their
//! samples, then stream closed-door readings every 90 s for a simulated 24 h. Heft's own rules
//! (`domain::rest`, `domain::baseline`, `domain::count`, the shipped `config.toml`) weigh them.
//! Every lane's count by weight — its baseline less the drift the baseline followed — must equal
//! what it holds, and no resting lane may be taken for one that moved.
//!
//! Runs in simulated time (milliseconds), so it is an ordinary test.

use std::path::Path;
use std::time::Duration;

use heft::config::Config;
use heft::domain::baseline::{self, Baseline, LaneProduct, Tracked};
use heft::domain::calibration::{self, CalibrationLimits};
use heft::domain::count::{self, Measured};
use heft::domain::rest::{self, NoiseEstimate};
use heft::domain::units::Grams;
use heft::domain::weight::{LaneCalibration, LaneWindow};
use heft::sim::scale::{LoadCell, ScaleOptions};
use heft::sim::thermal::Thermal;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const LANES: usize = 16;
const STANDARD_G: f64 = 500.0;
const TOLERANCE_G: f64 = 8.0;
const CLOSED_EVERY: Duration = Duration::from_secs(90);
const DAY: Duration = Duration::from_secs(24 * 3600);
/// The cabinet's own rate for calibration samples (80 Hz).
const SAMPLE_EVERY: Duration = Duration::from_micros(12_500);

fn config() -> Config {
    Config::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"))).expect("shipped config")
}

/// One lane: its cell, what it holds, and the clock of its readings.
struct Lane {
    cell: LoadCell,
    unit_g: f64,
    units: u32,
    at: Duration,
}

impl Lane {
    fn read(&mut self, load_g: f64, thermal: &Thermal) -> i64 {
        self.at += SAMPLE_EVERY;
        self.cell.read(load_g, self.at, thermal.temp_c_at(self.at))
    }

    /// As firmware answers a calibrate command: `n` readings once the load has settled.
    fn samples(&mut self, load_g: f64, n: u32, thermal: &Thermal) -> Vec<Vec<i64>> {
        self.at += Duration::from_secs(1);
        self.cell.set_load(load_g, self.at - Duration::from_secs(1));
        (0..n).map(|_| vec![self.read(load_g, thermal)]).collect()
    }
}

/// Tare, span and verify as the cabinet actor runs them, asking again for as many samples as the
/// noise needs.
fn calibrate(lane: &mut Lane, cfg: &Config, thermal: &Thermal) -> (LaneCalibration, f64) {
    let rule = cfg.calibration.sample_rule(&cfg.weights);
    let codes = vec!["A1".to_string()];
    // The gain a step is judged with: none for a first tare, else from the readings' mean.
    let mut step = |load_g: f64, gain: &dyn Fn(f64) -> Option<f64>| -> (i64, f64, f64) {
        let (mut n, mut asked_more) = (rule.samples, false);
        loop {
            let samples = lane.samples(load_g, n, thermal);
            let mean = samples.iter().map(|s| s[0] as f64).sum::<f64>() / samples.len() as f64;
            match calibration::judge_samples(&codes, &samples, &[gain(mean)], &rule, asked_more) {
                Ok(s) => {
                    let sem = s[0].sigma_counts / (s[0].readings as f64).sqrt();
                    return (s[0].mean_counts.round() as i64, sem, s[0].sigma_counts);
                }
                Err(Ok(more)) if !asked_more => (n, asked_more) = (more, true),
                other => panic!("calibration refused: {other:?}"),
            }
        }
    };
    let (zero, ..) = step(0.0, &|_| None);
    let (loaded, ..) = step(STANDARD_G, &|mean| Some((mean - zero as f64) / STANDARD_G));
    let limits = CalibrationLimits {
        min_counts_per_g: cfg.calibration.min_counts_per_g,
        max_counts_per_g: cfg.calibration.max_counts_per_g,
        verify_tolerance_g: cfg.calibration.verify_tolerance_g,
        max_standard_g: cfg.calibration.max_standard_g,
        coverage: cfg.weights.coverage,
    };
    let gains = calibration::span(&codes, &[zero], &[loaded], STANDARD_G, &limits).expect("span");
    let (check, sem, sigma) = step(STANDARD_G, &|_| Some(gains[0]));
    let allowance = cfg.weights.coverage * sem * 2f64.sqrt() / gains[0];
    calibration::verify(&codes, &[zero], &gains, &[check], STANDARD_G, &limits, &[allowance]).expect("verify");
    // The noise verify measured is what the lane is judged by until its stream shows its own.
    (LaneCalibration { zero_counts: zero, counts_per_g: gains[0] }, sigma / gains[0])
}

/// What a day of closed-door readings made of one lane: its count by weight, and the events.
struct Day {
    counted: Result<i64, count::Miscount>,
    moved: usize,
    drifted_far: usize,
    followed_g: f64,
}

fn one_day(lane: &mut Lane, (cal, noise_g): (LaneCalibration, f64), cfg: &Config, thermal: &Thermal) -> Day {
    let w = &cfg.weights;
    let (rest_rule, drift_rule, count_rule) = (w.rest_rule(), w.drift_rule(), w.count_rule());
    let load_g = lane.unit_g * f64::from(lane.units);
    let (unit_g, tolerance_g) = (Grams(lane.unit_g), Grams(TOLERANCE_G));
    let need = count::needed_sem(Some(unit_g), tolerance_g, &count_rule, w.rest_sem_max_g);
    let mut window = LaneWindow::new(w.window);
    let mut noise = NoiseEstimate::new(w.noise_readings).with_prior(Some(noise_g));
    let (mut base, mut moved, mut drifted_far, mut followed_g): (Option<Baseline>, _, _, _) = (None, 0, 0, 0.0);
    // The lane was just stocked: its first readings are the ones after the restock's close.
    lane.cell.set_load(load_g, lane.at);
    let end = lane.at + DAY;
    while lane.at < end {
        lane.at += CLOSED_EVERY;
        let g = cal.grams(lane.cell.read(load_g, lane.at, thermal.temp_c_at(lane.at)));
        window.push(g);
        noise.push(g);
        let readings: Vec<f64> = window.recent().iter().map(|g| g.0).collect();
        let sigma = noise.sigma().map_or(w.default_noise_g, |s| s.0);
        let Ok(rest) = rest::at_rest(&readings, Some(sigma), need, &rest_rule) else { continue };
        let product = Some(LaneProduct { unit_g, tolerance_g });
        let at_ms = lane.at.as_millis() as i64;
        let (next, tracked) = baseline::track(base, &rest, at_ms, product, tolerance_g, &drift_rule, &count_rule);
        match tracked {
            Tracked::Moved { .. } => {
                if std::env::var("DEBUG_DAY").is_ok() {
                    eprintln!("moved at {:?}: {tracked:?} rest {rest:?} base {base:?} window {readings:?}", lane.at);
                }
                moved += 1
            }
            Tracked::DriftedFar { by_g, .. } => {
                drifted_far += 1;
                followed_g += by_g.0;
            }
            Tracked::Followed { by_g } => followed_g += by_g.0,
            Tracked::Started | Tracked::Kept => {}
        }
        base = Some(next);
    }
    let b = base.expect("the lane rested at least once in a day");
    let by_weight = Measured { g: b.g - Grams(followed_g), u: b.sem_g };
    Day { counted: count::count(by_weight, unit_g, tolerance_g, &count_rule), moved, drifted_far, followed_g }
}

fn fleet_day(noise_g: f64, seed: u64) {
    let cfg = config();
    let thermal = Thermal::fridge();
    let opts = ScaleOptions { creep_g_per_h: 2.0, ..ScaleOptions::realistic(noise_g) };
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..LANES {
        let cell = LoadCell::random(&mut rng, opts, None);
        let mut lane = Lane {
            cell,
            unit_g: (rng.gen_range(50.0..600.0_f64) * 10.0).round() / 10.0,
            units: rng.gen_range(1..=12),
            at: Duration::ZERO,
        };
        let calibrated = calibrate(&mut lane, &cfg, &thermal);
        let day = one_day(&mut lane, calibrated, &cfg, &thermal);
        let what = format!(
            "σ {noise_g} g, lane {i}: {} × {} g, followed {:.1} g, {} drift reports",
            lane.units, lane.unit_g, day.followed_g, day.drifted_far
        );
        assert_eq!(day.counted, Ok(i64::from(lane.units)), "{what}");
        assert_eq!(day.moved, 0, "a resting lane taken for one that moved: {what}");
        // 2 g/h for 24 h is 48 g: reported at least once, so someone re-tares the cell.
        assert!(day.drifted_far >= 1, "{what}");
    }
}

#[test]
fn stock_by_weight_agrees_after_a_day_at_2_g() {
    fleet_day(2.0, 1);
}

#[test]
fn stock_by_weight_agrees_after_a_day_at_5_g() {
    fleet_day(5.0, 2);
}

#[test]
fn stock_by_weight_agrees_after_a_day_at_8_g() {
    fleet_day(8.0, 3);
}
