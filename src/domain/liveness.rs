//! Liveness rules: who is silent, whether the silence is theirs or ours, and
//! what changes. The watchdog actor gathers facts and applies the plan; the decisions are here.
//!
//! The fleet ratio is taken in cabinets: of the cabinets we expect to hear from, the share heard
//! at least once in the window. Counting heartbeats instead would let a cabinet that beats a little
//! fast hide one that is silent, and one that beats a little slow look like a fleet problem.

use super::names::named_enum;

named_enum! {
    /// Whether a cabinet is reachable. Independent of its lifecycle status.
    pub enum Liveness {
        Online = "online",
        /// Silent, but the fleet as a whole is quiet too: probably our fault; decided next round.
        Suspect = "suspect",
        Offline = "offline",
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub healthy_ratio: f64,
    pub min_fleet: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FleetHealth {
    /// Most cabinets are heard from: a silent cabinet is the cabinet's problem.
    Healthy,
    /// Too few cabinets are heard from: the fault is probably in our ingest path.
    Unhealthy,
}

/// `heard` of `tracked` cabinets were heard from within the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FleetSample {
    pub heard: u64,
    pub tracked: u64,
}

impl FleetSample {
    /// Share of the tracked fleet heard from; 1.0 for an empty fleet.
    pub fn ratio(self) -> f64 {
        if self.tracked == 0 { 1.0 } else { (self.heard.min(self.tracked) as f64) / (self.tracked as f64) }
    }

    /// A fleet smaller than `min_fleet` is judged healthy: one silent cabinet out of three says
    /// nothing about the ingest path.
    pub fn health(self, t: Thresholds) -> FleetHealth {
        if self.tracked < t.min_fleet || self.ratio() >= t.healthy_ratio {
            FleetHealth::Healthy
        } else {
            FleetHealth::Unhealthy
        }
    }
}

/// What a silent cabinet becomes this round, if anything.
pub fn on_silence(current: Liveness, fleet: FleetHealth) -> Option<Liveness> {
    match (fleet, current) {
        (_, Liveness::Offline) => None,
        (FleetHealth::Healthy, _) => Some(Liveness::Offline),
        (FleetHealth::Unhealthy, Liveness::Online) => Some(Liveness::Suspect),
        (FleetHealth::Unhealthy, Liveness::Suspect) => None,
    }
}

/// What a cabinet becomes when it is heard from (heartbeat or login).
pub fn on_heard(current: Liveness) -> Option<Liveness> {
    (current != Liveness::Online).then_some(Liveness::Online)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub sn: String,
    pub from: Liveness,
    pub to: Liveness,
}

/// What the ingest-health alert should do this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestAlert {
    Raise,
    Clear,
    Keep,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoundPlan {
    pub health: FleetHealth,
    pub ratio: f64,
    pub transitions: Vec<Transition>,
    pub ingest_alert: IngestAlert,
}

/// Plan one watchdog round from the silent cabinets (with their current liveness), the fleet
/// sample, and the health the previous round concluded.
pub fn plan_round(
    silent: &[(String, Liveness)],
    sample: FleetSample,
    previous: FleetHealth,
    t: Thresholds,
) -> RoundPlan {
    let health = sample.health(t);
    let transitions = silent
        .iter()
        .filter_map(|(sn, current)| {
            on_silence(*current, health).map(|to| Transition { sn: sn.clone(), from: *current, to })
        })
        .collect();
    let ingest_alert = match (previous, health) {
        (FleetHealth::Healthy, FleetHealth::Unhealthy) => IngestAlert::Raise,
        (FleetHealth::Unhealthy, FleetHealth::Healthy) => IngestAlert::Clear,
        _ => IngestAlert::Keep,
    };
    RoundPlan { health, ratio: sample.ratio(), transitions, ingest_alert }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: Thresholds = Thresholds { healthy_ratio: 0.8, min_fleet: 10 };

    fn silent(n: usize, l: Liveness) -> Vec<(String, Liveness)> {
        (0..n).map(|i| (format!("C{i}"), l)).collect()
    }

    #[test]
    fn one_silent_cabinet_in_a_healthy_fleet_goes_offline() {
        let plan =
            plan_round(&silent(1, Liveness::Online), FleetSample { heard: 99, tracked: 100 }, FleetHealth::Healthy, T);
        assert_eq!(plan.health, FleetHealth::Healthy);
        assert_eq!(
            plan.transitions,
            vec![Transition { sn: "C0".into(), from: Liveness::Online, to: Liveness::Offline }]
        );
        assert_eq!(plan.ingest_alert, IngestAlert::Keep);
    }

    #[test]
    fn mass_silence_makes_suspects_and_raises_the_ingest_alert() {
        let plan =
            plan_round(&silent(90, Liveness::Online), FleetSample { heard: 10, tracked: 100 }, FleetHealth::Healthy, T);
        assert_eq!(plan.health, FleetHealth::Unhealthy);
        assert!(plan.transitions.iter().all(|t| t.to == Liveness::Suspect));
        assert_eq!(plan.transitions.len(), 90);
        assert_eq!(plan.ingest_alert, IngestAlert::Raise);
        // Next round still unhealthy: suspects stay, nothing new, alert kept.
        let again = plan_round(
            &silent(90, Liveness::Suspect),
            FleetSample { heard: 10, tracked: 100 },
            FleetHealth::Unhealthy,
            T,
        );
        assert!(again.transitions.is_empty());
        assert_eq!(again.ingest_alert, IngestAlert::Keep);
    }

    #[test]
    fn suspects_go_offline_once_the_fleet_is_healthy_again() {
        let plan = plan_round(
            &silent(3, Liveness::Suspect),
            FleetSample { heard: 97, tracked: 100 },
            FleetHealth::Unhealthy,
            T,
        );
        assert!(plan.transitions.iter().all(|t| t.from == Liveness::Suspect && t.to == Liveness::Offline));
        assert_eq!(plan.ingest_alert, IngestAlert::Clear);
    }

    #[test]
    fn a_small_fleet_is_never_called_unhealthy() {
        let s = FleetSample { heard: 0, tracked: 3 };
        assert_eq!(s.health(T), FleetHealth::Healthy);
    }

    #[test]
    fn ratio_edges() {
        assert_eq!(FleetSample { heard: 0, tracked: 0 }.ratio(), 1.0);
        assert_eq!(FleetSample { heard: 12, tracked: 10 }.ratio(), 1.0);
        assert_eq!(FleetSample { heard: 8, tracked: 10 }.health(T), FleetHealth::Healthy);
        assert_eq!(FleetSample { heard: 7, tracked: 10 }.health(T), FleetHealth::Unhealthy);
    }

    fn liveness() -> impl Strategy<Value = Liveness> {
        prop_oneof![Just(Liveness::Online), Just(Liveness::Suspect), Just(Liveness::Offline)]
    }

    proptest! {
        /// Applying a round's plan and planning again with the same facts changes nothing more:
        /// no flapping, at most one event per cabinet per change.
        #[test]
        fn planning_is_idempotent(states in proptest::collection::vec(liveness(), 0..40), heard in 0u64..60, tracked in 0u64..60) {
            let silent: Vec<(String, Liveness)> = states.iter().enumerate().map(|(i, l)| (format!("C{i}"), *l)).collect();
            let sample = FleetSample { heard, tracked };
            let first = plan_round(&silent, sample, FleetHealth::Healthy, T);
            let applied: Vec<(String, Liveness)> = silent.iter().map(|(sn, l)| {
                let to = first.transitions.iter().find(|t| &t.sn == sn).map(|t| t.to).unwrap_or(*l);
                (sn.clone(), to)
            }).collect();
            let second = plan_round(&applied, sample, first.health, T);
            prop_assert!(second.transitions.is_empty());
            prop_assert_eq!(second.ingest_alert, IngestAlert::Keep);
        }

        /// An unhealthy fleet never sends anyone offline; a healthy one never makes suspects.
        #[test]
        fn unhealthy_never_offlines(states in proptest::collection::vec(liveness(), 0..40), heard in 0u64..60, tracked in 0u64..60) {
            let silent: Vec<(String, Liveness)> = states.iter().enumerate().map(|(i, l)| (format!("C{i}"), *l)).collect();
            let plan = plan_round(&silent, FleetSample { heard, tracked }, FleetHealth::Healthy, T);
            for t in &plan.transitions {
                prop_assert_ne!(t.from, t.to);
                match plan.health {
                    FleetHealth::Unhealthy => prop_assert_eq!(t.to, Liveness::Suspect),
                    FleetHealth::Healthy => prop_assert_eq!(t.to, Liveness::Offline),
                }
            }
        }
    }

    #[test]
    fn heard_brings_back_online_once() {
        assert_eq!(on_heard(Liveness::Offline), Some(Liveness::Online));
        assert_eq!(on_heard(Liveness::Suspect), Some(Liveness::Online));
        assert_eq!(on_heard(Liveness::Online), None);
    }
}
