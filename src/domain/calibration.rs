//! The three calibration steps of one door, run lane by lane:
//! `tare` (empty lanes give the zero reading), `span` (a standard weight of known grams on each
//! lane gives the gain) and `verify` (the standard weight again must read as itself).
//!
//! Lanes, readings and results are parallel slices in the same order.

use thiserror::Error;

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
/// `verify_tolerance_g`. Returns the grams read per lane. Reports the first failing lane.
pub fn verify(
    lanes: &[String],
    zero: &[i64],
    counts_per_g: &[f64],
    loaded: &[i64],
    standard_g: f64,
    limits: &CalibrationLimits,
) -> Result<Vec<f64>, CalibrationError> {
    check_standard(standard_g, limits)?;
    same_len(lanes, zero.len())?;
    same_len(lanes, counts_per_g.len())?;
    same_len(lanes, loaded.len())?;
    let mut read = Vec::with_capacity(lanes.len());
    for (((lane, &z), &cpg), &l) in lanes.iter().zip(zero).zip(counts_per_g).zip(loaded) {
        if l < z {
            return Err(CalibrationError::NonMonotonic { lane: lane.clone(), delta_counts: l.saturating_sub(z) });
        }
        let got_g = super::weight::LaneCalibration { zero_counts: z, counts_per_g: cpg }.grams(l).0;
        // Asked as "within" so that a NaN reading (e.g. from a zero gain) fails too.
        let within = (got_g - standard_g).abs() <= limits.verify_tolerance_g;
        if !within {
            return Err(CalibrationError::VerifyFailed { lane: lane.clone(), expected_g: standard_g, got_g });
        }
        read.push(got_g);
    }
    Ok(read)
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
        let got = verify(&l, &[1000, 0], &[100.0, 50.0], &[51_050, 24_975], 500.0, &limits()).expect("verify");
        assert_eq!(got, vec![500.5, 499.5]);
    }

    #[test]
    fn verify_refuses_a_reading_off_the_standard() {
        let l = lanes(&["A1", "A2"]);
        let err = verify(&l, &[0, 0], &[100.0, 100.0], &[50_000, 50_200], 500.0, &limits()).expect_err("A2 off");
        assert_eq!(err, CalibrationError::VerifyFailed { lane: "A2".into(), expected_g: 500.0, got_g: 502.0 });
        assert_eq!(err.code(), "verify_failed");
        assert!(err.to_string().starts_with("lane A2: read 502.00 g under the 500 g standard"), "{err}");
    }

    #[test]
    fn verify_refuses_a_reading_below_zero_and_a_broken_gain() {
        let l = lanes(&["A1"]);
        assert_eq!(
            verify(&l, &[1000], &[100.0], &[999], 500.0, &limits()),
            Err(CalibrationError::NonMonotonic { lane: "A1".into(), delta_counts: -1 })
        );
        assert_eq!(verify(&l, &[0], &[0.0], &[0], 500.0, &limits()).map_err(|e| e.code()), Err("verify_failed"));
        assert_eq!(
            verify(&l, &[0], &[f64::NAN], &[50_000], 500.0, &limits()).map_err(|e| e.code()),
            Err("verify_failed")
        );
    }

    #[test]
    fn verify_checks_lengths_and_standard() {
        let l = lanes(&["A1"]);
        assert_eq!(
            verify(&l, &[0], &[], &[1], 500.0, &limits()),
            Err(CalibrationError::CountMismatch { expected: 1, got: 0 })
        );
        assert_eq!(verify(&l, &[0], &[1.0], &[1], -5.0, &limits()), Err(CalibrationError::BadStandard(-5.0)));
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
        ];
        for (err, code) in all {
            assert_eq!(err.code(), code);
        }
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
            let read = verify(&l, &zero, &gains, &loaded, standard_g, &lims).expect("verify");
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
            let err = verify(&l, &[zero], &[gain], &[zero - 1], standard_g, &lims).expect_err("below zero");
            prop_assert_eq!(err.code(), "non_monotonic");
        }
    }
}
