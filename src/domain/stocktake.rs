//! Stock by weight, one lane, one night: how many units the lane's closed-door rest implies
//! against book stock and, when they differ, which weighed stretch since the last night the lane
//! agreed explains it. Pure: `flows::stocktake` gathers the facts and writes what is decided.
//!
//! The trace walks the lane's weights in time order: the last agreeing night, then each session's
//! weight before and after it, then tonight's rest. Within a session the weight change is what
//! was booked for it (a sale, a restock); between two sessions the weight should not move. Each
//! whole-unit move found is a finding: after a purchase with no door opened since, the units left
//! with that shopper (the settlement weighed before they were gone); after a restock, its count was
//! off; with a door opened while no session held the cabinet, a loss at that door; otherwise a
//! closed-door move.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use super::count::{self, CountRule, Measured};
use super::names::named_enum;
use super::units::{Fen, Grams};

named_enum! {
    /// Where a lane stood at night.
    pub enum LaneStatus {
        /// The shelf holds what the book says.
        Agrees = "agrees",
        /// It does not: the difference is traced and the book corrected.
        Differs = "differs",
        /// The lane could not be read (maintenance, not a loss); the book is left alone.
        Unreadable = "unreadable",
    }
}

named_enum! {
    /// Why a lane could not be read.
    pub enum Unreadable {
        /// The lane has never been calibrated.
        NoCalibration = "no_calibration",
        /// No closed-door readings since its door last closed.
        NoReadings = "no_readings",
        /// Its readings are moving or too noisy to take a rest from.
        NotStable = "not_stable",
        /// Its cell reads at the converter's limit.
        DeadCell = "dead_cell",
        /// The rest is no whole number of units (a drifting cell, something foreign on it).
        NotWholeUnits = "not_whole_units",
    }
}

named_enum! {
    /// What explains (part of) a difference.
    pub enum FindingKind {
        /// Units left the lane after a purchase settled, with no door opened since: the shopper
        /// took them and is charged.
        Shopper = "shopper",
        /// A restock put in a different number of units than its count booked: the weighed
        /// change differs, or units moved after the count with no door opened since.
        Restock = "restock",
        /// A maintenance door moved whole units, which maintenance never books.
        Maintenance = "maintenance",
        /// Units moved while a door was open and no session held the cabinet (a forced door).
        DoorUnheld = "door_unheld",
        /// Units moved behind closed doors, with no session and no door opened.
        ClosedDoor = "closed_door",
        /// What no weighed stretch explains (the weights before it are not known).
        Unexplained = "unexplained",
    }
}

/// The lane's product, as counted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Product {
    pub id: i64,
    pub unit_g: Grams,
    pub tolerance_g: Grams,
    pub price_fen: Fen,
}

/// A session that weighed the lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "session", rename_all = "snake_case")]
pub enum SessionRef {
    Purchase { session_id: i64, order_id: i64, user_id: i64 },
    Restock { session_id: i64 },
    Maintenance { session_id: i64 },
}

/// One session on the lane since the last agreeing night, with its weights and what the book
/// took for it (sold negative, restocked positive).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Weighed {
    pub session: SessionRef,
    pub started_at: NaiveDateTime,
    pub ended_at: NaiveDateTime,
    pub before_g: Option<Grams>,
    pub after_g: Option<Grams>,
    pub booked: i64,
}

/// A restock or maintenance session's lane weights, kept as its evidence; a purchase keeps the
/// same on its order (`before_g`, `after_g`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionWeights {
    pub before_g: std::collections::BTreeMap<String, Grams>,
    pub after_g: std::collections::BTreeMap<String, Option<Grams>>,
}

impl SessionWeights {
    /// From each lane's (lane, before, after).
    pub fn of<'a>(lanes: impl Iterator<Item = (&'a str, Option<Grams>, Option<Grams>)>) -> SessionWeights {
        let mut w = SessionWeights::default();
        for (lane, before, after) in lanes {
            if let Some(b) = before {
                w.before_g.insert(lane.to_string(), b);
            }
            w.after_g.insert(lane.to_string(), after);
        }
        w
    }
}

