//! How many whole units a weighed change is, with its uncertainty: a count is accepted only when
//! the change, widened by what is known of its error, fits one whole number of units and no other.
//!
//! The band around each count is the product's tolerance (items differ), or the scale's relative
//! error on that much weight when larger (`weights.scale_error`: a calibrated gain is a little
//! off), plus `coverage` standard uncertainties of the measured change (the noise left in the
//! means it was taken from).

use serde::Serialize;

use super::units::Grams;

/// A weighed change and its standard uncertainty.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Measured {
    pub g: Grams,
    pub u: Grams,
}

impl Measured {
    /// `a − b`, their uncertainties combined as independent.
    pub fn difference(a: Grams, ua: Grams, b: Grams, ub: Grams) -> Measured {
        Measured { g: a - b, u: Grams(ua.0.hypot(ub.0)) }
    }
}

/// How counts are judged; `weights.*` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CountRule {
    /// A calibrated cell's relative error, e.g. 0.005 for 0.5 %.
    pub scale_error: f64,
    /// How many standard uncertainties a change may lie from a count (3: about 99.7 %).
    pub coverage: f64,
}

impl CountRule {
    /// An exact scale and exact means: only the product's tolerance.
    pub const EXACT: CountRule = CountRule { scale_error: 0.0, coverage: 0.0 };

    /// How far a change may lie from whole units and still be counted as them.
    pub fn band(&self, change: Measured, tolerance_g: Grams) -> Grams {
        count_tolerance(tolerance_g, change.g, self.scale_error) + change.u * self.coverage
    }
}

/// The product's tolerance, or the scale's relative error on `change_g` when that is larger: ten
/// 520 g bottles read 12 g light on a cell 0.24 % off.
pub fn count_tolerance(tolerance_g: Grams, change_g: Grams, scale_error: f64) -> Grams {
    tolerance_g.max(change_g.abs() * scale_error)
}

/// The standard uncertainty a lane's rest must reach for its counts to be told apart: a change
/// between two such rests, widened by `coverage` uncertainties on either side of the product's
/// tolerance, leaves `coverage` more before the next count, so a count taken is wrong only when
/// the noise is off by twice `coverage` uncertainties. Never above `max_g`; a lane with no
/// product, `max_g`.
pub fn needed_sem(unit_g: Option<Grams>, tolerance_g: Grams, rule: &CountRule, max_g: f64) -> f64 {
    let Some(unit) = unit_g else { return max_g };
    let room = (unit.0 - tolerance_g.0).max(0.0);
    (room / (2.0 * rule.coverage.max(1.0) * std::f64::consts::SQRT_2)).min(max_g)
}

/// Readings a lane of noise `sigma_g` needs for its rest to reach `need_sem_g`, when that is more
/// than the `available` readings a settlement can wait for: its product cannot be counted there.
pub fn readings_short(sigma_g: f64, need_sem_g: f64, available: u64) -> Option<u64> {
    let needed = (sigma_g / need_sem_g.max(1e-3)).powi(2).ceil() as u64;
    (needed > available.max(1)).then_some(needed)
}

/// Why a change is not one count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "fit", rename_all = "snake_case")]
pub enum Miscount {
    /// No whole number of units lies within the band: something else changed the weight.
    Residue { nearest: i64 },
    /// Several counts lie within it: the noise is too large to tell them apart.
    Ambiguous { from: i64, to: i64 },
}

/// Largest count read from one change; far beyond any lane, and exact in `f64`.
const MAX_COUNT: f64 = 1_000_000.0;

