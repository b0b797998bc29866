//! Weight of one lane: turning raw load-cell counts into grams, deciding when a lane has
//! settled, and spotting drift on a lane nobody is shopping from.

use std::collections::VecDeque;

use super::names::named_enum;
use super::units::Grams;

named_enum! {
    /// What a reading was taken during (`weight_log.kind`).
    pub enum ReadingKind {
        /// The doors are closed and have been for a while.
        Closed = "closed",
        /// A door is open.
        Open = "open",
        /// The fast readings right after the last door closed.
        AfterClose = "after_close",
        /// The reading sent with a door event.
        Snapshot = "snapshot",
    }
}

/// Calibration of one load-cell channel, as found by the tare and span steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LaneCalibration {
    /// Raw reading of the empty lane.
    pub zero_counts: i64,
    /// Gain: how many counts one gram adds.
    pub counts_per_g: f64,
}

impl LaneCalibration {
    /// Grams on the lane for a raw reading.
    pub fn grams(&self, counts: i64) -> Grams {
        // Subtract in i128 so readings at the far ends of i64 cannot overflow.
        Grams((i128::from(counts) - i128::from(self.zero_counts)) as f64 / self.counts_per_g)
    }
}

/// The most recent gram readings of one lane, oldest first; once full, each push drops the
/// oldest reading. Held as bare numbers for the statistics; grams in and out.
#[derive(Debug, Clone, PartialEq)]
pub struct LaneWindow {
    readings: VecDeque<f64>,
    capacity: usize,
}

impl LaneWindow {
    /// A window keeping the last `capacity` readings (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        LaneWindow { readings: VecDeque::with_capacity(capacity), capacity }
    }

    /// The readings held, oldest first.
    pub fn recent(&self) -> Vec<Grams> {
        self.readings.iter().map(|g| Grams(*g)).collect()
    }

    /// Adds a reading, dropping the oldest one when the window is full.
    pub fn push(&mut self, Grams(g): Grams) {
        if self.readings.len() == self.capacity {
            self.readings.pop_front();
        }
        self.readings.push_back(g);
    }

    /// Number of readings held.
    pub fn len(&self) -> usize {
        self.readings.len()
    }

    /// True when no reading is held.
    pub fn is_empty(&self) -> bool {
        self.readings.is_empty()
    }

    /// How many readings the window keeps at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The newest reading.
    pub fn latest(&self) -> Option<Grams> {
        self.readings.back().copied().map(Grams)
    }

    /// Forgets all readings, e.g. after a recalibration changed what they mean.
    pub fn clear(&mut self) {
        self.readings.clear();
    }

    /// The last `n` readings (all of them if fewer are held), oldest first.
    fn last(&self, n: usize) -> impl Iterator<Item = f64> + Clone + '_ {
        let skip = self.readings.len().saturating_sub(n);
        self.readings.iter().skip(skip).copied()
    }

    /// The mean of the last `n` readings when they all lie within `tolerance_g` of each other
    /// (max − min ≤ tolerance_g); `None` while fewer than `n` readings are held, for `n == 0`,
    /// or when the lane is still moving.
    pub fn stable(&self, n: usize, Grams(tolerance_g): Grams) -> Option<Grams> {
        if n == 0 || self.readings.len() < n {
            return None;
        }
        stable_mean(self.last(n), tolerance_g).map(Grams)
    }

    /// The median of the readings held: what a lane at rest weighs when its last readings do not
    /// agree within tolerance. Not the latest reading: when the last few disagree, the latest is
    /// the likely outlier.
    pub fn median(&self) -> Option<Grams> {
        let mut all: Vec<f64> = self.readings.iter().copied().collect();
        if all.is_empty() {
            return None;
        }
        all.sort_by(f64::total_cmp);
        let mid = all.len() / 2;
        Some(Grams(if all.len().is_multiple_of(2) { (all[mid - 1] + all[mid]) / 2.0 } else { all[mid] }))
    }

    /// Like [`stable`](Self::stable), but the mean of the longest run of newest readings that lie
    /// within `tolerance_g` of each other (at least `n`): a lane that has rested longer is
    /// weighed with more readings, so its noise averages out further.
    pub fn settled(&self, n: usize, tolerance: Grams) -> Option<Grams> {
        self.stable(n, tolerance)?;
        let tolerance_g = tolerance.0;
        let (mut lo, mut hi, mut sum, mut count) = (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0usize);
        for g in self.readings.iter().rev() {
            let (l, h) = (lo.min(*g), hi.max(*g));
            if h - l > tolerance_g {
                break;
            }
            (lo, hi, sum, count) = (l, h, sum + g, count + 1);
        }
        Some(Grams(sum / count as f64))
    }
}

