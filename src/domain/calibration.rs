//! The three calibration steps of one door, run lane by lane:
//! `tare` (empty lanes give the zero reading), `span` (a standard weight of known grams on each
//! lane gives the gain) and `verify` (the standard weight again must read as itself).
//!
//! Lanes, readings and results are parallel slices in the same order.

use thiserror::Error;

use super::rest::{RestRule, median, noise_of};

/// Bounds a calibration must respect; they come from the load cells of the cabinet type.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationLimits {
    /// Smallest plausible gain; below it the lane did not really see the weight.
    pub min_counts_per_g: f64,
    /// Largest plausible gain; above it the standard weight or the wiring is wrong.
    pub max_counts_per_g: f64,
    /// How far, in grams, the verify reading may be from the standard weight.
    pub verify_tolerance_g: f64,
    /// Heaviest standard weight the lanes may carry.
    pub max_standard_g: f64,
    /// Standard uncertainties of the readings' noise a verify may be off beyond its tolerance.
    pub coverage: f64,
}

/// Why a calibration step was refused. Messages are meant for the operator doing it.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CalibrationError {
    #[error("the door is open; close it so nothing touches the lanes, then calibrate again")]
    DoorOpen,
    #[error("expected {expected} readings (one per lane), got {got}")]
    CountMismatch { expected: usize, got: usize },
    #[error("the standard weight must be a positive number of grams no heavier than the lanes allow; got {0} g")]
    BadStandard(f64),
    #[error(
        "lane {lane}: the reading did not move under the standard weight (Δ {delta_counts} counts); is the weight on the lane?"
    )]
    NotMoved { lane: String, delta_counts: i64 },
    #[error(
        "lane {lane}: the reading went down under the standard weight (Δ {delta_counts} counts); the load cell may be wired in reverse or broken"
    )]
    NonMonotonic { lane: String, delta_counts: i64 },
    #[error(
        "lane {lane}: the gain of {counts_per_g:.3} counts per gram is higher than this load cell can give; check the standard weight's value and the wiring"
    )]
    OutOfRange { lane: String, counts_per_g: f64 },
    #[error(
        "lane {lane}: read {got_g:.2} g under the {expected_g} g standard weight; repeat the span step, then verify again"
    )]
    VerifyFailed { lane: String, expected_g: f64, got_g: f64 },
    #[error(
        "lane {lane}: the load cell is too noisy to calibrate ({noise_g:.2} g per reading would need {needed} readings, at most {max} are taken); check the cell, its cable and what touches the lane"
    )]
    Noisy { lane: String, noise_g: f64, needed: u64, max: u32 },
    #[error(
        "lane {lane}: the reading kept moving ({moved_g:.2} g while it was read); make sure nothing touches the lane and the weight sits still, then repeat the step"
    )]
    Drifting { lane: String, moved_g: f64 },
    #[error("lane {lane}: {outliers} of {readings} readings were wild spikes; the load cell or its board is faulty")]
    Spiky { lane: String, outliers: usize, readings: usize },
}

impl CalibrationError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            CalibrationError::DoorOpen => "door_open",
            CalibrationError::CountMismatch { .. } => "count_mismatch",
            CalibrationError::BadStandard(_) => "bad_standard",
            CalibrationError::NotMoved { .. } => "not_moved",
            CalibrationError::NonMonotonic { .. } => "non_monotonic",
            CalibrationError::OutOfRange { .. } => "out_of_range",
            CalibrationError::VerifyFailed { .. } => "verify_failed",
            CalibrationError::Noisy { .. } => "noisy",
            CalibrationError::Drifting { .. } => "drifting",
            CalibrationError::Spiky { .. } => "spiky",
        }
    }
}

/// Tare: the readings of the empty lanes become their zero counts. Refused while the door is
/// open, since a hand or an item on a lane would become part of "empty".
pub fn tare(lanes: &[String], counts: &[i64], door_open: bool) -> Result<Vec<i64>, CalibrationError> {
    if door_open {
        return Err(CalibrationError::DoorOpen);
    }
    same_len(lanes, counts.len())?;
    Ok(counts.to_vec())
}

