//! Restocking (issue 5 step 6): which lanes need filling and by how much, whether a sale took a
//! lane under its threshold, and how many units a restocker put in, read from the weight change.
//!
//! Stock is counted in units (`i64`, like the book stock it is compared with). Book stock can be
//! wrong — negative after a mis-settled order, or above capacity after a miscount — so the rules
//! here never ask for a negative fill nor for more than a lane holds.

use serde::{Deserialize, Serialize};

use super::count::{self, CountRule, Measured, Miscount};
use super::names::named_enum;
use super::settlement::LaneReading;
use super::units::Grams;

named_enum! {
    /// Where a restock task stands (`restock_tasks.status`).
    pub enum TaskStatus {
        /// Waiting for a restocker.
        Open = "open",
        /// A restock session is working on it.
        InProgress = "in_progress",
        /// What was put in is counted and booked.
        Done = "done",
    }
}

impl TaskStatus {
    /// Not done yet: the cabinet's current task, if it has one.
    pub const CURRENT: [TaskStatus; 2] = [TaskStatus::Open, TaskStatus::InProgress];
}

/// One lane's restock facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneStock {
    pub code: String,
    /// Units the lane holds when full.
    pub capacity: i64,
    /// Restock when the stock is at or under this.
    pub threshold: i64,
    /// Book stock, in units.
    pub stock: i64,
}

/// How many units fill `lane` to capacity: `capacity − stock`, with a negative book stock taken as
/// an empty lane (the shelf cannot hold less than nothing) and never below zero.
pub fn fill_quantity(lane: &LaneStock) -> i64 {
    lane.capacity.saturating_sub(lane.stock.max(0)).max(0)
}

/// The lanes that need restocking and how many units fill each to capacity, in the order given.
///
/// A lane is included when its stock is at or under its threshold and the fill is at least one
/// unit. So: a lane with capacity 0 (or less) holds nothing and is never listed; a threshold at
/// or above the capacity (which layout validation allows only as `threshold == capacity`) means
/// "keep it full": the lane is listed whenever it is short of capacity, and a full lane is not
/// listed because there is nothing to put in.
pub fn lanes_to_restock(lanes: &[LaneStock]) -> Vec<(String, i64)> {
    lanes
        .iter()
        .filter(|l| l.stock <= l.threshold)
        .filter_map(|l| {
            let qty = fill_quantity(l);
            (qty > 0).then(|| (l.code.clone(), qty))
        })
        .collect()
}

/// True only when this change took the lane from above its threshold to at or under it: the moment
/// to send `restock.check`. A lane already under stays quiet, so each sale from a low lane does not
/// raise the alert again; a restock (stock going up) never crosses.
pub fn crossed_threshold(before: i64, after: i64, threshold: i64) -> bool {
    before > threshold && after <= threshold
}

/// Why a lane's weight change after a restock cannot be read as whole units. The lane needs a
/// person (a count by hand).
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum RestockRefusal {
    /// The change is not within tolerance of a whole number of units.
    #[error("a change of {delta_g} g is not a whole number of units (nearest: {nearest})")]
    OutOfTolerance { delta_g: Grams, nearest: i64 },
    /// The lane's noise leaves more than one count possible.
    #[error("a change of {delta_g} g could be {from} to {to} units at this lane's noise: count it by hand")]
    Ambiguous { delta_g: Grams, from: i64, to: i64 },
    /// The inputs cannot count anything: a unit weight that is not positive and finite, a
    /// tolerance that is negative or at least half a unit (a change would then match two counts),
    /// or a change that is not finite or not a plausible count.
    #[error("cannot count units: {0}")]
    Uncountable(&'static str),
}

/// Largest count read from one lane's change; far beyond any lane (layout caps capacity at 1000),
/// and small enough that the count is exact in `f64` and fits `i64`.
const MAX_COUNT: f64 = 1_000_000.0;

/// How many units a restocker added to a lane, from its weight change after the restock door
/// closed, with its uncertainty: the one whole number of units that fits it (`count::count`). A
/// loss is a negative count: the restocker took some out (expired goods), which is allowed and
/// recorded like any other change.
pub fn added_units(
    change: Measured,
    unit_g: Grams,
    tolerance_g: Grams,
    rule: &CountRule,
) -> Result<i64, RestockRefusal> {
    let delta_g = change.g;
    // Each check is written so that NaN fails it.
    if !(unit_g.0.is_finite() && unit_g > Grams::ZERO) {
        return Err(RestockRefusal::Uncountable("the unit weight is not a positive number of grams"));
    }
    if !(tolerance_g >= Grams::ZERO && tolerance_g < unit_g / 2.0) {
        return Err(RestockRefusal::Uncountable("the tolerance is negative or at least half a unit"));
    }
    if !delta_g.0.is_finite() {
        return Err(RestockRefusal::Uncountable("the weight change is not a number"));
    }
    if (delta_g / unit_g).abs() > MAX_COUNT {
        return Err(RestockRefusal::Uncountable("the weight change is far beyond any lane"));
    }
    if count::count_tolerance(tolerance_g, delta_g, rule.scale_error) >= unit_g / 2.0 {
        return Err(RestockRefusal::Uncountable("too much weight at once to tell the count apart: count it in parts"));
    }
    count::count(change, unit_g, tolerance_g, rule).map_err(|m| match m {
        Miscount::Residue { nearest } => RestockRefusal::OutOfTolerance { delta_g, nearest },
        Miscount::Ambiguous { from, to } => RestockRefusal::Ambiguous { delta_g, from, to },
    })
}

/// One lane of a restock task: how many units to bring (`wanted`) or were put in (`added`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLane {
    pub lane: String,
    pub product_id: Option<i64>,
    pub qty: i64,
}

