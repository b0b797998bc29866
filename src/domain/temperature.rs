//! The temperature rule: each cabinet type has a range and a duration; a cabinet out of range
//! for longer than the duration raises one alert, cleared once when it is back in range.

/// Allowed range and patience for one cabinet type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TempRule {
    pub min_c: f64,
    pub max_c: f64,
    /// How long an excursion may last before it is alerted; 0 alerts at once.
    pub alert_after_ms: i64,
}

impl TempRule {
    /// True when `temp_c` is within [min_c, max_c]; NaN (a broken probe) is never in range.
    pub fn in_range(&self, temp_c: f64) -> bool {
        temp_c >= self.min_c && temp_c <= self.max_c
    }
}

/// What an observation changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TempEvent {
    /// The excursion that began at `since_ms` has lasted long enough: open an alert.
    Raise { temp_c: f64, since_ms: i64 },
    /// Back in range after an alert: close it.
    Clear { temp_c: f64 },
}

/// Per-cabinet state of the rule.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TempWatch {
    out_since_ms: Option<i64>,
    alerted: bool,
}

impl TempWatch {
    /// A fresh watch; `alerted` resumes with an alert already open (e.g. after a restart), so it
    /// is cleared rather than raised again.
    pub fn new(alerted: bool) -> Self {
        TempWatch { out_since_ms: None, alerted }
    }

    /// True while an alert is open.
    pub fn alerted(&self) -> bool {
        self.alerted
    }

    /// When the current excursion began, if the cabinet is out of range.
    pub fn out_since_ms(&self) -> Option<i64> {
        self.out_since_ms
    }

    /// Feeds one reading; returns the event it triggers, if any. Too cold then too hot without
    /// a reading in range between is one continuous excursion.
    pub fn observe(&mut self, rule: &TempRule, temp_c: f64, now_ms: i64) -> Option<TempEvent> {
        if rule.in_range(temp_c) {
            self.out_since_ms = None;
            if self.alerted {
                self.alerted = false;
                return Some(TempEvent::Clear { temp_c });
            }
            return None;
        }
        let since_ms = *self.out_since_ms.get_or_insert(now_ms);
        if !self.alerted && now_ms.saturating_sub(since_ms) >= rule.alert_after_ms {
            self.alerted = true;
            return Some(TempEvent::Raise { temp_c, since_ms });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RULE: TempRule = TempRule { min_c: 2.0, max_c: 8.0, alert_after_ms: 600_000 };

    #[test]
    fn a_short_excursion_is_not_alerted() {
        let mut w = TempWatch::default();
        assert_eq!(w.observe(&RULE, 9.0, 0), None);
        assert_eq!(w.out_since_ms(), Some(0));
        assert_eq!(w.observe(&RULE, 9.5, 599_999), None);
        assert_eq!(w.observe(&RULE, 7.0, 600_000), None);
        assert_eq!(w.out_since_ms(), None);
        assert!(!w.alerted());
    }

    #[test]
    fn a_long_excursion_raises_once_and_clears_once() {
        let mut w = TempWatch::default();
        assert_eq!(w.observe(&RULE, 9.0, 1000), None);
        assert_eq!(w.observe(&RULE, 10.0, 601_000), Some(TempEvent::Raise { temp_c: 10.0, since_ms: 1000 }));
        assert!(w.alerted());
        assert_eq!(w.observe(&RULE, 11.0, 700_000), None);
        assert_eq!(w.observe(&RULE, 8.0, 800_000), Some(TempEvent::Clear { temp_c: 8.0 }));
        assert!(!w.alerted());
        assert_eq!(w.observe(&RULE, 5.0, 900_000), None);
    }

    #[test]
    fn range_bounds_are_in_range_and_nan_is_not() {
        let mut w = TempWatch::default();
        assert_eq!(w.observe(&RULE, 2.0, 0), None);
        assert_eq!(w.observe(&RULE, 8.0, 1), None);
        assert_eq!(w.out_since_ms(), None);
        assert_eq!(w.observe(&RULE, f64::NAN, 2), None);
        assert_eq!(w.out_since_ms(), Some(2));
    }

    #[test]
    fn zero_duration_raises_at_once() {
        let rule = TempRule { alert_after_ms: 0, ..RULE };
        let mut w = TempWatch::default();
        assert_eq!(w.observe(&rule, 1.0, 50), Some(TempEvent::Raise { temp_c: 1.0, since_ms: 50 }));
        assert_eq!(w.observe(&rule, 0.0, 60), None);
    }

    #[test]
    fn cold_then_hot_is_one_excursion() {
        let mut w = TempWatch::default();
        assert_eq!(w.observe(&RULE, 1.0, 0), None);
        assert_eq!(w.observe(&RULE, 12.0, 300_000), None);
        assert_eq!(w.observe(&RULE, 12.0, 600_000), Some(TempEvent::Raise { temp_c: 12.0, since_ms: 0 }));
    }

    #[test]
    fn resuming_with_an_open_alert_clears_without_raising_again() {
        let mut w = TempWatch::new(true);
        assert!(w.alerted());
        assert_eq!(w.observe(&RULE, 20.0, 0), None);
        assert_eq!(w.observe(&RULE, 20.0, 10_000_000), None);
        assert_eq!(w.observe(&RULE, 5.0, 10_000_001), Some(TempEvent::Clear { temp_c: 5.0 }));
    }

    fn temp() -> impl Strategy<Value = f64> {
        prop_oneof![8 => -5f64..15.0, 1 => Just(f64::NAN), 1 => Just(2.0), 1 => Just(8.0)]
    }

    proptest! {
        #[test]
        fn events_follow_the_rule(
            after in 0i64..5000,
            steps in proptest::collection::vec((temp(), 1i64..2000), 0..200),
        ) {
            let rule = TempRule { alert_after_ms: after, ..RULE };
            let mut w = TempWatch::default();
            let mut now = 0i64;
            let mut open = false;
            // Start of the current excursion as the test sees it.
            let mut start: Option<i64> = None;
            for (t, dt) in steps {
                now += dt;
                let in_range = (2.0..=8.0).contains(&t);
                if in_range {
                    start = None;
                } else if start.is_none() {
                    start = Some(now);
                }
                match w.observe(&rule, t, now) {
                    Some(TempEvent::Raise { since_ms, .. }) => {
                        prop_assert!(!open, "two raises in a row");
                        prop_assert!(!in_range);
                        prop_assert_eq!(Some(since_ms), start);
                        prop_assert!(now - since_ms >= after, "raised after {} ms < {}", now - since_ms, after);
                        open = true;
                    }
                    Some(TempEvent::Clear { temp_c }) => {
                        prop_assert!(open, "clear without a raise");
                        prop_assert!(in_range, "cleared at {}", temp_c);
                        open = false;
                    }
                    None => {
                        // Not late either: an excursion that has lasted long enough is alerted.
                        if let Some(s) = start {
                            prop_assert!(open || now - s < after, "missed raise");
                        } else {
                            prop_assert!(!open, "missed clear");
                        }
                    }
                }
                prop_assert_eq!(w.alerted(), open);
            }
        }
    }
}