/// Span: with `standard_g` grams on every lane, the gain of each lane in counts per gram.
/// Reports the first failing lane.
pub fn span(
    lanes: &[String],
    zero: &[i64],
    loaded: &[i64],
    standard_g: f64,
    limits: &CalibrationLimits,
) -> Result<Vec<f64>, CalibrationError> {
    check_standard(standard_g, limits)?;
    same_len(lanes, zero.len())?;
    same_len(lanes, loaded.len())?;
    let mut gains = Vec::with_capacity(lanes.len());
    for ((lane, &z), &l) in lanes.iter().zip(zero).zip(loaded) {
        let delta_counts = l.saturating_sub(z);
        // Small moves either way are noise, so "not moved" is checked before the direction.
        if delta_counts == 0 || (delta_counts as f64).abs() / standard_g < limits.min_counts_per_g {
            return Err(CalibrationError::NotMoved { lane: lane.clone(), delta_counts });
        }
        if delta_counts < 0 {
            return Err(CalibrationError::NonMonotonic { lane: lane.clone(), delta_counts });
        }
        let counts_per_g = delta_counts as f64 / standard_g;
        if counts_per_g > limits.max_counts_per_g {
            return Err(CalibrationError::OutOfRange { lane: lane.clone(), counts_per_g });
        }
        gains.push(counts_per_g);
    }
    Ok(gains)
}

/// Verify: with the standard weight on every lane again, each lane must read it within
/// `verify_tolerance_g`, widened per lane by `allowance_g` (what the noise left in the readings
/// allows; empty: none). Returns the grams read per lane. Reports the first failing lane.
pub fn verify(
    lanes: &[String],
    zero: &[i64],
    counts_per_g: &[f64],
    loaded: &[i64],
    standard_g: f64,
    limits: &CalibrationLimits,
    allowance_g: &[f64],
) -> Result<Vec<f64>, CalibrationError> {
    check_standard(standard_g, limits)?;
    same_len(lanes, zero.len())?;
    same_len(lanes, counts_per_g.len())?;
    same_len(lanes, loaded.len())?;
    let mut read = Vec::with_capacity(lanes.len());
    for (i, (((lane, &z), &cpg), &l)) in lanes.iter().zip(zero).zip(counts_per_g).zip(loaded).enumerate() {
        if l < z {
            return Err(CalibrationError::NonMonotonic { lane: lane.clone(), delta_counts: l.saturating_sub(z) });
        }
        let got_g = super::weight::LaneCalibration { zero_counts: z, counts_per_g: cpg }.grams(l).0;
        // Asked as "within" so that a NaN reading (e.g. from a zero gain) fails too.
        let allowed = limits.verify_tolerance_g + allowance_g.get(i).copied().unwrap_or(0.0);
        let within = (got_g - standard_g).abs() <= allowed;
        if !within {
            return Err(CalibrationError::VerifyFailed { lane: lane.clone(), expected_g: standard_g, got_g });
        }
        read.push(got_g);
    }
    Ok(read)
}

/// How a step's separate readings are judged (`calibration.*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleRule {
    /// Readings asked for first.
    pub samples: u32,
    /// Most readings asked for; a lane that would need more is too noisy.
    pub max_samples: u32,
    /// The standard uncertainty wanted of each step's mean, grams.
    pub target_sem_g: f64,
    /// Largest share of readings that may be spikes.
    pub max_spike_fraction: f64,
    /// A move larger than this while the lane is read, grams, is drift…
    pub drift_max_g: f64,
    /// …when it is also this many standard errors large: stricter than a rest's test, since a
    /// refused calibration sends someone back to the cabinet.
    pub trend_sigmas: f64,
    /// What counts as a spike.
    pub rest: RestRule,
}

