//! The course of a session at an open door — a shopper's purchase, a restock, a maintenance — as a
//! state machine with no I/O: the cabinet's actor feeds it what happened ([`Event`]) and carries
//! out what it says ([`Effect`]): weigh, send `open`, record, arm a timer, settle, let go.
//!
//! Purchase: `awaiting_auth → opening → open → settling → finishing → ended`, or `ended` early when
//! the order ends before its door opens. Restock and maintenance start at `opening` (`open` is sent
//! at once) and end cancelled when the door is never opened. Events arrive at least once and in any
//! order (a door reported closed before its open, a door-open check after the open): one delivered
//! twice moves nothing twice, and nothing sends `open` once the course has ended.

use std::collections::BTreeMap;

use super::session::Outcome;
use super::units::{Fen, Grams};

/// Where a purchase's door stands when the order's door-open check asks the cabinet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Opening {
    /// `open` was sent (again).
    Sent,
    /// `open` went out before and the door has not opened (asked without sending).
    Waiting,
    /// The door has already opened (its record may have been lost: it is written again). The
    /// order must not be cancelled.
    DoorOpened,
    /// No actor holds a session for the order (none on this node, or it let go).
    NotHeld,
}

/// What the open door is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    Purchase {
        order_id: i64,
        cap_fen: Fen,
    },
    /// A restocker: what they add is counted by weight into book stock.
    Restock {
        by: String,
    },
    /// A maintainer: nothing is sold or added; any weight change is recorded and flagged.
    Maintenance {
        by: String,
    },
}

impl Purpose {
    pub fn order_id(&self) -> Option<i64> {
        match self {
            Purpose::Purchase { order_id, .. } => Some(*order_id),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The order waits for the shopper to confirm on the platform's page.
    AwaitingAuth,
    /// `open` is on its way; waiting for the door to open.
    Opening,
    Open,
    /// Closed; waiting for every lane to be stable.
    Settling,
    /// The end (settlement, count, record) is being written.
    Finishing,
    /// Over: the cabinet is free again.
    Ended,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::AwaitingAuth => "awaiting_auth",
            Phase::Opening => "opening",
            Phase::Open => "open",
            Phase::Settling => "settling",
            Phase::Finishing => "finishing",
            Phase::Ended => "ended",
        }
    }
}

/// What happened at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The order's pre-authorisation is confirmed, or its door-open check asks once more
    /// (`send`), or the last check only asks where the door stands (`!send`).
    OpenAsked { send: bool },
    /// The order ended elsewhere (auth timeout, door never opened, platform refusal).
    OrderEnded,
    /// The `open` command was carried out (`acked`) or failed.
    OpenDone { acked: bool },
    /// The door was unlocked for its time and nobody opened it.
    UnlockLapsed,
    /// The cabinet reported the door open.
    DoorOpened,
    /// The cabinet reported the door closed.
    DoorClosed,
    /// After a login the cabinet did not report the door open: it closed while Heft could not
    /// hear it.
    ClosedUnseen,
    /// A reading of the lanes: taken with the doors closed (`closed`: after the close, or at the
    /// closed-door cadence), and whether every lane of the door is now stable.
    Reading { closed: bool, all_stable: bool },
    /// The wait for stable lanes ran out.
    SettleDue,
    /// The estimated basket went over the pre-authorisation's cap by `excess_fen`.
    OverCap { excess_fen: Fen },
    /// The door stayed open past `orders.door_open_alert_s`.
    OpenTooLong,
    /// The session's end was stored (`stored`), or the database did not take it.
    Finished { stored: bool },
}

/// How long to wait for stable lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// After a close the cabinet reported: its fast after-close readings come (`settle_max_ms`).
    AfterClose,
    /// After a close Heft did not see (or a course taken up after a crash): readings come at the
    /// closed-door cadence, so long enough for a stable run of those.
    Unseen,
}