/// The lane's weight at a moment known to agree with the book.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Anchor {
    pub g: Grams,
    pub at: NaiveDateTime,
}

/// Everything the night decides one lane from.
#[derive(Debug, Clone, PartialEq)]
pub struct LaneNight {
    pub product: Product,
    pub book: i64,
    /// Tonight's closed-door rest, grams net of the drift followed since calibration, with its
    /// standard uncertainty; or why there is none.
    pub rest: Result<(Grams, Grams), Unreadable>,
    /// When tonight's rest was taken.
    pub taken_at: NaiveDateTime,
    /// The last night the lane agreed (or was corrected to agree).
    pub since: Option<Anchor>,
    /// Its sessions since then, oldest first.
    pub sessions: Vec<Weighed>,
    /// When a door was open with no session holding the cabinet, since then.
    pub unheld_doors: Vec<NaiveDateTime>,
}

/// One whole-unit move and what explains it. `units` is signed as the shelf moved against the
/// book: −1 is a unit gone that the book still counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub units: i64,
    /// The units at the product's price: what the shopper is charged, or the loss (negative for
    /// units found).
    pub value_fen: Fen,
    pub session: Option<SessionRef>,
    /// The stretch it happened in.
    pub from: Option<NaiveDateTime>,
    pub to: Option<NaiveDateTime>,
    pub from_g: Option<Grams>,
    pub to_g: Option<Grams>,
}

/// The night's decision for one lane.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub status: LaneStatus,
    pub unreadable: Option<Unreadable>,
    pub implied: Option<i64>,
    /// Implied less book.
    pub difference: i64,
    pub findings: Vec<Finding>,
}

/// Decide one lane: read it, and trace a difference.
pub fn decide(n: &LaneNight, rule: &CountRule) -> Decision {
    let implied = n.rest.and_then(|(g, u)| {
        count::count(Measured { g, u }, n.product.unit_g, n.product.tolerance_g, rule)
            .map_err(|_| Unreadable::NotWholeUnits)
            .and_then(|c| if c < 0 { Err(Unreadable::NotWholeUnits) } else { Ok(c) })
    });
    match implied {
        Err(why) => Decision {
            status: LaneStatus::Unreadable,
            unreadable: Some(why),
            implied: None,
            difference: 0,
            findings: Vec::new(),
        },
        Ok(implied) if implied == n.book => Decision {
            status: LaneStatus::Agrees,
            unreadable: None,
            implied: Some(implied),
            difference: 0,
            findings: Vec::new(),
        },
        Ok(implied) => {
            let difference = implied - n.book;
            let findings = trace(n, difference, rule);
            Decision { status: LaneStatus::Differs, unreadable: None, implied: Some(implied), difference, findings }
        }
    }
}

/// A point on the lane's weight walk: the weight there, when, and the session it ended.
#[derive(Clone, Copy)]
struct Point {
    g: Option<Grams>,
    at: Option<NaiveDateTime>,
    after: Option<SessionRef>,
}

/// The findings that add up to `difference`: each stretch's whole-unit move, then what none
/// explains.
fn trace(n: &LaneNight, difference: i64, rule: &CountRule) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut prev = Point { g: n.since.map(|a| a.g), at: n.since.map(|a| a.at), after: None };
    for s in &n.sessions {
        let next = Point { g: s.before_g, at: Some(s.started_at), after: None };
        out.extend(between(n, prev, next, rule));
        if let Some(f) = within(n, s, rule) {
            out.push(f);
        }
        prev = Point { g: s.after_g, at: Some(s.ended_at), after: Some(s.session) };
    }
    let night = Point { g: n.rest.ok().map(|r| r.0), at: Some(n.taken_at), after: None };
    out.extend(between(n, prev, night, rule));
    let explained: i64 = out.iter().map(|f| f.units).sum();
    if explained != difference {
        let units = difference - explained;
        out.push(Finding {
            kind: FindingKind::Unexplained,
            units,
            value_fen: value(n, units),
            session: None,
            from: n.since.map(|a| a.at),
            to: Some(n.taken_at),
            from_g: None,
            to_g: None,
        });
    }
    out
}