/// One lane's readings of a step, summarised in counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LaneSamples {
    /// Mean of the readings that are not spikes.
    pub mean_counts: f64,
    /// Noise of one reading.
    pub sigma_counts: f64,
    pub readings: usize,
    pub spikes: usize,
    /// How far a straight line through the readings moves from first to last.
    pub moved_counts: f64,
    /// Whether that move stands out from the noise (`trend_sigmas`).
    pub trend_significant: bool,
}

/// Lane `lane`'s column of `samples` (each one reading of every listed channel), summarised.
pub fn summarise(samples: &[Vec<i64>], lane: usize, rule: &SampleRule) -> Option<LaneSamples> {
    let values: Vec<f64> = samples.iter().filter_map(|s| s.get(lane)).map(|&c| c as f64).collect();
    if values.len() < 2 {
        return None;
    }
    let med = median(values.clone());
    // The spread about the median as well as the successive differences: a slow swing has small
    // differences, and would otherwise make every reading look like a spike.
    let spread = 1.482_6 * median(values.iter().map(|v| (v - med).abs()).collect());
    let sigma = noise_of(&values).max(spread).max(0.5);
    let inliers: Vec<(f64, f64)> = values
        .iter()
        .enumerate()
        .filter(|(_, v)| (*v - med).abs() <= rule.rest.outlier_sigmas * sigma)
        .map(|(i, v)| (i as f64, *v))
        .collect();
    let n = inliers.len().max(1) as f64;
    let mean = inliers.iter().map(|p| p.1).sum::<f64>() / n;
    let tm = inliers.iter().map(|p| p.0).sum::<f64>() / n;
    let sxx: f64 = inliers.iter().map(|p| (p.0 - tm).powi(2)).sum();
    let slope = if sxx > 0.0 { inliers.iter().map(|p| (p.0 - tm) * (p.1 - mean)).sum::<f64>() / sxx } else { 0.0 };
    let span = values.len().saturating_sub(1) as f64;
    Some(LaneSamples {
        mean_counts: mean,
        sigma_counts: sigma,
        readings: values.len(),
        spikes: values.len() - inliers.len(),
        moved_counts: slope * span,
        trend_significant: sxx > 0.0 && slope.abs() / (sigma / sxx.sqrt()) > rule.trend_sigmas,
    })
}

/// What a step's readings of one lane say, with the lane's gain (counts per gram) to judge them
/// in grams: fine, too few for its noise (`Err(Ok(n))`: ask for `n`), or refused.
pub fn judge_lane(
    lane: &str,
    s: &LaneSamples,
    counts_per_g: f64,
    rule: &SampleRule,
) -> Result<(), Result<u32, CalibrationError>> {
    if s.spikes as f64 > rule.max_spike_fraction * s.readings as f64 {
        return Err(Err(CalibrationError::Spiky { lane: lane.into(), outliers: s.spikes, readings: s.readings }));
    }
    let moved_g = s.moved_counts / counts_per_g;
    if s.trend_significant && moved_g.abs() > rule.drift_max_g {
        return Err(Err(CalibrationError::Drifting { lane: lane.into(), moved_g }));
    }
    let noise_g = s.sigma_counts / counts_per_g;
    let needed = (noise_g / rule.target_sem_g).powi(2).ceil() as u64;
    if needed > u64::from(rule.max_samples) {
        return Err(Err(CalibrationError::Noisy { lane: lane.into(), noise_g, needed, max: rule.max_samples }));
    }
    if needed > s.readings as u64 {
        return Err(Ok(needed as u32));
    }
    Ok(())
}