/// Why a course ended without a settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The order ended before its door opened.
    OrderEnded,
    /// The cabinet did not carry out `open`.
    OpenFailed,
    /// The door was unlocked and nobody opened it.
    DoorNotOpened,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::OrderEnded => "order_ended",
            EndReason::OpenFailed => "open_failed",
            EndReason::DoorNotOpened => "door_not_opened",
        }
    }
}

/// What the actor is to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Answer the door-open check.
    Answer(Opening),
    /// Weigh the door's lanes as they rest (the weights before) and keep them with the order.
    WeighBefore,
    /// Send `open` (again).
    SendOpen,
    /// Look at the order later: its timers may end it on another node, or their word be lost.
    WatchOrder,
    /// The door opened: take the reading sent with it, and record the open on the order.
    RecordOpened,
    /// Record the open again (a door-open check found it open; its record may have been lost).
    RecordOpenedAgain,
    /// Record the close on the order; `unseen_open`: its open was never heard, record it first.
    RecordClosed { unseen_open: bool },
    /// Readings from before the close must not count towards its stability.
    ForgetReadings,
    /// Settle when stable, at most this long from now.
    AwaitStable(Wait),
    /// Raise the door-open-too-long alert if the door is still open then.
    ArmOpenAlert,
    /// End the session if the unlocked door is not opened in time.
    AwaitOpenWhileUnlocked,
    /// Estimate the basket against the cap.
    WatchBasket,
    /// Notice on the order: the basket looks dearer than the cap by `excess_fen`.
    NoticeOverCap { excess_fen: Fen },
    /// Alert (and notice on the order): the door has been open too long.
    AlertOpenTooLong,
    /// Alert: the door opened before the shopper authorised.
    AlertOpenedUnauthorised,
    /// Settle (purchase), count (restock) or record (maintenance) from the lanes' weights.
    Finish,
    /// The end was not stored: settle again shortly, from the same readings.
    FinishAgain,
    /// The end is stored: free the cabinet.
    LetGo,
    /// End the session now, without a settlement.
    End(Outcome, EndReason),
}

/// A session at one door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Course {
    pub door: u32,
    pub purpose: Purpose,
    pub phase: Phase,
    /// The over-cap notice was given (once per purchase).
    pub cap_noticed: bool,
    /// The cabinet carried out `open` for a restock or maintenance: its unlock time runs.
    pub unlocked: bool,
}

impl Course {
    /// A purchase just reserved: the shopper is on the platform's confirm page.
    pub fn purchase(door: u32, order_id: i64, cap_fen: Fen) -> (Course, Vec<Effect>) {
        let course = Course {
            door,
            purpose: Purpose::Purchase { order_id, cap_fen },
            phase: Phase::AwaitingAuth,
            cap_noticed: false,
            unlocked: false,
        };
        (course, vec![Effect::WatchOrder])
    }

    /// A restock or maintenance: the door is unlocked at once.
    pub fn door_session(door: u32, purpose: Purpose) -> (Course, Vec<Effect>) {
        (Course { door, purpose, phase: Phase::Opening, cap_noticed: false, unlocked: false }, vec![Effect::SendOpen])
    }

    /// A course an earlier actor left, taken up where the records say it stands (`phase`): a
    /// closed door is settled from the readings that come now, a door still to open is watched
    /// until its order ends, an open one is alerted on if it stays open.
    pub fn resume(door: u32, purpose: Purpose, phase: Phase) -> (Course, Vec<Effect>) {
        let effects = match phase {
            Phase::Settling | Phase::Finishing => vec![Effect::AwaitStable(Wait::Unseen)],
            Phase::AwaitingAuth | Phase::Opening => vec![Effect::WatchOrder],
            Phase::Open => vec![Effect::ArmOpenAlert],
            Phase::Ended => vec![],
        };
        let phase = if phase == Phase::Finishing { Phase::Settling } else { phase };
        (Course { door, purpose, phase, cap_noticed: false, unlocked: false }, effects)
    }

    fn is_purchase(&self) -> bool {
        matches!(self.purpose, Purpose::Purchase { .. })
    }