/// A lane whose weight change after a restock could not be counted: a person counts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Uncounted {
    pub lane: String,
    /// The weights it was judged from, for the person who counts it.
    pub before_g: Option<Grams>,
    pub after_g: Option<Grams>,
    pub delta_g: Option<Grams>,
    pub why: String,
}

/// What a restock put in, read from the weights of the door's lanes before and after.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RestockCount {
    /// Lanes whose change is a whole number of units other than zero.
    pub added: Vec<TaskLane>,
    /// Lanes that could not be counted (no weight from before, never stable, not whole units).
    pub uncounted: Vec<Uncounted>,
}

impl RestockCount {
    /// Nothing went in and nothing is left to count: the door was opened for nothing.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.uncounted.is_empty()
    }
}

/// Count a restock lane by lane: each lane's change in whole units ([`added_units`]), or why it
/// could not be counted.
pub fn count_restock(readings: &[LaneReading], rule: &CountRule) -> RestockCount {
    let mut count = RestockCount::default();
    for r in readings {
        let delta = r.before_g.zip(r.after_g).map(|(before, after)| after - before);
        let counted = match (r.before_g, r.after_g) {
            (None, _) => Err("no weight from before".to_string()),
            (_, None) => Err("never stable".to_string()),
            (Some(before), Some(after)) => {
                let change = Measured::difference(after, r.after_sem_g, before, r.before_sem_g);
                added_units(change, r.unit_g, r.tolerance_g, rule).map_err(|e| e.to_string())
            }
        };
        match counted {
            Ok(0) => {}
            Ok(qty) => count.added.push(TaskLane { lane: r.lane.clone(), product_id: Some(r.product_id), qty }),
            Err(why) => count.uncounted.push(Uncounted {
                lane: r.lane.clone(),
                before_g: r.before_g,
                after_g: r.after_g,
                delta_g: delta,
                why,
            }),
        }
    }
    count
}

/// One lane's weight across a maintenance session, and the tolerance a change is judged by.
#[derive(Debug, Clone, PartialEq)]
pub struct LaneChange {
    pub lane: String,
    pub before_g: Option<Grams>,
    pub after_g: Option<Grams>,
    pub tolerance_g: Grams,
}

/// A lane that moved during maintenance, as recorded on the session and in the alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaneMove {
    pub lane: String,
    pub before_g: Option<Grams>,
    pub after_g: Option<Grams>,
    pub delta_g: Option<Grams>,
}