/// Every lane's readings of a step, each judged with its gain when known (`None`: a first tare,
/// whose noise in grams cannot be told yet, is only checked for spikes). The summaries, or the
/// most readings a lane needs (`Err(Ok(n))`), or the first lane refused. Once more readings were
/// asked for (`asked_more`), what came is used: a second estimate of the noise always differs a
/// little from the first, and verify allows for the uncertainty that is left.
pub fn judge_samples(
    lanes: &[String],
    samples: &[Vec<i64>],
    gains: &[Option<f64>],
    rule: &SampleRule,
    asked_more: bool,
) -> Result<Vec<LaneSamples>, Result<u32, CalibrationError>> {
    if let Some(bad) = samples.iter().find(|s| s.len() != lanes.len()) {
        return Err(Err(CalibrationError::CountMismatch { expected: lanes.len(), got: bad.len() }));
    }
    let mut out = Vec::with_capacity(lanes.len());
    let mut more = 0u32;
    for (i, lane) in lanes.iter().enumerate() {
        let Some(s) = summarise(samples, i, rule) else {
            return Err(Err(CalibrationError::CountMismatch { expected: 2, got: samples.len() }));
        };
        // Without a gain only spikes can be judged: a huge gain makes noise and drift vanish.
        let gain = gains.get(i).copied().flatten().filter(|g| g.is_finite() && *g > 0.0);
        match judge_lane(lane, &s, gain.unwrap_or(f64::INFINITY), rule) {
            Ok(()) => {}
            Err(Ok(n)) => more = more.max(n),
            Err(Err(e)) => return Err(Err(e)),
        }
        out.push(s);
    }
    if more > 0 && !asked_more { Err(Ok(more)) } else { Ok(out) }
}

/// A standard weight must be a finite number of grams in (0, `max_standard_g`].
pub fn check_standard(standard_g: f64, limits: &CalibrationLimits) -> Result<(), CalibrationError> {
    if standard_g.is_finite() && standard_g > 0.0 && standard_g <= limits.max_standard_g {
        Ok(())
    } else {
        Err(CalibrationError::BadStandard(standard_g))
    }
}