    /// Apply one event; what the actor is to do.
    pub fn step(&mut self, event: Event) -> Vec<Effect> {
        use Effect as E;
        use Phase as P;
        match (event, self.phase) {
            (_, P::Ended) => match event {
                Event::OpenAsked { .. } => vec![E::Answer(Opening::NotHeld)],
                _ => vec![],
            },
            (Event::OpenAsked { .. }, _) if !self.is_purchase() => vec![E::Answer(Opening::NotHeld)],
            (Event::OpenAsked { send: false }, P::AwaitingAuth | P::Opening) => vec![E::Answer(Opening::Waiting)],
            (Event::OpenAsked { send: true }, P::AwaitingAuth) => {
                self.phase = P::Opening;
                vec![E::WeighBefore, E::SendOpen, E::Answer(Opening::Sent)]
            }
            (Event::OpenAsked { send: true }, P::Opening) => vec![E::SendOpen, E::Answer(Opening::Sent)],
            (Event::OpenAsked { .. }, P::Open | P::Settling | P::Finishing) => {
                vec![E::RecordOpenedAgain, E::Answer(Opening::DoorOpened)]
            }
            (Event::OrderEnded, P::AwaitingAuth | P::Opening) if self.is_purchase() => self.end(EndReason::OrderEnded),
            // One unlock timer per session: a repeated ack does not start another.
            (Event::OpenDone { acked: true }, P::Opening) if !self.is_purchase() && !self.unlocked => {
                self.unlocked = true;
                vec![E::AwaitOpenWhileUnlocked]
            }
            (Event::OpenDone { acked: false }, P::Opening) if !self.is_purchase() => self.end(EndReason::OpenFailed),
            (Event::UnlockLapsed, P::Opening) if !self.is_purchase() => self.end(EndReason::DoorNotOpened),
            (Event::DoorOpened, P::Opening) => {
                self.phase = P::Open;
                vec![E::RecordOpened, E::ArmOpenAlert]
            }
            (Event::DoorOpened, P::AwaitingAuth) => vec![E::AlertOpenedUnauthorised],
            (Event::DoorClosed, P::Open) => self.closed(false, Wait::AfterClose),
            // Reported closed while Heft still waits for it to open: it opened and closed while
            // its frames could not reach Heft. The weights before were taken at the authorisation.
            (Event::DoorClosed, P::Opening) => self.closed(true, Wait::AfterClose),
            (Event::ClosedUnseen, P::Open) => {
                let mut effects = vec![E::ForgetReadings];
                effects.extend(self.closed(false, Wait::Unseen));
                effects
            }
            (Event::Reading { closed: true, all_stable: true }, P::Settling) | (Event::SettleDue, P::Settling) => {
                self.phase = P::Finishing;
                vec![E::Finish]
            }
            (Event::Reading { .. }, P::Open) if self.is_purchase() && !self.cap_noticed => vec![E::WatchBasket],
            (Event::OverCap { excess_fen }, P::Open) if self.is_purchase() && !self.cap_noticed => {
                self.cap_noticed = true;
                vec![E::NoticeOverCap { excess_fen }]
            }
            (Event::OpenTooLong, P::Open) => vec![E::AlertOpenTooLong],
            (Event::Finished { stored: true }, P::Finishing) => {
                self.phase = P::Ended;
                vec![E::LetGo]
            }
            (Event::Finished { stored: false }, P::Finishing) => {
                self.phase = P::Settling;
                vec![E::FinishAgain]
            }
            _ => vec![],
        }
    }

    fn closed(&mut self, unseen_open: bool, wait: Wait) -> Vec<Effect> {
        self.phase = Phase::Settling;
        let mut effects = Vec::new();
        if self.is_purchase() {
            effects.push(Effect::RecordClosed { unseen_open });
        }
        effects.push(Effect::AwaitStable(wait));
        effects
    }

    fn end(&mut self, why: EndReason) -> Vec<Effect> {
        self.phase = Phase::Ended;
        vec![Effect::End(Outcome::Cancelled, why)]
    }
}

