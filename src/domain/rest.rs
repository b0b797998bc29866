//! Whether a lane is at rest, and what it weighs then, judged by statistics rather than by a
//! fixed run of readings that must agree.
//!
//! - Outliers (an ADC spike, a knock) are rejected by their distance from the median in units
//!   of the noise, never averaged in.
//! - The remaining readings are at rest when they show no trend and no step that matters: one
//!   large against the noise (statistically) and against what the decision needs (physically).
//! - Their mean carries its standard uncertainty (σ/√n), and a rest is only declared once that is
//!   as small as the decision needs: a quiet cell settles with few readings, a noisy one waits
//!   for more.
//!
//! The noise σ is the larger of what the caller knows of the lane (its closed-door stream, see
//! [`NoiseEstimate`]), what these readings show by successive differences (blind to slow drift
//! and to a single step), and a floor.

use std::collections::VecDeque;

use serde::Serialize;

use super::units::Grams;

/// MAD × 1.4826 estimates σ of Gaussian noise.
const MAD_TO_SIGMA: f64 = 1.482_6;

/// How a rest is judged; `weights.*` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RestRule {
    /// Fewest readings a rest is judged on.
    pub min_readings: usize,
    /// A reading further than this many σ from the median is an outlier.
    pub outlier_sigmas: f64,
    /// Most of the readings judged that may be outliers; more means the lane is not at rest.
    pub max_outlier_fraction: f64,
    /// How many standard errors a trend or a step must reach to count as movement.
    pub trend_sigmas: f64,
    /// Noise never assumed below this: a few equal readings have a MAD of 0.
    pub noise_floor_g: f64,
}

impl Default for RestRule {
    fn default() -> Self {
        RestRule {
            min_readings: 3,
            outlier_sigmas: 4.0,
            max_outlier_fraction: 0.25,
            trend_sigmas: 3.0,
            noise_floor_g: 0.3,
        }
    }
}

/// A lane at rest: the mean of its inlying readings and the standard uncertainty of that mean.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rest {
    pub mean_g: Grams,
    /// Standard uncertainty of `mean_g`: σ / √readings.
    pub sem_g: Grams,
    /// The noise σ it was judged with.
    pub sigma_g: Grams,
    /// Readings averaged.
    pub readings: usize,
    /// Readings rejected as outliers.
    pub rejected: usize,
}

/// Why the readings are not (yet) a rest.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum Unrest {
    /// Fewer usable readings than the rule needs.
    TooFew { have: usize, need: usize },
    /// A trend or a step larger than the noise and than the decision allows.
    Moving,
    /// At rest, but its mean is not yet known as precisely as needed: more readings will tell.
    Imprecise { sem_g: Grams, need_g: Grams },
}

/// The longest run of newest `readings` (oldest first) that is at rest with its mean known to
/// within `need_sem_g`; otherwise why not, as judged on the newest `min_readings` or more.
/// `known_noise_g` is the lane's noise as its stream showed it, when known.
pub fn at_rest(readings: &[f64], known_noise_g: Option<f64>, need_sem_g: f64, rule: &RestRule) -> Result<Rest, Unrest> {
    let finite: Vec<f64> = readings.iter().copied().filter(|g| g.is_finite()).collect();
    let need = rule.min_readings.max(2);
    if finite.len() < need {
        return Err(Unrest::TooFew { have: finite.len(), need });
    }
    // The longest tail says most about why; a shorter quiet one only lacked precision.
    let mut why = None;
    for m in (need..=finite.len()).rev() {
        match judge(&finite[finite.len() - m..], known_noise_g, need_sem_g, rule) {
            Ok(rest) => return Ok(rest),
            Err(e) => {
                why = match (why, e) {
                    (None, e) | (Some(Unrest::Moving), e @ Unrest::Imprecise { .. }) => Some(e),
                    (w, _) => w,
                }
            }
        }
    }
    Err(why.unwrap_or(Unrest::TooFew { have: finite.len(), need }))
}