/// How far a weighed change of `change_g` may lie from whole units and still be counted: the
/// product's tolerance, or the scale's relative error (`scale_error`, e.g. 0.005 for 0.5 %) on that
/// much weight when that is larger. A calibrated cell's gain is a little off, and the error grows
/// with the load: ten 520 g bottles read 12 g light on a cell 0.24 % off.
pub fn count_tolerance(tolerance_g: Grams, change_g: Grams, scale_error: f64) -> Grams {
    tolerance_g.max(change_g.abs() * scale_error)
}

/// The stability rule of [`LaneWindow::stable`] over a slice: true when the last `n` entries
/// exist (n ≥ 1) and lie within `tolerance_g` of each other.
pub fn is_stable(readings: &[f64], n: usize, tolerance_g: f64) -> bool {
    if n == 0 || readings.len() < n {
        return false;
    }
    stable_mean(readings[readings.len() - n..].iter().copied(), tolerance_g).is_some()
}

/// Closed-door drift: `Some(stable − baseline)` when the lane moved by more than
/// `tolerance_g` although no session was open (load-cell creep, or something moved while the
/// door was locked), else `None`.
pub fn drift(baseline_g: Grams, stable_g: Grams, tolerance_g: Grams) -> Option<Grams> {
    let delta = stable_g - baseline_g;
    if delta.abs() > tolerance_g { Some(delta) } else { None }
}