/// The units at the product's price, positive for units gone.
fn value(n: &LaneNight, units: i64) -> Fen {
    Fen(-units * n.product.price_fen.0)
}

fn units_between(n: &LaneNight, from: Grams, to: Grams, rule: &CountRule) -> Option<i64> {
    let change = Measured { g: to - from, u: Grams::ZERO };
    count::count(change, n.product.unit_g, n.product.tolerance_g, rule).ok()
}

/// A move between two sessions (or a night and a session), and who or what it is put down to.
fn between(n: &LaneNight, from: Point, to: Point, rule: &CountRule) -> Option<Finding> {
    let (Some(a), Some(b)) = (from.g, to.g) else { return None };
    let units = units_between(n, a, b, rule).filter(|u| *u != 0)?;
    let door =
        n.unheld_doors.iter().copied().find(|t| from.at.is_none_or(|f| *t >= f) && to.at.is_none_or(|e| *t <= e));
    let (kind, session) = match (door, from.after) {
        (Some(_), _) => (FindingKind::DoorUnheld, None),
        (None, Some(s @ SessionRef::Purchase { .. })) if units < 0 => (FindingKind::Shopper, Some(s)),
        // The restock's count weighed before the restocker was done (one taken back out, one
        // slid in as the door shut): its count was off by this much.
        (None, Some(s @ SessionRef::Restock { .. })) => (FindingKind::Restock, Some(s)),
        _ => (FindingKind::ClosedDoor, None),
    };
    Some(Finding {
        kind,
        units,
        value_fen: value(n, units),
        session,
        from: door.or(from.at),
        to: to.at,
        from_g: Some(a),
        to_g: Some(b),
    })
}