/// One run of readings, all of it: at rest or why not.
fn judge(run: &[f64], known_noise_g: Option<f64>, need_sem_g: f64, rule: &RestRule) -> Result<Rest, Unrest> {
    let sigma = noise_of(run).max(known_noise_g.unwrap_or(0.0)).max(rule.noise_floor_g);
    let med = median(run.to_vec());
    let limit = rule.outlier_sigmas * sigma;
    let inliers: Vec<(f64, f64)> =
        run.iter().enumerate().filter(|(_, g)| (*g - med).abs() <= limit).map(|(i, g)| (i as f64, *g)).collect();
    let rejected = run.len() - inliers.len();
    if inliers.len() < rule.min_readings.max(2) || rejected as f64 > rule.max_outlier_fraction * run.len() as f64 {
        return Err(Unrest::Moving);
    }
    // Movement smaller than what the decision needs is no movement for it.
    let matters = need_sem_g.max(sigma / (inliers.len() as f64).sqrt());
    if trends(&inliers, sigma, rule.trend_sigmas, matters) || steps(&inliers, sigma, rule.trend_sigmas, matters) {
        return Err(Unrest::Moving);
    }
    let n = inliers.len() as f64;
    let mean = inliers.iter().map(|(_, g)| g).sum::<f64>() / n;
    let sem = sigma / n.sqrt();
    if sem.is_nan() || sem > need_sem_g {
        return Err(Unrest::Imprecise { sem_g: Grams(sem), need_g: Grams(need_sem_g) });
    }
    Ok(Rest { mean_g: Grams(mean), sem_g: Grams(sem), sigma_g: Grams(sigma), readings: inliers.len(), rejected })
}

/// A least-squares slope over the run that is significant against the noise and moves the run
/// by more than `matters` grams from end to end.
fn trends(points: &[(f64, f64)], sigma: f64, z: f64, matters: f64) -> bool {
    let n = points.len() as f64;
    let (tm, gm) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = points.iter().map(|p| (p.0 - tm).powi(2)).sum();
    if sxx <= 0.0 {
        return false;
    }
    let slope = points.iter().map(|p| (p.0 - tm) * (p.1 - gm)).sum::<f64>() / sxx;
    let span = points.last().map_or(0.0, |p| p.0) - points.first().map_or(0.0, |p| p.0);
    slope.abs() / (sigma / sxx.sqrt()) > z && slope.abs() * span > matters
}

/// The newer half's mean differs from the older half's, significantly and by more than `matters`.
fn steps(points: &[(f64, f64)], sigma: f64, z: f64, matters: f64) -> bool {
    if points.len() < 4 {
        return false;
    }
    let (older, newer) = points.split_at(points.len() / 2);
    let mean = |p: &[(f64, f64)]| p.iter().map(|x| x.1).sum::<f64>() / p.len() as f64;
    let diff = (mean(newer) - mean(older)).abs();
    let se = sigma * (1.0 / older.len() as f64 + 1.0 / newer.len() as f64).sqrt();
    diff / se > z && diff > matters
}

/// σ of the run's noise from its successive differences (robustly: MAD), which a slow drift or a
/// single step hardly touches. 0 for fewer than three readings.
pub fn noise_of(run: &[f64]) -> f64 {
    if run.len() < 3 {
        return 0.0;
    }
    let diffs: Vec<f64> = run.windows(2).map(|w| w[1] - w[0]).collect();
    diff_sigma(diffs)
}

/// σ of one reading from differences of two readings each (Var(d) = 2σ²).
fn diff_sigma(diffs: Vec<f64>) -> f64 {
    let center = median(diffs.clone());
    let mad = median(diffs.iter().map(|d| (d - center).abs()).collect());
    MAD_TO_SIGMA * mad / std::f64::consts::SQRT_2
}

/// Median of a non-empty list (0 for an empty one).
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) { (values[mid - 1] + values[mid]) / 2.0 } else { values[mid] }
}

/// A lane's noise as its closed-door stream shows it: the successive differences of its recent
/// closed-door readings, robustly, so that a spike, a slow drift or one step does not inflate it.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseEstimate {
    last: Option<f64>,
    diffs: VecDeque<f64>,
    capacity: usize,
    /// What was known of the cell before this stream (its calibration, its history), used until
    /// the stream has shown its own.
    prior: Option<f64>,
}

/// Differences needed before the estimate is trusted.
const NOISE_MIN_DIFFS: usize = 8;

impl NoiseEstimate {
    /// Keeps the last `capacity` differences (at least [`NOISE_MIN_DIFFS`]).
    pub fn new(capacity: usize) -> NoiseEstimate {
        let capacity = capacity.max(NOISE_MIN_DIFFS);
        NoiseEstimate { last: None, diffs: VecDeque::with_capacity(capacity), capacity, prior: None }
    }

    /// Known noise from before (calibration, history), until the stream shows its own.
    pub fn with_prior(mut self, sigma_g: Option<f64>) -> NoiseEstimate {
        self.prior = sigma_g.filter(|s| s.is_finite() && *s > 0.0);
        self
    }