/// Mean of a non-empty run of readings whose spread is within `tolerance_g`.
fn stable_mean(readings: impl Iterator<Item = f64> + Clone, tolerance_g: f64) -> Option<f64> {
    let mut min = f64::INFINITY;
    let mut max = f64::NEG_INFINITY;
    let mut n = 0usize;
    for g in readings.clone() {
        // A NaN reading is a broken sample, never a settled lane.
        if !g.is_finite() {
            return None;
        }
        min = min.min(g);
        max = max.max(g);
        n += 1;
    }
    // Asked as "within" so that a NaN tolerance also means "not stable".
    let within = max - min <= tolerance_g;
    if n == 0 || !within {
        return None;
    }
    // Averaging offsets from the minimum keeps equal readings exact; the clamp keeps rounding
    // from ever putting the mean outside the readings.
    let offset: f64 = readings.map(|g| g - min).sum::<f64>() / n as f64;
    Some((min + offset).clamp(min, max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn window(values: &[f64]) -> LaneWindow {
        let mut w = LaneWindow::new(values.len().max(1));
        for &v in values {
            w.push(Grams(v));
        }
        w
    }

    #[test]
    fn settled_takes_the_longest_quiet_tail() {
        // 500 while moving, then five readings around 300.
        let w = window(&[500.0, 420.0, 301.0, 299.0, 300.0, 302.0, 298.0]);
        assert_eq!(w.stable(3, Grams(5.0)), Some(Grams(300.0)));
        assert_eq!(w.settled(3, Grams(5.0)), Some(Grams(300.0)));
        let w = window(&[300.0, 300.0, 300.0, 310.0, 310.0, 310.0]);
        assert_eq!(w.settled(3, Grams(5.0)), Some(Grams(310.0)), "the old level is not mixed in");
        assert_eq!(window(&[300.0, 400.0]).settled(3, Grams(5.0)), None, "too few readings");
    }

    #[test]
    fn median_ignores_an_outlier() {
        assert_eq!(window(&[300.0, 302.0, 298.0, 311.0]).median(), Some(Grams(301.0)));
        assert_eq!(window(&[300.0, 290.0, 310.0]).median(), Some(Grams(300.0)));
        assert_eq!(LaneWindow::new(4).median(), None);
    }

    proptest! {
        #[test]
        fn settled_is_stable_when_stable(values in proptest::collection::vec(0.0f64..10.0, 3..20)) {
            let w = window(&values);
            prop_assert_eq!(w.settled(3, Grams(10.0)).is_some(), w.stable(3, Grams(10.0)).is_some());
            if let Some(m) = w.settled(3, Grams(10.0)) {
                prop_assert!((0.0..10.0).contains(&m.0));
            }
        }
    }

    #[test]
    fn grams_subtracts_zero_and_divides_by_gain() {
        let cal = LaneCalibration { zero_counts: 1000, counts_per_g: 20.0 };
        assert_eq!(cal.grams(1000), Grams(0.0));
        assert_eq!(cal.grams(3000), Grams(100.0));
        assert_eq!(cal.grams(800), Grams(-10.0));
    }

    #[test]
    fn grams_does_not_overflow_at_the_extremes() {
        let cal = LaneCalibration { zero_counts: i64::MIN, counts_per_g: 1.0 };
        let g = cal.grams(i64::MAX);
        assert!((g.0 - 2f64.powi(64)).abs() < 1e6, "{g}");
    }

    #[test]
    fn window_drops_the_oldest_reading_when_full() {
        let mut w = LaneWindow::new(3);
        assert!(w.is_empty());
        assert_eq!(w.latest(), None);
        for v in [1.0, 2.0, 3.0, 4.0] {
            w.push(Grams(v));
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.latest(), Some(Grams(4.0)));
        assert_eq!(w.last(10).collect::<Vec<_>>(), vec![2.0, 3.0, 4.0]);
        assert_eq!(w.last(2).collect::<Vec<_>>(), vec![3.0, 4.0]);
        w.clear();
        assert!(w.is_empty());
        assert_eq!(w.last(2).count(), 0);
    }

    #[test]
    fn zero_capacity_still_keeps_the_latest_reading() {
        let mut w = LaneWindow::new(0);
        w.push(Grams(1.0));
        w.push(Grams(2.0));
        assert_eq!(w.capacity(), 1);
        assert_eq!(w.len(), 1);
        assert_eq!(w.latest(), Some(Grams(2.0)));
    }

    #[test]
    fn stable_needs_n_readings_within_tolerance() {
        let w = window(&[500.0, 100.0, 100.4, 99.8]);
        assert_eq!(w.stable(0, Grams(1.0)), None);
        assert_eq!(w.stable(5, Grams(1.0)), None, "fewer readings than n");
        let mean = w.stable(3, Grams(1.0)).expect("spread 0.6 is within 1.0");
        assert!((mean.0 - 100.066_666_666).abs() < 1e-6, "{mean}");
        assert_eq!(w.stable(3, Grams(0.5)), None, "spread 0.6 is above 0.5");
        assert_eq!(w.stable(4, Grams(1.0)), None, "the 500 g reading is still in the last 4");
    }

    #[test]
    fn spread_equal_to_tolerance_is_stable() {
        let w = window(&[10.0, 11.0]);
        assert_eq!(w.stable(2, Grams(1.0)), Some(Grams(10.5)));
    }

    #[test]
    fn nan_reading_or_tolerance_is_not_stable() {
        assert_eq!(window(&[1.0, f64::NAN, 1.0]).stable(3, Grams(1.0)), None);
        assert_eq!(window(&[1.0, 1.0]).stable(2, Grams(f64::NAN)), None);
    }

    #[test]
    fn is_stable_looks_at_the_last_n_entries() {
        let r = [0.0, 50.0, 50.2, 50.1];
        assert!(is_stable(&r, 3, 0.5));
        assert!(!is_stable(&r, 4, 0.5));
        assert!(!is_stable(&r, 5, 100.0));
        assert!(!is_stable(&r, 0, 100.0));
        assert!(!is_stable(&[], 1, 100.0));
    }

    #[test]
    fn drift_reports_moves_beyond_tolerance_only() {
        assert_eq!(drift(Grams(500.0), Grams(500.4), Grams(0.5)), None);
        assert_eq!(drift(Grams(500.0), Grams(499.5), Grams(0.5)), None, "exactly at tolerance");
        assert_eq!(drift(Grams(500.0), Grams(503.0), Grams(0.5)), Some(Grams(3.0)));
        assert_eq!(drift(Grams(500.0), Grams(250.0), Grams(0.5)), Some(Grams(-250.0)));
    }

    proptest! {
        #[test]
        fn equal_values_are_stable_at_that_value(
            junk in proptest::collection::vec(-1e5f64..1e5, 0..10),
            v in -1e5f64..1e5,
            n in 1usize..20,
            tol in 0f64..10.0,
        ) {
            let mut w = LaneWindow::new(n + 5);
            for g in junk {
                w.push(Grams(g));
            }
            for _ in 0..n {
                w.push(Grams(v));
            }
            prop_assert_eq!(w.stable(n, Grams(tol)), Some(Grams(v)));
            let all: Vec<f64> = w.last(n + 5).collect();
            prop_assert!(is_stable(&all, n, tol));
        }

        #[test]
        fn an_outlier_makes_the_window_unstable(
            base in -1e4f64..1e4,
            tol in 0.001f64..50.0,
            fracs in proptest::collection::vec(0f64..=1.0, 1..15),
            extra in 0.001f64..1000.0,
            below in any::<bool>(),
        ) {
            let others: Vec<f64> = fracs.iter().map(|f| base + f * tol).collect();
            let lo = others.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = others.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            // Further than tolerance from at least one of the others.
            let outlier = if below { hi - tol - extra } else { lo + tol + extra };
            let mut w = LaneWindow::new(others.len() + 1);
            for &g in &others {
                w.push(Grams(g));
            }
            w.push(Grams(outlier));
            let n = others.len() + 1;
            prop_assert_eq!(w.stable(n, Grams(tol)), None);
            let all: Vec<f64> = w.last(n).collect();
            prop_assert!(!is_stable(&all, n, tol));
        }

        #[test]
        fn stable_mean_lies_within_the_last_n(
            values in proptest::collection::vec(-1e6f64..1e6, 1..30),
            n in 1usize..30,
            tol in 0f64..2e6,
        ) {
            prop_assume!(n <= values.len());
            let w = window(&values);
            let last = &values[values.len() - n..];
            let lo = last.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = last.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            match w.stable(n, Grams(tol)) {
                Some(mean) => prop_assert!(lo <= mean.0 && mean.0 <= hi, "{} outside [{}, {}]", mean, lo, hi),
                None => prop_assert!(hi - lo > tol, "spread {} within {} but not stable", hi - lo, tol),
            }
        }

        #[test]
        fn grams_inverts_the_gain(
            zero in -10_000_000i64..10_000_000,
            cpg in 1f64..5000.0,
            k in -50_000f64..50_000.0,
        ) {
            let cal = LaneCalibration { zero_counts: zero, counts_per_g: cpg };
            let counts = zero + (k * cpg).round() as i64;
            // Counts are whole numbers, so the answer is off by at most half a count.
            let err = (cal.grams(counts).0 - k).abs();
            prop_assert!(err <= 0.5 / cpg + 1e-9, "err {err}");
        }
    }
}