fn same_len(lanes: &[String], got: usize) -> Result<(), CalibrationError> {
    if got == lanes.len() { Ok(()) } else { Err(CalibrationError::CountMismatch { expected: lanes.len(), got }) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits() -> CalibrationLimits {
        CalibrationLimits {
            min_counts_per_g: 10.0,
            max_counts_per_g: 2000.0,
            verify_tolerance_g: 1.0,
            max_standard_g: 20_000.0,
            coverage: 3.0,
        }
    }

    fn lanes(codes: &[&str]) -> Vec<String> {
        codes.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn tare_returns_the_empty_readings() {
        let l = lanes(&["A1", "A2"]);
        assert_eq!(tare(&l, &[100, -5], false), Ok(vec![100, -5]));
    }

    #[test]
    fn tare_refuses_an_open_door_and_a_wrong_count() {
        let l = lanes(&["A1", "A2"]);
        assert_eq!(tare(&l, &[100, -5], true), Err(CalibrationError::DoorOpen));
        assert_eq!(tare(&l, &[100], false), Err(CalibrationError::CountMismatch { expected: 2, got: 1 }));
    }

    #[test]
    fn span_gives_counts_per_gram() {
        let l = lanes(&["A1", "A2"]);
        let gains = span(&l, &[1000, -200], &[51_000, 99_800], 500.0, &limits()).expect("valid span");
        assert_eq!(gains, vec![100.0, 200.0]);
    }

    #[test]
    fn span_refuses_bad_standard_weights() {
        let l = lanes(&["A1"]);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 20_000.5] {
            let err = span(&l, &[0], &[1000], bad, &limits()).expect_err("bad standard");
            assert_eq!(err.code(), "bad_standard", "{bad}");
        }
        assert!(span(&l, &[0], &[200_000], 20_000.0, &limits()).is_ok(), "the maximum itself is allowed");
    }

    #[test]
    fn span_refuses_mismatched_lengths() {
        let l = lanes(&["A1", "A2"]);
        assert_eq!(
            span(&l, &[0], &[1, 2], 500.0, &limits()),
            Err(CalibrationError::CountMismatch { expected: 2, got: 1 })
        );
        assert_eq!(
            span(&l, &[0, 0], &[1, 2, 3], 500.0, &limits()),
            Err(CalibrationError::CountMismatch { expected: 2, got: 3 })
        );
    }

    #[test]
    fn span_reports_a_lane_that_did_not_move() {
        let l = lanes(&["A1", "A2"]);
        let err = span(&l, &[0, 0], &[50_000, 3], 500.0, &limits()).expect_err("A2 did not move");
        assert_eq!(err, CalibrationError::NotMoved { lane: "A2".into(), delta_counts: 3 });
        assert_eq!(
            err.to_string(),
            "lane A2: the reading did not move under the standard weight (Δ 3 counts); is the weight on the lane?"
        );
        // 4999 counts over 500 g is 9.998 counts/g, just under the minimum of 10.
        assert_eq!(span(&l, &[0, 0], &[50_000, 4999], 500.0, &limits()).map_err(|e| e.code()), Err("not_moved"));
        assert!(span(&l, &[0, 0], &[50_000, 5000], 500.0, &limits()).is_ok());
        assert_eq!(span(&l, &[7, 7], &[7, 7], 500.0, &limits()).map_err(|e| e.code()), Err("not_moved"));
    }

    #[test]
    fn span_calls_a_small_dip_not_moved_and_a_large_one_non_monotonic() {
        let l = lanes(&["A1"]);
        assert_eq!(
            span(&l, &[1000], &[990], 500.0, &limits()),
            Err(CalibrationError::NotMoved { lane: "A1".into(), delta_counts: -10 })
        );
        let err = span(&l, &[1000], &[-49_000], 500.0, &limits()).expect_err("reversed cell");
        assert_eq!(err, CalibrationError::NonMonotonic { lane: "A1".into(), delta_counts: -50_000 });
        assert_eq!(err.code(), "non_monotonic");
        assert!(err.to_string().contains("went down"), "{err}");
    }

    #[test]
    fn span_refuses_a_gain_above_the_maximum() {
        let l = lanes(&["A1"]);
        let err = span(&l, &[0], &[1_000_500], 500.0, &limits()).expect_err("2001 counts/g");
        assert_eq!(err, CalibrationError::OutOfRange { lane: "A1".into(), counts_per_g: 2001.0 });
        assert_eq!(err.code(), "out_of_range");
        assert!(span(&l, &[0], &[1_000_000], 500.0, &limits()).is_ok(), "exactly the maximum");
    }

    #[test]
    fn span_reports_the_first_failing_lane() {
        let l = lanes(&["A1", "A2", "A3"]);
        let err = span(&l, &[0, 0, 0], &[50_000, -50_000, 0], 500.0, &limits()).expect_err("A2 and A3 fail");
        assert_eq!(err, CalibrationError::NonMonotonic { lane: "A2".into(), delta_counts: -50_000 });
    }

    #[test]
    fn verify_returns_grams_within_tolerance() {
        let l = lanes(&["A1", "A2"]);
        let got = verify(&l, &[1000, 0], &[100.0, 50.0], &[51_050, 24_975], 500.0, &limits(), &[]).expect("verify");
        assert_eq!(got, vec![500.5, 499.5]);
    }

    #[test]
    fn verify_refuses_a_reading_off_the_standard() {
        let l = lanes(&["A1", "A2"]);
        let err = verify(&l, &[0, 0], &[100.0, 100.0], &[50_000, 50_200], 500.0, &limits(), &[]).expect_err("A2 off");
        assert_eq!(err, CalibrationError::VerifyFailed { lane: "A2".into(), expected_g: 500.0, got_g: 502.0 });
        assert_eq!(err.code(), "verify_failed");
        assert!(err.to_string().starts_with("lane A2: read 502.00 g under the 500 g standard"), "{err}");
    }

    #[test]
    fn verify_refuses_a_reading_below_zero_and_a_broken_gain() {
        let l = lanes(&["A1"]);
        assert_eq!(
            verify(&l, &[1000], &[100.0], &[999], 500.0, &limits(), &[]),
            Err(CalibrationError::NonMonotonic { lane: "A1".into(), delta_counts: -1 })
        );
        assert_eq!(verify(&l, &[0], &[0.0], &[0], 500.0, &limits(), &[]).map_err(|e| e.code()), Err("verify_failed"));
        assert_eq!(
            verify(&l, &[0], &[f64::NAN], &[50_000], 500.0, &limits(), &[]).map_err(|e| e.code()),
            Err("verify_failed")
        );
    }

    #[test]
    fn verify_checks_lengths_and_standard() {
        let l = lanes(&["A1"]);
        assert_eq!(
            verify(&l, &[0], &[], &[1], 500.0, &limits(), &[]),
            Err(CalibrationError::CountMismatch { expected: 1, got: 0 })
        );
        assert_eq!(verify(&l, &[0], &[1.0], &[1], -5.0, &limits(), &[]), Err(CalibrationError::BadStandard(-5.0)));
    }

    #[test]
    fn codes_are_stable() {
        let lane = || "A1".to_string();
        let all = [
            (CalibrationError::DoorOpen, "door_open"),
            (CalibrationError::CountMismatch { expected: 1, got: 2 }, "count_mismatch"),
            (CalibrationError::BadStandard(0.0), "bad_standard"),
            (CalibrationError::NotMoved { lane: lane(), delta_counts: 0 }, "not_moved"),
            (CalibrationError::NonMonotonic { lane: lane(), delta_counts: -1 }, "non_monotonic"),
            (CalibrationError::OutOfRange { lane: lane(), counts_per_g: 1.0 }, "out_of_range"),
            (CalibrationError::VerifyFailed { lane: lane(), expected_g: 1.0, got_g: 2.0 }, "verify_failed"),
            (CalibrationError::Noisy { lane: lane(), noise_g: 9.0, needed: 9000, max: 4096 }, "noisy"),
            (CalibrationError::Drifting { lane: lane(), moved_g: 3.0 }, "drifting"),
            (CalibrationError::Spiky { lane: lane(), outliers: 9, readings: 64 }, "spiky"),
        ];
        for (err, code) in all {
            assert_eq!(err.code(), code);
        }
    }

    fn sample_rule() -> SampleRule {
        SampleRule {
            samples: 64,
            max_samples: 1024,
            target_sem_g: 0.25,
            max_spike_fraction: 0.05,
            drift_max_g: 1.0,
            trend_sigmas: 5.0,
            rest: RestRule::default(),
        }
    }

    /// `n` readings of one lane at 100 counts per gram: `f(i)` grams at reading `i`.
    fn readings(n: usize, f: impl Fn(usize) -> f64) -> Vec<Vec<i64>> {
        (0..n).map(|i| vec![(100_000.0 + 100.0 * f(i)).round() as i64]).collect()
    }

    /// Gaussian noise of σ `sigma` for reading `i`, the same every run.
    fn noise(i: usize, sigma: f64) -> f64 {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64 * 7919 + 1);
        let (u1, u2): (f64, f64) = (1.0 - rng.r#gen::<f64>(), rng.r#gen());
        sigma * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    #[test]
    fn quiet_samples_pass_and_noisy_ones_ask_for_more_or_are_refused() {
        let l = lanes(&["A1"]);
        let r = sample_rule();
        let quiet = readings(64, |i| 500.0 + noise(i, 0.5));
        let got = judge_samples(&l, &quiet, &[Some(100.0)], &r, false).expect("0.5 g noise: 16 readings do");
        assert!((got[0].mean_counts / 100.0 - 1500.0).abs() < 0.2, "{got:?}");
        // 5 g noise wants (5 / 0.25)² = 400 readings.
        let noisy = readings(64, |i| 500.0 + noise(i, 5.0));
        assert!(matches!(judge_samples(&l, &noisy, &[Some(100.0)], &r, false), Err(Ok(n)) if (300..=500).contains(&n)));
        assert!(judge_samples(&l, &noisy, &[Some(100.0)], &r, true).is_ok(), "asked once more: what came is used");
        let awful = readings(64, |i| 500.0 + noise(i, 20.0));
        let err = judge_samples(&l, &awful, &[Some(100.0)], &r, false).expect_err("refused").expect_err("noisy");
        assert_eq!(err.code(), "noisy");
    }

    #[test]
    fn spikes_and_drift_are_refused_with_their_reason() {
        let l = lanes(&["A1"]);
        let r = sample_rule();
        let spiky = readings(64, |i| 500.0 + noise(i, 0.5) + if i % 8 == 0 { 60.0 } else { 0.0 });
        let err = judge_samples(&l, &spiky, &[Some(100.0)], &r, false).expect_err("refused").expect_err("spiky");
        assert_eq!(err.code(), "spiky", "{err}");
        let creeping = readings(64, |i| 500.0 + 0.05 * i as f64 + noise(i, 0.5));
        let err = judge_samples(&l, &creeping, &[Some(100.0)], &r, false).expect_err("refused").expect_err("drifting");
        assert_eq!(err.code(), "drifting", "{err}");
        // One spike in 64 is the board's ordinary hiccup: left out, not refused.
        let one = readings(64, |i| 500.0 + noise(i, 0.5) + if i == 10 { 60.0 } else { 0.0 });
        let got = judge_samples(&l, &one, &[Some(100.0)], &r, false).expect("one spike");
        assert_eq!(got[0].spikes, 1);
        assert!((got[0].mean_counts / 100.0 - 1500.0).abs() < 0.2);
    }

    proptest! {
        #[test]
        fn noiseless_calibration_round_trips(
            zeros in proptest::collection::vec(-100_000_000i64..100_000_000, 1..8),
            gain in 10f64..=2000.0,
            standard_g in 1f64..=20_000.0,
        ) {
            let lims = limits();
            // Counts are whole, so the gain a noiseless cell shows is the nearest one that
            // turns the standard weight into a whole number of counts.
            let delta = (gain * standard_g).round() as i64;
            let gain = delta as f64 / standard_g;
            prop_assume!(gain >= lims.min_counts_per_g && gain <= lims.max_counts_per_g);
            let l: Vec<String> = (0..zeros.len()).map(|i| format!("L{i}")).collect();
            let loaded: Vec<i64> = zeros.iter().map(|z| z + delta).collect();

            let zero = tare(&l, &zeros, false).expect("tare");
            prop_assert_eq!(&zero, &zeros);
            let gains = span(&l, &zero, &loaded, standard_g, &lims).expect("span");
            for g in &gains {
                prop_assert!(((g - gain) / gain).abs() <= 1e-9, "{} vs {}", g, gain);
            }
            let read = verify(&l, &zero, &gains, &loaded, standard_g, &lims, &[]).expect("verify");
            for g in read {
                prop_assert!((g - standard_g).abs() <= 1e-6, "{} vs {}", g, standard_g);
            }
        }

        #[test]
        fn a_loaded_reading_below_zero_is_non_monotonic(
            zero in -100_000_000i64..100_000_000,
            gain in 10f64..=2000.0,
            standard_g in 1f64..=20_000.0,
        ) {
            let lims = limits();
            let l = vec!["A1".to_string()];
            // Dropping by at least the minimum gain times the standard: a real move, not noise.
            let drop = (gain * standard_g).ceil() as i64;
            let err = span(&l, &[zero], &[zero - drop], standard_g, &lims).expect_err("went down");
            prop_assert_eq!(err.code(), "non_monotonic");
            // Verify refuses any reading below zero, however small the dip.
            let err = verify(&l, &[zero], &[gain], &[zero - 1], standard_g, &lims, &[]).expect_err("below zero");
            prop_assert_eq!(err.code(), "non_monotonic");
        }
    }
}