    /// A closed-door reading, following the previous one with nothing moved in between.
    pub fn push(&mut self, Grams(g): Grams) {
        if !g.is_finite() {
            return;
        }
        if let Some(prev) = self.last {
            if self.diffs.len() == self.capacity {
                self.diffs.pop_front();
            }
            self.diffs.push_back(g - prev);
        }
        self.last = Some(g);
    }

    /// Something may have moved (a door opened): the next reading starts a new pair.
    pub fn break_run(&mut self) {
        self.last = None;
    }

    /// σ of one reading, once enough differences are known (else the prior, if any).
    pub fn sigma(&self) -> Option<Grams> {
        if self.diffs.len() >= NOISE_MIN_DIFFS {
            Some(Grams(diff_sigma(self.diffs.iter().copied().collect())))
        } else {
            self.prior.map(Grams)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn rule() -> RestRule {
        RestRule::default()
    }

    fn gaussian(rng: &mut StdRng) -> f64 {
        let u1: f64 = 1.0 - rng.r#gen::<f64>();
        let u2: f64 = rng.r#gen();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    #[test]
    fn a_quiet_lane_rests_at_its_mean() {
        let rest = at_rest(&[300.0, 300.2, 299.8, 300.1, 299.9], Some(0.2), 0.5, &rule()).expect("at rest");
        assert!((rest.mean_g.0 - 300.0).abs() < 1e-9, "{rest:?}");
        assert_eq!((rest.readings, rest.rejected), (5, 0));
        assert!((rest.sem_g.0 - rest.sigma_g.0 / 5f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn a_spike_is_rejected_not_averaged() {
        let run = [38.0, 38.4, 37.7, 95.0, 38.1, 37.9, 38.2, 38.0];
        let rest = at_rest(&run, Some(0.3), 0.5, &rule()).expect("at rest");
        assert_eq!(rest.rejected, 1);
        assert!((rest.mean_g.0 - 38.04).abs() < 0.05, "{rest:?}");
    }

    #[test]
    fn the_old_level_is_left_out_after_a_step() {
        let run = [500.0, 500.3, 499.8, 420.0, 300.2, 299.9, 300.1, 300.0, 299.8];
        let rest = at_rest(&run, Some(0.3), 0.5, &rule()).expect("the new level rests");
        assert!((rest.mean_g.0 - 300.0).abs() < 0.2, "{rest:?}");
        assert!(rest.readings >= 5, "{rest:?}");
    }

    #[test]
    fn a_noisy_lane_needs_more_readings() {
        let mut rng = StdRng::seed_from_u64(7);
        let run: Vec<f64> = (0..40).map(|_| 200.0 + 5.0 * gaussian(&mut rng)).collect();
        // σ 5 g, need 1.5 g: about (5 / 1.5)² ≈ 11 readings.
        assert!(matches!(at_rest(&run[..6], Some(5.0), 1.5, &rule()), Err(Unrest::Imprecise { .. })));
        let rest = at_rest(&run, Some(5.0), 1.5, &rule()).expect("enough readings");
        assert!(rest.readings >= 11 && (rest.mean_g.0 - 200.0).abs() < 3.0 * rest.sem_g.0, "{rest:?}");
    }

    #[test]
    fn a_ramp_is_moving() {
        let run: Vec<f64> = (0..10).map(|i| 300.0 + 3.0 * i as f64).collect();
        assert_eq!(at_rest(&run, Some(0.5), 1.0, &rule()), Err(Unrest::Moving));
    }

    #[test]
    fn too_few_readings_say_so() {
        assert_eq!(at_rest(&[1.0, f64::NAN], None, 1.0, &rule()), Err(Unrest::TooFew { have: 1, need: 3 }));
    }

    #[test]
    fn noise_estimate_ignores_drift_and_a_spike() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut est = NoiseEstimate::new(64);
        for i in 0..64 {
            let spike = if i == 30 { 60.0 } else { 0.0 };
            est.push(Grams(500.0 + 0.05 * i as f64 + 2.0 * gaussian(&mut rng) + spike));
        }
        let sigma = est.sigma().expect("known").0;
        assert!((1.5..2.6).contains(&sigma), "σ {sigma}");
        let mut fresh = NoiseEstimate::new(64);
        fresh.push(Grams(1.0));
        assert_eq!(fresh.sigma(), None);
        assert_eq!(NoiseEstimate::new(64).with_prior(Some(7.5)).sigma(), Some(Grams(7.5)), "known from before");
    }

    proptest! {
        /// A lane resting under bounded noise, with a spike now and then, is at rest in nearly
        /// every window of its stream, and never misjudged for more than two readings running.
        #[test]
        fn a_stable_lane_is_never_declared_moving_for_long(
            level in 50.0f64..5000.0,
            sigma in 0.5f64..8.0,
            seed in any::<u64>(),
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let need = 2.0 * sigma / 3f64.sqrt();
            let mut stream = Vec::new();
            let mut not_at_rest_run = 0;
            for i in 0..200 {
                let spike = if i % 37 == 36 { 20.0 * sigma } else { 0.0 };
                stream.push(level + sigma * gaussian(&mut rng).clamp(-3.0, 3.0) + spike);
                let window = &stream[stream.len().saturating_sub(16)..];
                if window.len() < 16 {
                    continue;
                }
                match at_rest(window, Some(sigma), need, &rule()) {
                    Ok(rest) => {
                        not_at_rest_run = 0;
                        // Six standard errors: about one window in 10⁹ by chance.
                        prop_assert!((rest.mean_g.0 - level).abs() <= 6.0 * rest.sem_g.0 + 1e-9, "{:?}", rest);
                    }
                    Err(_) => not_at_rest_run += 1,
                }
                prop_assert!(not_at_rest_run <= 2, "not at rest {} readings running", not_at_rest_run);
            }
        }

        /// A lane moving by well over its noise per reading is never at rest.
        #[test]
        fn a_moving_lane_is_never_declared_stable(
            level in 50.0f64..5000.0,
            sigma in 0.5f64..8.0,
            per_reading in 5.0f64..50.0,
            down in any::<bool>(),
            n in 3usize..32,
            seed in any::<u64>(),
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let sign = if down { -1.0 } else { 1.0 };
            let run: Vec<f64> = (0..n)
                .map(|i| level + sign * per_reading * sigma * i as f64 + sigma * rng.gen_range(-1.0..1.0))
                .collect();
            prop_assert!(at_rest(&run, Some(sigma), sigma, &rule()).is_err());
        }

        /// A spike among the readings after a close never changes what is counted: the units
        /// taken from the rest with the spike are the units taken without it.
        #[test]
        fn a_spike_never_changes_a_count(
            unit in 20.0f64..600.0,
            units in 0u32..20,
            taken in 0u32..5,
            sigma in 0.5f64..3.0,
            spike in prop_oneof![-300.0f64..-15.0, 15.0f64..300.0],
            at in 0usize..10,
            seed in any::<u64>(),
        ) {
            use crate::domain::count::{CountRule, Measured, count};
            prop_assume!(taken <= units);
            let mut rng = StdRng::seed_from_u64(seed);
            let before = unit * f64::from(units);
            let after = unit * f64::from(units - taken);
            let mut run: Vec<f64> = (0..10).map(|_| after + sigma * rng.gen_range(-1.0..1.0)).collect();
            let clean = run.clone();
            run[at] += spike * sigma;
            let rule = CountRule { scale_error: 0.005, coverage: 3.0 };
            let tol = Grams((unit / 10.0).max(2.0));
            let counted = |run: &[f64]| {
                let rest = at_rest(run, Some(sigma), sigma, &RestRule::default()).ok()?;
                count(Measured::difference(Grams(before), Grams::ZERO, rest.mean_g, rest.sem_g), Grams(unit), tol, &rule).ok()
            };
            prop_assert_eq!(counted(&clean), Some(i64::from(taken)));
            prop_assert_eq!(counted(&run), Some(i64::from(taken)));
        }

        /// Whatever spike hits a resting run, its mean stays within its uncertainty of the level.
        #[test]
        fn a_spike_never_moves_the_mean(
            level in 50.0f64..5000.0,
            sigma in 0.5f64..5.0,
            spike in prop_oneof![-500.0f64..-20.0, 20.0f64..500.0],
            at in 0usize..12,
            seed in any::<u64>(),
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut run: Vec<f64> = (0..12).map(|_| level + sigma * rng.gen_range(-1.0..1.0)).collect();
            run[at] += spike * sigma;
            let rest = at_rest(&run, Some(sigma), sigma, &rule());
            prop_assert!(rest.is_ok(), "{:?}", rest);
            if let Ok(rest) = rest {
                prop_assert_eq!(rest.rejected, 1);
                prop_assert!((rest.mean_g.0 - level).abs() <= sigma, "{:?}", rest);
            }
        }
    }
}
