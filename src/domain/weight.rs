//! Weight of one lane: turning raw load-cell counts into grams, and the window of its recent
//! readings that `rest` judges.

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
    fn median_ignores_an_outlier() {
        assert_eq!(window(&[300.0, 302.0, 298.0, 311.0]).median(), Some(Grams(301.0)));
        assert_eq!(window(&[300.0, 290.0, 310.0]).median(), Some(Grams(300.0)));
        assert_eq!(LaneWindow::new(4).median(), None);
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
        assert_eq!(w.recent(), vec![Grams(2.0), Grams(3.0), Grams(4.0)]);
        w.clear();
        assert!(w.is_empty());
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

    proptest! {
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