/// The lanes of a door as the reading sent with its open saw them (`snapshot`), against the weights
/// before: a lane with no weight before takes the snapshot's; a lane whose snapshot differs from
/// its weight before by more than its allowance (`allowed_g`) is returned — someone may have been
/// at it before the shopper.
pub fn merge_opening(
    before: &mut Vec<(String, Grams)>,
    snapshot: &[(String, Grams)],
    allowed_g: impl Fn(&str) -> Grams,
) -> Vec<String> {
    let mut differ = Vec::new();
    for (lane, g) in snapshot {
        match before.iter().find(|(l, _)| l == lane) {
            None => before.push((lane.clone(), *g)),
            Some((_, b)) if (*b - *g).abs() > allowed_g(lane) => differ.push(lane.clone()),
            Some(_) => {}
        }
    }
    differ
}

/// The weights before, weighed again as the door opens (`fresh`: lane, grams, standard
/// uncertainty): the closed-door readings since the authorisation may know a lane better than
/// those before it did. A lane takes the fresh weight when it is the more precise; a lane with no
/// uncertainty on record (taken up from the database) counts as known no better than one reading
/// and takes it too.
pub fn refine_before(
    before: &mut Vec<(String, Grams)>,
    sems: &mut BTreeMap<String, Grams>,
    fresh: &[(String, Grams, Grams)],
) {
    for (lane, g, sem) in fresh {
        if sems.get(lane).is_some_and(|had| *had <= *sem) {
            continue;
        }
        match before.iter_mut().find(|(l, _)| l == lane) {
            Some(b) => b.1 = *g,
            None => before.push((lane.clone(), *g)),
        }
        sems.insert(lane.clone(), *sem);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EVENTS: [Event; 16] = [
        Event::OpenAsked { send: true },
        Event::OpenAsked { send: false },
        Event::OrderEnded,
        Event::OpenDone { acked: true },
        Event::OpenDone { acked: false },
        Event::UnlockLapsed,
        Event::DoorOpened,
        Event::DoorClosed,
        Event::ClosedUnseen,
        Event::Reading { closed: true, all_stable: true },
        Event::Reading { closed: false, all_stable: false },
        Event::SettleDue,
        Event::OverCap { excess_fen: Fen(150) },
        Event::OpenTooLong,
        Event::Finished { stored: true },
        Event::Finished { stored: false },
    ];

    fn purchase() -> Course {
        Course::purchase(1, 7, Fen(2000)).0
    }

    fn courses() -> impl Strategy<Value = Course> {
        prop_oneof![
            Just(purchase()),
            Just(Course::door_session(1, Purpose::Restock { by: "r".into() }).0),
            Just(Course::door_session(1, Purpose::Maintenance { by: "m".into() }).0),
        ]
    }

    fn events() -> impl Strategy<Value = Vec<Event>> {
        proptest::collection::vec(proptest::sample::select(EVENTS.to_vec()), 0..40)
    }

    /// What the world delivers in the end, whatever happened before: the order's timers end an
    /// order whose door never opened, a restocker's unlocked door lapses, the door closes, the
    /// lanes' wait runs out, and the database takes the end.
    fn the_world_moves_on(c: &mut Course) {
        for e in [
            Event::OrderEnded,
            Event::UnlockLapsed,
            Event::DoorClosed,
            Event::SettleDue,
            Event::Finished { stored: true },
        ] {
            c.step(e);
        }
    }

    #[test]
    fn a_purchase_from_scan_to_settlement() {
        let mut c = purchase();
        assert_eq!(
            c.step(Event::OpenAsked { send: true }),
            [Effect::WeighBefore, Effect::SendOpen, Effect::Answer(Opening::Sent)]
        );
        assert_eq!(c.step(Event::DoorOpened), [Effect::RecordOpened, Effect::ArmOpenAlert]);
        assert_eq!(c.step(Event::Reading { closed: false, all_stable: false }), [Effect::WatchBasket]);
        assert_eq!(c.step(Event::OverCap { excess_fen: Fen(150) }), [Effect::NoticeOverCap { excess_fen: Fen(150) }]);
        assert_eq!(c.step(Event::Reading { closed: false, all_stable: false }), [], "noticed once");
        assert_eq!(
            c.step(Event::DoorClosed),
            [Effect::RecordClosed { unseen_open: false }, Effect::AwaitStable(Wait::AfterClose)]
        );
        assert_eq!(c.step(Event::Reading { closed: true, all_stable: false }), []);
        assert_eq!(c.step(Event::Reading { closed: true, all_stable: true }), [Effect::Finish]);
        assert_eq!(c.step(Event::Finished { stored: false }), [Effect::FinishAgain]);
        assert_eq!(c.step(Event::SettleDue), [Effect::Finish]);
        assert_eq!(c.step(Event::Finished { stored: true }), [Effect::LetGo]);
        assert_eq!(c.phase, Phase::Ended);
    }

    #[test]
    fn a_close_before_the_open_was_heard_settles_from_the_weights_before() {
        let mut c = purchase();
        c.step(Event::OpenAsked { send: true });
        assert_eq!(
            c.step(Event::DoorClosed),
            [Effect::RecordClosed { unseen_open: true }, Effect::AwaitStable(Wait::AfterClose)]
        );
        let mut c = purchase();
        c.step(Event::OpenAsked { send: true });
        c.step(Event::DoorOpened);
        assert_eq!(c.step(Event::ClosedUnseen)[0], Effect::ForgetReadings);
        assert_eq!(c.phase, Phase::Settling);
    }

    #[test]
    fn door_open_checks() {
        let mut c = purchase();
        assert_eq!(c.step(Event::OpenAsked { send: false }), [Effect::Answer(Opening::Waiting)]);
        c.step(Event::OpenAsked { send: true });
        assert_eq!(
            c.step(Event::OpenAsked { send: true }),
            [Effect::SendOpen, Effect::Answer(Opening::Sent)],
            "sent once more"
        );
        assert_eq!(c.step(Event::OpenAsked { send: false }), [Effect::Answer(Opening::Waiting)]);
        c.step(Event::DoorOpened);
        assert_eq!(
            c.step(Event::OpenAsked { send: false }),
            [Effect::RecordOpenedAgain, Effect::Answer(Opening::DoorOpened)]
        );
        let mut ended = purchase();
        assert_eq!(ended.step(Event::OrderEnded), [Effect::End(Outcome::Cancelled, EndReason::OrderEnded)]);
        assert_eq!(ended.step(Event::OpenAsked { send: true }), [Effect::Answer(Opening::NotHeld)]);
    }

    #[test]
    fn a_restock_door_that_is_never_opened_ends_the_session() {
        let (mut c, start) = Course::door_session(2, Purpose::Restock { by: "r".into() });
        assert_eq!(start, [Effect::SendOpen]);
        assert_eq!(c.step(Event::OpenDone { acked: true }), [Effect::AwaitOpenWhileUnlocked]);
        assert_eq!(c.step(Event::OpenDone { acked: true }), [], "one unlock timer");
        assert_eq!(c.step(Event::UnlockLapsed), [Effect::End(Outcome::Cancelled, EndReason::DoorNotOpened)]);
        let (mut c, _) = Course::door_session(2, Purpose::Maintenance { by: "m".into() });
        assert_eq!(c.step(Event::OpenDone { acked: false }), [Effect::End(Outcome::Cancelled, EndReason::OpenFailed)]);
        let (mut c, _) = Course::door_session(2, Purpose::Restock { by: "r".into() });
        c.step(Event::DoorOpened);
        assert_eq!(c.step(Event::UnlockLapsed), [], "opened: the lapse is stale");
        assert_eq!(c.step(Event::DoorClosed), [Effect::AwaitStable(Wait::AfterClose)], "nothing to record on an order");
    }

    #[test]
    fn a_course_taken_up_starts_where_the_records_say() {
        let (c, effects) = Course::resume(1, Purpose::Purchase { order_id: 1, cap_fen: Fen(1) }, Phase::Finishing);
        assert_eq!((c.phase, effects), (Phase::Settling, vec![Effect::AwaitStable(Wait::Unseen)]));
        assert_eq!(Course::resume(1, Purpose::Restock { by: "r".into() }, Phase::Open).1, [Effect::ArmOpenAlert]);
        assert_eq!(
            Course::resume(1, Purpose::Purchase { order_id: 1, cap_fen: Fen(1) }, Phase::Opening).1,
            [Effect::WatchOrder]
        );
    }

    #[test]
    fn opening_weights_fill_gaps_and_flag_differences() {
        let mut before = vec![("A1".to_string(), Grams(500.0)), ("A2".to_string(), Grams(100.0))];
        let snapshot =
            [("A1".to_string(), Grams(501.0)), ("A2".to_string(), Grams(140.0)), ("A3".to_string(), Grams(20.0))];
        let differ = merge_opening(&mut before, &snapshot, |_| Grams(15.0));
        assert_eq!(differ, ["A2"]);
        assert_eq!(before.len(), 3, "A3 had no weight before: it takes the snapshot's");
        assert_eq!(before[1].1, Grams(100.0), "a lane that differs keeps its resting weight");
    }

    #[test]
    fn the_more_precise_weight_before_wins() {
        let mut before = vec![("A1".to_string(), Grams(500.0)), ("A2".to_string(), Grams(100.0))];
        let mut sems: BTreeMap<String, Grams> = [("A1".to_string(), Grams(1.0)), ("A2".to_string(), Grams(9.0))].into();
        let fresh = [
            ("A1".to_string(), Grams(503.0), Grams(2.0)),
            ("A2".to_string(), Grams(104.0), Grams(3.0)),
            ("A3".to_string(), Grams(20.0), Grams(4.0)),
        ];
        refine_before(&mut before, &mut sems, &fresh);
        assert_eq!(before[0].1, Grams(500.0), "A1 was known better before");
        assert_eq!((before[1].1, sems["A2"]), (Grams(104.0), Grams(3.0)), "A2 is known better now");
        assert_eq!((before[2].1, sems["A3"]), (Grams(20.0), Grams(4.0)), "A3 had no weight before");
    }

    proptest! {
        /// Whatever happened, once the world moves on every course ends.
        #[test]
        fn every_path_ends(mut c in courses(), seen in events()) {
            for e in seen {
                c.step(e);
            }
            the_world_moves_on(&mut c);
            prop_assert_eq!(c.phase, Phase::Ended);
        }

        /// An event delivered twice moves nothing twice: the second leaves the phase where it
        /// was and records, alerts, settles or ends nothing.
        #[test]
        fn a_repeat_moves_nothing(mut c in courses(), seen in events(), e in proptest::sample::select(EVENTS.to_vec())) {
            for e in seen {
                c.step(e);
            }
            c.step(e);
            let phase = c.phase;
            let again = c.step(e);
            prop_assert_eq!(c.phase, phase, "{:?} moved the course twice", e);
            for effect in again {
                // Answers, a resent `open` (the door-open check's retry), records that are written
                // again on purpose, estimates and a repeated alert (counted as one more
                // occurrence) are all a repeat may cause.
                let repeatable = matches!(
                    effect,
                    Effect::Answer(_)
                        | Effect::SendOpen
                        | Effect::RecordOpenedAgain
                        | Effect::WatchBasket
                        | Effect::AlertOpenTooLong
                        | Effect::AlertOpenedUnauthorised
                );
                prop_assert!(repeatable, "{:?} twice: {:?}", e, effect);
            }
        }

        /// `open` is never sent once the course has ended (an order that ended cannot open its
        /// door), and only while waiting for the door to open.
        #[test]
        fn open_is_never_sent_after_the_end(mut c in courses(), seen in events()) {
            for e in seen {
                let before = c.phase;
                let effects = c.step(e);
                if effects.contains(&Effect::SendOpen) {
                    prop_assert!(matches!(before, Phase::AwaitingAuth | Phase::Opening), "open sent from {:?}", before);
                }
            }
        }
    }
}