/// The lanes that moved beyond their tolerance during maintenance, or cannot be compared (no
/// weight from before, or never stable): nothing changes hands, but each is recorded and flagged.
pub fn maintenance_moves(changes: &[LaneChange]) -> Vec<LaneMove> {
    changes
        .iter()
        .filter_map(|c| {
            let delta_g = c.before_g.zip(c.after_g).map(|(before, after)| after - before);
            delta_g.is_none_or(|d| d.abs() > c.tolerance_g).then(|| LaneMove {
                lane: c.lane.clone(),
                before_g: c.before_g,
                after_g: c.after_g,
                delta_g,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::units::Fen;
    use proptest::prelude::*;

    /// [`added_units`] over plain numbers of grams.
    fn added(delta_g: f64, unit_g: f64, tolerance_g: f64, scale_error: f64) -> Result<i64, RestockRefusal> {
        let change = Measured { g: Grams(delta_g), u: Grams::ZERO };
        added_units(change, Grams(unit_g), Grams(tolerance_g), &CountRule { scale_error, coverage: 3.0 })
    }

    fn reading(lane: &str, before_g: Option<f64>, after_g: Option<f64>) -> LaneReading {
        LaneReading {
            lane: lane.into(),
            product_id: 1,
            product_name: "water".into(),
            unit_g: Grams(550.0),
            tolerance_g: Grams(8.0),
            price_fen: Fen(200),
            before_g: before_g.map(Grams),
            after_g: after_g.map(Grams),
            before_sem_g: Grams::ZERO,
            after_sem_g: Grams::ZERO,
        }
    }

    #[test]
    fn a_restock_is_counted_lane_by_lane() {
        let count = count_restock(
            &[
                reading("A1", Some(0.0), Some(1651.0)),
                reading("A2", Some(1100.0), Some(1101.0)),
                reading("A3", None, Some(550.0)),
                reading("A4", Some(0.0), None),
                reading("A5", Some(0.0), Some(800.0)),
                reading("A6", Some(1100.0), Some(550.0)),
            ],
            &CountRule { scale_error: 0.005, coverage: 3.0 },
        );
        let added: Vec<(&str, i64)> = count.added.iter().map(|a| (a.lane.as_str(), a.qty)).collect();
        assert_eq!(added, [("A1", 3), ("A6", -1)], "untouched lanes are not listed; a unit taken out is -1");
        let uncounted: Vec<(&str, &str)> = count.uncounted.iter().map(|u| (u.lane.as_str(), u.why.as_str())).collect();
        assert_eq!(uncounted[..2], [("A3", "no weight from before"), ("A4", "never stable")]);
        assert_eq!(uncounted[2].0, "A5");
        assert!(uncounted[2].1.contains("not a whole number"), "{:?}", uncounted[2]);
        assert_eq!(count.uncounted[2].delta_g, Some(Grams(800.0)), "the weights it was judged from are kept");
        assert!(!count.is_empty());
        assert!(
            count_restock(&[reading("A1", Some(10.0), Some(11.0))], &CountRule { scale_error: 0.005, coverage: 3.0 })
                .is_empty()
        );
    }

    #[test]
    fn maintenance_flags_lanes_that_moved_or_cannot_be_compared() {
        let change = |lane: &str, before_g: Option<f64>, after_g: Option<f64>| LaneChange {
            lane: lane.into(),
            before_g: before_g.map(Grams),
            after_g: after_g.map(Grams),
            tolerance_g: Grams(5.0),
        };
        let moves = maintenance_moves(&[
            change("A1", Some(100.0), Some(104.0)),
            change("A2", Some(100.0), Some(140.0)),
            change("A3", None, Some(10.0)),
            change("A4", Some(10.0), None),
        ]);
        let lanes: Vec<&str> = moves.iter().map(|m| m.lane.as_str()).collect();
        assert_eq!(lanes, ["A2", "A3", "A4"]);
        assert_eq!(moves[0].delta_g, Some(Grams(40.0)));
        assert_eq!(moves[1].delta_g, None);
    }

    fn lane(code: &str, capacity: i64, threshold: i64, stock: i64) -> LaneStock {
        LaneStock { code: code.to_string(), capacity, threshold, stock }
    }

    #[test]
    fn lanes_at_or_under_threshold_are_filled_to_capacity() {
        let lanes = [
            lane("A1", 10, 2, 2), // at the threshold
            lane("A2", 10, 2, 3), // above it
            lane("A3", 8, 2, 0),  // empty
            lane("A4", 10, 2, 1),
        ];
        assert_eq!(lanes_to_restock(&lanes), vec![("A1".into(), 8), ("A3".into(), 8), ("A4".into(), 9)]);
        assert_eq!(lanes_to_restock(&[]), vec![]);
    }

    #[test]
    fn odd_lanes_are_handled() {
        assert_eq!(lanes_to_restock(&[lane("zero", 0, 0, 0)]), vec![], "capacity 0 holds nothing");
        assert_eq!(lanes_to_restock(&[lane("neg", -3, 0, -5)]), vec![], "a nonsense capacity holds nothing");
        assert_eq!(lanes_to_restock(&[lane("full", 5, 5, 5)]), vec![], "keep-full lane that is full");
        assert_eq!(lanes_to_restock(&[lane("keep", 5, 5, 4)]), vec![("keep".into(), 1)], "keep-full lane short by one");
        assert_eq!(lanes_to_restock(&[lane("over", 5, 9, 4)]), vec![("over".into(), 1)], "threshold above capacity");
        assert_eq!(lanes_to_restock(&[lane("owed", 5, 1, -2)]), vec![("owed".into(), 5)], "negative book stock");
        assert_eq!(lanes_to_restock(&[lane("nothr", 5, -1, 0)]), vec![], "a negative threshold never triggers");
    }

    #[test]
    fn crossing_is_only_the_downward_step() {
        assert!(crossed_threshold(3, 2, 2));
        assert!(crossed_threshold(5, 0, 2));
        assert!(!crossed_threshold(2, 1, 2), "already at the threshold");
        assert!(!crossed_threshold(5, 3, 2), "still above");
        assert!(!crossed_threshold(1, 8, 2), "a restock");
        assert!(!crossed_threshold(3, 3, 2), "no change");
    }

    #[test]
    fn added_units_counts_gains_and_losses() {
        assert_eq!(added(750.0, 250.0, 5.0, 0.0), Ok(3));
        assert_eq!(added(746.0, 250.0, 5.0, 0.0), Ok(3));
        assert_eq!(added(755.0, 250.0, 5.0, 0.0), Ok(3), "exactly at tolerance");
        assert_eq!(added(-500.0, 250.0, 5.0, 0.0), Ok(-2), "the restocker took two out");
        assert_eq!(added(3.0, 250.0, 5.0, 0.0), Ok(0), "nothing added");
        // Ten heavy units read a little off: within the scale's relative error they are ten.
        assert_eq!(added(5187.5, 520.0, 8.0, 0.005), Ok(10));
        assert!(matches!(added(5187.5, 520.0, 8.0, 0.0), Err(RestockRefusal::OutOfTolerance { nearest: 10, .. })));
        assert!(matches!(added(5200.0, 52.0, 2.0, 0.005), Err(RestockRefusal::Uncountable(_))), "±26 g on 52 g units");
    }

    #[test]
    fn a_residue_is_refused_with_the_nearest_count() {
        assert_eq!(
            added(870.0, 250.0, 5.0, 0.0),
            Err(RestockRefusal::OutOfTolerance { delta_g: Grams(870.0), nearest: 3 })
        );
        assert_eq!(
            added(-380.0, 250.0, 5.0, 0.0),
            Err(RestockRefusal::OutOfTolerance { delta_g: Grams(-380.0), nearest: -2 })
        );
    }

    #[test]
    fn inputs_that_cannot_count_are_refused() {
        for (d, u, t) in [
            (100.0, 0.0, 1.0),
            (100.0, -50.0, 1.0),
            (100.0, f64::NAN, 1.0),
            (100.0, f64::INFINITY, 1.0),
            (100.0, 50.0, -1.0),
            (100.0, 50.0, 25.0),
            (100.0, 50.0, f64::NAN),
            (f64::NAN, 50.0, 1.0),
            (f64::INFINITY, 50.0, 1.0),
            (1e12, 50.0, 1.0),
        ] {
            assert!(matches!(added(d, u, t, 0.0), Err(RestockRefusal::Uncountable(_))), "{d} {u} {t}");
        }
    }

    proptest! {
        #[test]
        fn lanes_to_restock_never_overfills(
            lanes in proptest::collection::vec((0i64..50, -5i64..60, -20i64..70), 0..12)
        ) {
            let lanes: Vec<_> = lanes
                .into_iter()
                .enumerate()
                .map(|(i, (capacity, threshold, stock))| lane(&format!("L{i}"), capacity, threshold, stock))
                .collect();
            let out = lanes_to_restock(&lanes);
            for (code, qty) in &out {
                let l = lanes.iter().find(|l| &l.code == code);
                prop_assert!(l.is_some());
                if let Some(l) = l {
                    prop_assert!(l.stock <= l.threshold);
                    prop_assert!(*qty >= 1 && *qty <= l.capacity);
                    prop_assert_eq!(l.stock.max(0) + qty, l.capacity);
                }
            }
        }

        #[test]
        fn crossing_matches_its_definition(before in -20i64..20, after in -20i64..20, t in -20i64..20) {
            prop_assert_eq!(crossed_threshold(before, after, t), before > t && after <= t);
        }

        #[test]
        fn whole_units_with_noise_round_trip(
            n in -200i64..200,
            unit_g in 5.0f64..1000.0,
            tol_share in 0.01f64..0.49,
            noise_share in -1.0f64..1.0,
        ) {
            let tolerance_g = unit_g * tol_share;
            // Strictly inside the tolerance, so float rounding at the edge cannot decide the case.
            let delta_g = n as f64 * unit_g + noise_share * tolerance_g * 0.999;
            prop_assert_eq!(added(delta_g, unit_g, tolerance_g, 0.0), Ok(n));
        }

        #[test]
        fn residues_beyond_tolerance_are_refused(
            n in -200i64..200,
            unit_g in 5.0f64..1000.0,
            tol_share in 0.01f64..0.45,
            beyond_share in 0.001f64..1.0,
            negative in any::<bool>(),
        ) {
            let tolerance_g = unit_g * tol_share;
            // A residue between just past the tolerance and half a unit: nearer to n than to n ± 1.
            let reach = tolerance_g * 1.001 + beyond_share * (unit_g / 2.0 - tolerance_g * 1.001) * 0.999;
            let residue = if negative { -reach } else { reach };
            let delta_g = n as f64 * unit_g + residue;
            prop_assert_eq!(
                added(delta_g, unit_g, tolerance_g, 0.0),
                Err(RestockRefusal::OutOfTolerance { delta_g: Grams(delta_g), nearest: n })
            );
        }
    }
}