/// A restock or maintenance session whose weighed change is not what the book took for it.
fn within(n: &LaneNight, s: &Weighed, rule: &CountRule) -> Option<Finding> {
    let kind = match s.session {
        SessionRef::Restock { .. } => FindingKind::Restock,
        SessionRef::Maintenance { .. } => FindingKind::Maintenance,
        // A purchase is booked from these very weights.
        SessionRef::Purchase { .. } => return None,
    };
    let (a, b) = (s.before_g?, s.after_g?);
    let units = units_between(n, a, b, rule)? - s.booked;
    (units != 0).then(|| Finding {
        kind,
        units,
        value_fen: value(n, units),
        session: Some(s.session),
        from: Some(s.started_at),
        to: Some(s.ended_at),
        from_g: Some(a),
        to_g: Some(b),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: CountRule = CountRule { scale_error: 0.005, coverage: 3.0 };

    fn t(h: u32) -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 12, 4).expect("day").and_hms_opt(h, 0, 0).expect("time")
    }

    fn cola() -> Product {
        Product { id: 1, unit_g: Grams(330.0), tolerance_g: Grams(5.0), price_fen: Fen(350) }
    }

    fn night(units_on_shelf: f64, book: i64) -> LaneNight {
        LaneNight {
            product: cola(),
            book,
            rest: Ok((Grams(units_on_shelf * 330.0 + 1.0), Grams(0.3))),
            taken_at: t(23),
            since: Some(Anchor { g: Grams(10.0 * 330.0), at: t(0) }),
            sessions: Vec::new(),
            unheld_doors: Vec::new(),
        }
    }

    fn purchase(id: i64, at: u32, before: f64, after: f64) -> Weighed {
        Weighed {
            session: SessionRef::Purchase { session_id: id, order_id: 100 + id, user_id: 7 },
            started_at: t(at),
            ended_at: t(at) + chrono::Duration::minutes(5),
            before_g: Some(Grams(before * 330.0)),
            after_g: Some(Grams(after * 330.0)),
            booked: (after - before) as i64,
        }
    }

    #[test]
    fn a_lane_holding_what_the_book_says_agrees() {
        let d = decide(&night(10.0, 10), &RULE);
        assert_eq!((d.status, d.implied, d.difference), (LaneStatus::Agrees, Some(10), 0));
        assert!(d.findings.is_empty());
    }

    #[test]
    fn a_unit_gone_after_a_purchase_settled_is_the_shoppers() {
        let mut n = night(7.0, 9);
        n.sessions = vec![purchase(1, 9, 10.0, 9.0), purchase(2, 12, 8.0, 8.0)];
        let d = decide(&n, &RULE);
        assert_eq!((d.status, d.difference), (LaneStatus::Differs, -2));
        // Between the first purchase (after: 9) and the second (before: 8): the first shopper.
        // After the second (8) and tonight (7): the second shopper, who took nothing booked.
        let kinds: Vec<(FindingKind, i64, Option<i64>)> = d
            .findings
            .iter()
            .map(|f| {
                let order = match f.session {
                    Some(SessionRef::Purchase { order_id, .. }) => Some(order_id),
                    _ => None,
                };
                (f.kind, f.units, order)
            })
            .collect();
        assert_eq!(kinds, [(FindingKind::Shopper, -1, Some(101)), (FindingKind::Shopper, -1, Some(102))]);
        assert_eq!(d.findings[0].value_fen, Fen(350));
        assert_eq!(d.findings.iter().map(|f| f.units).sum::<i64>(), d.difference, "findings add up");
    }

    #[test]
    fn a_door_opened_with_no_session_is_a_loss_not_the_last_shoppers() {
        let mut n = night(8.0, 9);
        n.sessions = vec![purchase(1, 9, 10.0, 9.0)];
        n.unheld_doors = vec![t(15)];
        let d = decide(&n, &RULE);
        assert_eq!(d.findings.len(), 1);
        assert_eq!(
            (d.findings[0].kind, d.findings[0].units, d.findings[0].session),
            (FindingKind::DoorUnheld, -1, None)
        );
        assert_eq!(d.findings[0].from, Some(t(15)));
    }

    #[test]
    fn a_restock_that_put_in_one_fewer_than_it_booked() {
        let mut n = night(14.0, 15);
        n.sessions = vec![Weighed {
            session: SessionRef::Restock { session_id: 3 },
            started_at: t(10),
            ended_at: t(11),
            before_g: Some(Grams(10.0 * 330.0)),
            after_g: Some(Grams(14.0 * 330.0)),
            booked: 5,
        }];
        let d = decide(&n, &RULE);
        assert_eq!(d.findings.len(), 1);
        assert_eq!((d.findings[0].kind, d.findings[0].units), (FindingKind::Restock, -1));
    }

    #[test]
    fn a_unit_taken_back_after_a_restock_counted_it_is_the_restocks() {
        let mut n = night(14.0, 15);
        n.sessions = vec![Weighed {
            session: SessionRef::Restock { session_id: 4 },
            started_at: t(10),
            ended_at: t(11),
            before_g: Some(Grams(10.0 * 330.0)),
            after_g: Some(Grams(15.0 * 330.0)),
            booked: 5,
        }];
        let d = decide(&n, &RULE);
        assert_eq!(d.findings.len(), 1);
        let f = &d.findings[0];
        assert_eq!(
            (f.kind, f.units, f.session),
            (FindingKind::Restock, -1, Some(SessionRef::Restock { session_id: 4 }))
        );
    }

    #[test]
    fn a_move_behind_closed_doors_and_what_nothing_explains() {
        let d = decide(&night(9.0, 10), &RULE);
        assert_eq!(d.findings.len(), 1);
        assert_eq!(d.findings[0].kind, FindingKind::ClosedDoor);
        let mut n = night(9.0, 10);
        n.since = None;
        let d = decide(&n, &RULE);
        assert_eq!(
            (d.findings[0].kind, d.findings[0].units, d.findings[0].value_fen),
            (FindingKind::Unexplained, -1, Fen(350))
        );
    }

    #[test]
    fn a_lane_that_cannot_be_read_is_not_a_loss() {
        let mut n = night(9.0, 10);
        n.rest = Err(Unreadable::NotStable);
        let d = decide(&n, &RULE);
        assert_eq!((d.status, d.unreadable, d.difference), (LaneStatus::Unreadable, Some(Unreadable::NotStable), 0));
        n.rest = Ok((Grams(9.5 * 330.0), Grams(0.3)));
        assert_eq!(decide(&n, &RULE).unreadable, Some(Unreadable::NotWholeUnits));
    }
}