/// Units of `unit_g` in `change`, signed like the change, when exactly one count fits its band.
/// A unit that is not positive and finite, or a change that is not finite, is a residue.
pub fn count(change: Measured, unit_g: Grams, tolerance_g: Grams, rule: &CountRule) -> Result<i64, Miscount> {
    let nearest = (change.g / unit_g).round();
    if !(unit_g.0.is_finite() && unit_g.0 > 0.0 && nearest.is_finite()) || nearest.abs() > MAX_COUNT {
        return Err(Miscount::Residue { nearest: 0 });
    }
    let band = rule.band(change, tolerance_g);
    // A NaN band fits nothing.
    if band.0.is_nan() || band.0 < 0.0 {
        return Err(Miscount::Residue { nearest: nearest as i64 });
    }
    let from = ((change.g - band) / unit_g).ceil();
    let to = ((change.g + band) / unit_g).floor();
    match (from as i64, to as i64) {
        (f, t) if f > t => Err(Miscount::Residue { nearest: nearest as i64 }),
        (f, t) if f == t => Ok(f),
        (f, t) => Err(Miscount::Ambiguous { from: f.max(-(MAX_COUNT as i64)), to: t.min(MAX_COUNT as i64) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(g: f64, u: f64) -> Measured {
        Measured { g: Grams(g), u: Grams(u) }
    }

    fn rule() -> CountRule {
        CountRule { scale_error: 0.005, coverage: 3.0 }
    }

    #[test]
    fn a_clear_change_is_one_count() {
        assert_eq!(count(m(712.0, 1.0), Grams(355.0), Grams(5.0), &rule()), Ok(2));
        assert_eq!(count(m(-180.5, 1.0), Grams(180.0), Grams(5.0), &rule()), Ok(-1));
        assert_eq!(count(m(1.0, 1.0), Grams(50.0), Grams(2.0), &rule()), Ok(0));
    }

    #[test]
    fn between_counts_is_a_residue_and_within_two_is_ambiguous() {
        assert_eq!(count(m(180.0, 1.0), Grams(355.0), Grams(5.0), &rule()), Err(Miscount::Residue { nearest: 1 }));
        // 75 g ± 3 × 10 g fits one 50 g unit and two.
        assert_eq!(count(m(75.0, 10.0), Grams(50.0), Grams(2.0), &rule()), Err(Miscount::Ambiguous { from: 1, to: 2 }));
    }

    #[test]
    fn the_uncertainty_widens_the_band() {
        // 365 g: 10 g off one 355 g can, beyond the 5 g tolerance; with u = 2 g the band is 11 g.
        assert_eq!(count(m(365.0, 0.0), Grams(355.0), Grams(5.0), &rule()), Err(Miscount::Residue { nearest: 1 }));
        assert_eq!(count(m(365.0, 2.0), Grams(355.0), Grams(5.0), &rule()), Ok(1));
    }

    #[test]
    fn a_lane_too_noisy_for_its_product_is_told() {
        // σ 12 g on 52 g bars (need 5.2 g) wants 6 readings: 26 available is enough; σ 40 g is not.
        let need = needed_sem(Some(Grams(52.0)), Grams(8.0), &rule(), 6.0);
        assert_eq!(readings_short(12.0, need, 26), None);
        assert_eq!(readings_short(40.0, need, 26), Some((40.0 / need).powi(2).ceil() as u64));
    }

    #[test]
    fn nonsense_is_no_count() {
        assert!(count(m(f64::NAN, 1.0), Grams(50.0), Grams(2.0), &rule()).is_err());
        assert!(count(m(100.0, f64::NAN), Grams(50.0), Grams(2.0), &rule()).is_err());
        assert!(count(m(100.0, 1.0), Grams(0.0), Grams(2.0), &rule()).is_err());
        assert!(count(m(1e12, 1.0), Grams(1.0), Grams(0.1), &rule()).is_err());
    }

    proptest! {
        /// An accepted count lies within its band, and no other count does.
        #[test]
        fn a_count_is_never_accepted_outside_its_uncertainty(
            g in -5000.0f64..5000.0,
            u in 0.0f64..20.0,
            unit in 10.0f64..1000.0,
            tol in 0.0f64..20.0,
            scale_error in 0.0f64..0.01,
            coverage in 0.0f64..4.0,
        ) {
            let rule = CountRule { scale_error, coverage };
            let change = m(g, u);
            let band = rule.band(change, Grams(tol)).0;
            if let Ok(k) = count(change, Grams(unit), Grams(tol), &rule) {
                prop_assert!((g - k as f64 * unit).abs() <= band + 1e-9);
                for other in [k - 1, k + 1] {
                    prop_assert!((g - other as f64 * unit).abs() > band - 1e-9, "{} also fits", other);
                }
            }
        }

        /// Whole units with noise inside the band are counted exactly.
        #[test]
        fn whole_units_are_counted(k in -40i64..40, unit in 20.0f64..1000.0, frac in -1.0f64..1.0, u in 0.0f64..1.0) {
            let tol = (unit / 10.0).max(2.0);
            let g = k as f64 * unit + frac * tol;
            prop_assert_eq!(count(m(g, u), Grams(unit), Grams(tol), &CountRule { scale_error: 0.0, coverage: 3.0 }), Ok(k));
        }
    }
}
