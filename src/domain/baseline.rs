//! A lane's tracked zero while its door is closed and nothing holds the cabinet: each rest
//! ([`super::rest::Rest`]) either follows the baseline (slow drift: temperature, creep) or is an
//! event (a move too fast or too large to be drift: something was taken or added behind the
//! locked door, or the cell jumped).
//!
//! Drift is followed at up to `follow_g_per_h`, plus what the two rests' uncertainties allow.
//! What the baseline followed accumulates, so a cell that keeps creeping is reported once its zero
//! has moved by `alert_total_g` since it was last judged.

use serde::Serialize;

use super::count::{self, CountRule, Measured};
use super::rest::Rest;
use super::units::Grams;

/// How a baseline follows drift; `weights.*` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftRule {
    /// Fastest drift followed, grams per hour.
    pub follow_g_per_h: f64,
    /// A move no larger than this is never an event (the lane's tolerance when larger).
    pub event_min_g: f64,
    /// Followed drift that, accumulated, is reported (the cell's zero moved that far).
    pub alert_total_g: f64,
    /// Standard uncertainties a move may lie within and still be drift.
    pub coverage: f64,
    /// Fewest readings a rest must have to move the baseline: a short rest of a noisy cell,
    /// before its noise is known, can be off by more than drift.
    pub min_readings: usize,
}

/// The tracked weight of a resting lane.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Baseline {
    pub g: Grams,
    pub sem_g: Grams,
    /// When it was last confirmed, ms since the epoch.
    pub at_ms: i64,
    /// Drift followed since it was set (or last reported).
    pub followed_g: Grams,
}

/// What one rest did to the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "tracked", rename_all = "snake_case")]
pub enum Tracked {
    /// No baseline before: this rest is it.
    Started,
    /// The rest rests on too few readings to move the baseline.
    Kept,
    /// Slow drift, followed.
    Followed { by_g: Grams },
    /// Followed, and the drift accumulated since it was last reported reached `alert_total_g`.
    DriftedFar { by_g: Grams, total_g: Grams },
    /// Too fast or too large to be drift: `units` when it is whole units of the lane's product.
    Moved { from_g: Grams, to_g: Grams, delta_g: Grams, units: Option<i64> },
}

/// What the lane holds, for telling a move of whole units from one that is not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LaneProduct {
    pub unit_g: Grams,
    pub tolerance_g: Grams,
}

/// Track `rest`, seen at `now_ms`, against the baseline so far.
pub fn track(
    prev: Option<Baseline>,
    rest: &Rest,
    now_ms: i64,
    product: Option<LaneProduct>,
    tolerance_g: Grams,
    rule: &DriftRule,
    count_rule: &CountRule,
) -> (Baseline, Tracked) {
    let fresh = Baseline { g: rest.mean_g, sem_g: rest.sem_g, at_ms: now_ms, followed_g: Grams::ZERO };
    let Some(b) = prev else { return (fresh, Tracked::Started) };
    if rest.readings < rule.min_readings {
        return (b, Tracked::Kept);
    }
    let change = Measured::difference(rest.mean_g, rest.sem_g, b.g, b.sem_g);
    let hours = ((now_ms - b.at_ms).max(0) as f64) / 3_600_000.0;
    let followable = rule.follow_g_per_h * hours + rule.coverage * change.u.0;
    let event = change.g.0.abs() > followable && change.g.abs() > tolerance_g.max(Grams(rule.event_min_g));
    if event {
        let units =
            product.and_then(|p| count::count(change, p.unit_g, p.tolerance_g, count_rule).ok()).filter(|k| *k != 0);
        let moved = Tracked::Moved { from_g: b.g, to_g: rest.mean_g, delta_g: change.g, units };
        return (fresh, moved);
    }
    let total = b.followed_g + change.g;
    if total.abs().0 >= rule.alert_total_g {
        return (Baseline { followed_g: Grams::ZERO, ..fresh }, Tracked::DriftedFar { by_g: change.g, total_g: total });
    }
    (Baseline { followed_g: total, ..fresh }, Tracked::Followed { by_g: change.g })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rest(g: f64, sem: f64) -> Rest {
        Rest { mean_g: Grams(g), sem_g: Grams(sem), sigma_g: Grams(sem * 3.0), readings: 9, rejected: 0 }
    }

    fn rule() -> DriftRule {
        DriftRule { follow_g_per_h: 6.0, event_min_g: 5.0, alert_total_g: 30.0, coverage: 3.0, min_readings: 6 }
    }

    const COUNT: CountRule = CountRule { scale_error: 0.005, coverage: 3.0 };
    const CAN: LaneProduct = LaneProduct { unit_g: Grams(355.0), tolerance_g: Grams(8.0) };
    const HOUR: i64 = 3_600_000;

    fn step(prev: Option<Baseline>, g: f64, at: i64) -> (Baseline, Tracked) {
        track(prev, &rest(g, 0.5), at, Some(CAN), Grams(8.0), &rule(), &COUNT)
    }

    #[test]
    fn slow_drift_is_followed_and_a_taken_can_is_an_event() {
        let (b, t) = step(None, 1000.0, 0);
        assert_eq!(t, Tracked::Started);
        let (b, t) = step(Some(b), 1003.0, HOUR);
        assert_eq!(t, Tracked::Followed { by_g: Grams(3.0) });
        assert_eq!(b.followed_g, Grams(3.0));
        let (_, t) = step(Some(b), 648.0, HOUR + 60_000);
        assert!(matches!(t, Tracked::Moved { units: Some(-1), .. }), "{t:?}");
    }

    #[test]
    fn a_jump_that_is_no_whole_unit_is_a_move_without_units() {
        let (b, _) = step(None, 1000.0, 0);
        let (_, t) = step(Some(b), 1100.0, 60_000);
        assert!(matches!(t, Tracked::Moved { units: None, .. }), "{t:?}");
    }

    #[test]
    fn drift_accumulated_far_is_reported_once() {
        let mut b = step(None, 1000.0, 0).0;
        let mut far = 0;
        for h in 1..=20 {
            let (next, t) = step(Some(b), 1000.0 + 4.0 * h as f64, h * HOUR);
            far += matches!(t, Tracked::DriftedFar { .. }) as i32;
            assert!(!matches!(t, Tracked::Moved { .. }), "{t:?}");
            b = next;
        }
        assert_eq!(far, 2, "80 g followed is reported at 32 g and again at 64 g");
    }

    proptest! {
        /// Drift no faster than the rule follows is never an event.
        #[test]
        fn slow_drift_is_never_an_event(rate in -6.0f64..6.0, minutes in 1i64..600, start in 0.0f64..5000.0) {
            let (b, _) = step(None, start, 0);
            let at = minutes * 60_000;
            let (_, t) = step(Some(b), start + rate * minutes as f64 / 60.0, at);
            prop_assert!(!matches!(t, Tracked::Moved { .. }), "{:?}", t);
        }
    }
}
