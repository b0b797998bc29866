//! An order's life: the status machine and the scan-step checks, kept
//! pure so every order of arrival (a late confirmation, a repeated callback, a timeout that races
//! the door) can be tested without a cabinet, a database or a platform.
//!
//! Events arrive at least once and sometimes late, so a transition never fails loudly on a repeat:
//! an event whose effect is already in place is [`Stay::AlreadyThere`] and the caller does nothing.
//! Anything else that does not fit is [`Stay::Refused`] with a reason to log. The one refusal that
//! calls for an action is a confirmation for an order already cancelled: the door must never open,
//! and the pre-authorisation must be released ([`Stay::ReleaseNeeded`]).

use chrono::NaiveDateTime;

use super::cabinet::CabinetStatus;
use super::liveness::Liveness;
use super::names::named_enum;
use super::units::Fen;

named_enum! {
    /// Where an order stands, as stored (`orders.status`).
    pub enum OrderStatus {
        /// Scanned (未操作): waiting for the shopper to authorise the pre-authorisation.
        Created = "created",
        /// The platform confirmed the pre-authorisation; the door is being opened.
        Authorized = "authorized",
        /// The door is open; the shopper is choosing.
        DoorOpen = "door_open",
        /// The door closed; waiting for every lane to be stable.
        Settling = "settling",
        /// Lines and total fixed; the charge is on its way to the platform.
        Paying = "paying",
        /// The money moved.
        Paid = "paid",
        /// Ended before the door opened (auth timeout, door never opened, shopper cancelled).
        Cancelled = "cancelled",
        /// Nothing was taken; the pre-authorisation is released.
        NoPurchase = "no_purchase",
        /// The weights were ambiguous: a person sets the lines.
        Review = "review",
        /// The charge failed: the amount is debt on the account and the charge is retried.
        PaymentFailed = "payment_failed",
    }
}

impl OrderStatus {
    /// Statuses in which the shopper is at the cabinet (the partial unique index `orders_one_open`).
    pub const AT_CABINET: [OrderStatus; 4] =
        [OrderStatus::Created, OrderStatus::Authorized, OrderStatus::DoorOpen, OrderStatus::Settling];

    /// Nothing moves the order on. `review` and `payment_failed` are not final: a person (the
    /// review queue) or a retry (the capture consumer) still moves them, so a run that waits for
    /// every order to finish must not stop at them.
    pub fn is_final(self) -> bool {
        matches!(self, OrderStatus::Paid | OrderStatus::Cancelled | OrderStatus::NoPurchase)
    }
}

/// What happened to an order, reduced to what the status machine needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderEvent {
    /// The platform confirmed the pre-authorisation (callback or query).
    Authorized,
    /// The cabinet reported the door open.
    DoorOpened,
    /// `door.open_check`: the door did not open in time, even after the retry.
    DoorNeverOpened,
    /// `order.auth_timeout`: the shopper did not authorise in time.
    AuthTimeout,
    /// The shopper cancelled before the door opened.
    ShopperCancelled,
    /// The confirmation was learnt later than `orders.open_window_s` after the scan: the shopper
    /// has likely left, and the door must not unlock for nobody.
    AuthorisedTooLate,
    /// The cabinet reported the door closed.
    DoorClosed,
    /// Every lane settled unambiguously; `empty` when nothing was taken.
    Settled { empty: bool },
    /// The weights could not be read as whole units: a person must look.
    Ambiguous,
    /// A person set the lines of an order in review; `empty` when they found nothing taken.
    Reviewed { empty: bool },
    /// The platform reported the money moved.
    Paid,
    /// The charge failed.
    PaymentFailed,
}

impl OrderEvent {
    /// Every event, for exhaustive tests.
    pub const ALL: [OrderEvent; 14] = [
        OrderEvent::Authorized,
        OrderEvent::DoorOpened,
        OrderEvent::DoorNeverOpened,
        OrderEvent::AuthTimeout,
        OrderEvent::ShopperCancelled,
        OrderEvent::AuthorisedTooLate,
        OrderEvent::DoorClosed,
        OrderEvent::Settled { empty: false },
        OrderEvent::Settled { empty: true },
        OrderEvent::Ambiguous,
        OrderEvent::Reviewed { empty: false },
        OrderEvent::Reviewed { empty: true },
        OrderEvent::Paid,
        OrderEvent::PaymentFailed,
    ];
}

/// Why an event leaves the order where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Stay {
    /// The event's effect is already in place (a repeat, or an event overtaken by a later one on
    /// the same path): nothing to do.
    #[error("already there")]
    AlreadyThere,
    /// A confirmation for an order already cancelled: never open the door; release the
    /// pre-authorisation instead.
    #[error("the order is cancelled: release the pre-authorisation")]
    ReleaseNeeded,
    /// The event does not fit the order's status: logged, not applied.
    #[error("refused: {0}")]
    Refused(&'static str),
}

/// The status `event` moves an order in `status` to, or why it stays.
///
/// Idempotence is judged on the status alone: an event is [`Stay::AlreadyThere`] when the order is
/// in the status the event leads to or in a later one on a path through it. So applying the same
/// event twice never moves the order twice, and no event moves a final status.
///
/// `AuthTimeout` cancels only a `created` order. The brief allowed `authorized` too, but the
/// timeout is scheduled at the scan and fires at +60 s whatever happened: on an authorised order
/// it is stale, and cancelling (releasing the hold) while `open` is on its way to the cabinet
/// would let a shopper take goods nobody can charge for. A door that fails to open after
/// authorisation is `DoorNeverOpened`'s business.
pub fn next(status: OrderStatus, event: &OrderEvent) -> Result<OrderStatus, Stay> {
    match *event {
        OrderEvent::Authorized
        | OrderEvent::DoorOpened
        | OrderEvent::AuthTimeout
        | OrderEvent::DoorNeverOpened
        | OrderEvent::ShopperCancelled
        | OrderEvent::AuthorisedTooLate => before_the_door_closes(status, event),
        _ => after_the_door_closes(status, event),
    }
}

/// [`next`] for the events up to the door's opening: the confirmation, the open, and the ways
/// an order ends before it.
fn before_the_door_closes(status: OrderStatus, event: &OrderEvent) -> Result<OrderStatus, Stay> {
    use OrderStatus::*;
    use Stay::{AlreadyThere, Refused, ReleaseNeeded};
    match *event {
        OrderEvent::Authorized => match status {
            Created => Ok(Authorized),
            Authorized | DoorOpen | Settling | Paying | Paid | NoPurchase | Review | PaymentFailed => Err(AlreadyThere),
            Cancelled => Err(ReleaseNeeded),
        },
        OrderEvent::DoorOpened => match status {
            Authorized => Ok(DoorOpen),
            DoorOpen | Settling | Paying | Paid | NoPurchase | Review | PaymentFailed => Err(AlreadyThere),
            Created => Err(Refused("door opened before the pre-authorisation was confirmed")),
            Cancelled => Err(Refused("door opened on a cancelled order")),
        },
        OrderEvent::AuthTimeout | OrderEvent::AuthorisedTooLate => match status {
            Created => Ok(Cancelled),
            Cancelled => Err(AlreadyThere),
            Authorized | DoorOpen | Settling | Paying | Paid | NoPurchase | Review | PaymentFailed => {
                Err(Refused("authorised in time: the timeout is stale"))
            }
        },
        OrderEvent::DoorNeverOpened => match status {
            Created | Authorized => Ok(Cancelled),
            Cancelled => Err(AlreadyThere),
            DoorOpen | Settling | Paying | Paid | NoPurchase | Review | PaymentFailed => {
                Err(Refused("the door has opened: the order can no longer be cancelled"))
            }
        },
        // Once authorised, `open` is on its way and the door may unlock at any moment: a cancel
        // then would free goods nobody can charge for. Only the door-open check may end it.
        OrderEvent::ShopperCancelled => match status {
            Created => Ok(Cancelled),
            Cancelled => Err(AlreadyThere),
            Authorized => Err(Refused("the door is being opened: the order can no longer be cancelled")),
            DoorOpen | Settling | Paying | Paid | NoPurchase | Review | PaymentFailed => {
                Err(Refused("the door has opened: the order can no longer be cancelled"))
            }
        },
        _ => Err(Refused("not an event before the door closes")),
    }
}

/// [`next`] for the events from the door's close: the settlement, a person's review, the charge.
fn after_the_door_closes(status: OrderStatus, event: &OrderEvent) -> Result<OrderStatus, Stay> {
    use OrderStatus::*;
    use Stay::{AlreadyThere, Refused};
    match *event {
        OrderEvent::DoorClosed => match status {
            DoorOpen => Ok(Settling),
            Settling | Paying | Paid | NoPurchase | Review | PaymentFailed => Err(AlreadyThere),
            Created | Authorized => Err(Refused("door closed before it was seen open")),
            Cancelled => Err(Refused("door closed on a cancelled order")),
        },
        OrderEvent::Settled { empty } => match (status, empty) {
            (Settling, false) => Ok(Paying),
            (Settling, true) => Ok(NoPurchase),
            (Paying | Paid | PaymentFailed, false) | (NoPurchase, true) => Err(AlreadyThere),
            (Paying | Paid | PaymentFailed, true) | (NoPurchase, false) => {
                Err(Refused("settled already, with a different basket"))
            }
            (Review, _) => Err(Refused("in review: a person sets the lines")),
            (Created | Authorized | DoorOpen | Cancelled, _) => Err(Refused("the door has not closed")),
        },
        OrderEvent::Ambiguous => match status {
            Settling => Ok(Review),
            Review => Err(AlreadyThere),
            Paying | Paid | NoPurchase | PaymentFailed => Err(Refused("settled already")),
            Created | Authorized | DoorOpen | Cancelled => Err(Refused("the door has not closed")),
        },
        OrderEvent::Reviewed { empty } => match (status, empty) {
            (Review, false) => Ok(Paying),
            (Review, true) => Ok(NoPurchase),
            (Paying | Paid | PaymentFailed, false) | (NoPurchase, true) => Err(AlreadyThere),
            (Paying | Paid | PaymentFailed, true) | (NoPurchase, false) => {
                Err(Refused("settled already, with a different basket"))
            }
            (Created | Authorized | DoorOpen | Settling | Cancelled, _) => Err(Refused("not in review")),
        },
        OrderEvent::Paid => match status {
            Paying | PaymentFailed => Ok(Paid),
            Paid => Err(AlreadyThere),
            NoPurchase => Err(Refused("nothing was charged: the pre-authorisation was released")),
            Created | Authorized | DoorOpen | Settling | Review | Cancelled => Err(Refused("nothing charged yet")),
        },
        OrderEvent::PaymentFailed => match status {
            Paying => Ok(PaymentFailed),
            PaymentFailed => Err(AlreadyThere),
            Paid => Err(Refused("paid: a late failure does not undo a payment")),
            NoPurchase => Err(Refused("nothing was charged: the pre-authorisation was released")),
            Created | Authorized | DoorOpen | Settling | Review | Cancelled => Err(Refused("nothing charged yet")),
        },
        _ => Err(Refused("not an event after the door closes")),
    }
}

/// Why a scan (`POST /api/v1/orders`) is refused. Each has a stable [`code`](Self::code) for the
/// mini-program and a [`message`](Self::message) it can show as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ScanRefusal {
    /// The shopper's account is blocked.
    #[error("shopper blocked")]
    ShopperBlocked,
    /// The shopper owes money from an earlier order.
    #[error("unpaid debt")]
    UnpaidDebt,
    /// The shopper has not bound the payment channel asked for.
    #[error("payment channel not bound")]
    ChannelNotBound,
    /// The shopper already has an order that is not finished.
    #[error("an order is open")]
    OrderOpen,
    /// The cabinet has no such door.
    #[error("no such door")]
    NoSuchDoor,
    /// The cabinet cannot sell: not `ready` (initialising, disabled) or not `online` (offline,
    /// suspect).
    #[error("cabinet not online")]
    CabinetNotOnline,
    /// Another session (a purchase, a restock, maintenance, ...) holds the cabinet.
    #[error("cabinet busy")]
    CabinetBusy,
}

impl ScanRefusal {
    /// The stable error code (`{"error": code}`).
    pub fn code(self) -> &'static str {
        match self {
            ScanRefusal::ShopperBlocked => "shopper_blocked",
            ScanRefusal::UnpaidDebt => "unpaid_debt",
            ScanRefusal::ChannelNotBound => "channel_not_bound",
            ScanRefusal::OrderOpen => "order_open",
            ScanRefusal::NoSuchDoor => "no_such_door",
            ScanRefusal::CabinetNotOnline => "cabinet_not_online",
            ScanRefusal::CabinetBusy => "cabinet_busy",
        }
    }

    /// What the mini-program shows the shopper (`domain::texts`).
    pub fn message(self) -> &'static str {
        use super::texts;
        match self {
            ScanRefusal::ShopperBlocked => texts::SHOPPER_BLOCKED,
            ScanRefusal::UnpaidDebt => texts::UNPAID_DEBT,
            ScanRefusal::ChannelNotBound => texts::CHANNEL_NOT_BOUND,
            ScanRefusal::OrderOpen => texts::ORDER_OPEN,
            ScanRefusal::NoSuchDoor => texts::NO_SUCH_DOOR,
            ScanRefusal::CabinetNotOnline => texts::CABINET_NOT_ONLINE,
            ScanRefusal::CabinetBusy => texts::CABINET_BUSY,
        }
    }
}

/// What the scan step knows, gathered by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanFacts {
    pub blocked: bool,
    pub debt_fen: Fen,
    /// The shopper has bound the payment channel the scan asks for.
    pub channel_bound: bool,
    /// The shopper has an order that is not final.
    pub open_order: bool,
    pub door_exists: bool,
    pub cabinet_status: CabinetStatus,
    pub liveness: Liveness,
    /// A session holds the cabinet (the device lock is taken).
    pub cabinet_busy: bool,
}

/// Whether a scan may go on, checked in this order, and the first refusal is the answer:
///
/// 1. shopper blocked, 2. unpaid debt, 3. channel not bound, 4. an open order — the shopper's own
///    standing first: nothing about the cabinet can help them, and these tell them what to do;
/// 5. no such door — the request itself is wrong (a bad code), whatever the cabinet's state;
/// 6. cabinet not online, 7. cabinet busy — the cabinet's condition, from the lasting to the
///    passing, so "try again in a moment" is said only when it is true.
pub fn check_scan(f: &ScanFacts) -> Result<(), ScanRefusal> {
    if f.blocked {
        return Err(ScanRefusal::ShopperBlocked);
    }
    if f.debt_fen.is_positive() {
        return Err(ScanRefusal::UnpaidDebt);
    }
    if !f.channel_bound {
        return Err(ScanRefusal::ChannelNotBound);
    }
    if f.open_order {
        return Err(ScanRefusal::OrderOpen);
    }
    if !f.door_exists {
        return Err(ScanRefusal::NoSuchDoor);
    }
    if f.cabinet_status != CabinetStatus::Ready || f.liveness != Liveness::Online {
        return Err(ScanRefusal::CabinetNotOnline);
    }
    if f.cabinet_busy {
        return Err(ScanRefusal::CabinetBusy);
    }
    Ok(())
}

/// What a corrected basket means for an order the platform has already charged: the shopper owes
/// the new total. What they paid beyond it goes back (a refund); what it is short of is owed
/// (debt: a paid charge cannot be raised).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebasket {
    pub refund_fen: Fen,
    pub debt_fen: Fen,
}

/// [`Rebasket`] for an order that has kept `paid_fen` (charged, less refunds already on their
/// way) and whose basket a person set to `total_fen`.
pub fn rebasket(paid_fen: Fen, total_fen: Fen) -> Rebasket {
    Rebasket { refund_fen: (paid_fen - total_fen).max(Fen::ZERO), debt_fen: (total_fen - paid_fen).max(Fen::ZERO) }
}

/// Whether a confirmation learnt at `learnt_at`, for an order scanned at `scanned_at`, may still
/// open the door: within `window` the shopper is still at the cabinet; after it they have likely
/// left, and a door unlocked then would unlock for nobody.
pub fn opens_the_door(scanned_at: NaiveDateTime, learnt_at: NaiveDateTime, window: chrono::Duration) -> bool {
    learnt_at - scanned_at <= window
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus::*;
    use proptest::prelude::*;

    #[test]
    fn a_corrected_basket_refunds_or_owes_the_difference() {
        assert_eq!(rebasket(Fen(1300), Fen(700)), Rebasket { refund_fen: Fen(600), debt_fen: Fen(0) });
        assert_eq!(rebasket(Fen(1000), Fen(1300)), Rebasket { refund_fen: Fen(0), debt_fen: Fen(300) });
        assert_eq!(rebasket(Fen(700), Fen(700)), Rebasket { refund_fen: Fen(0), debt_fen: Fen(0) });
        assert_eq!(rebasket(Fen(700), Fen(0)), Rebasket { refund_fen: Fen(700), debt_fen: Fen(0) });
    }

    proptest::proptest! {
        /// Whatever the numbers: what is kept plus what is owed is the new total, and only one of
        /// a refund and a debt is ever non-zero.
        #[test]
        fn rebasket_keeps_the_books(paid in 0i64..10_000_000, total in 0i64..10_000_000) {
            let (paid, total) = (Fen(paid), Fen(total));
            let r = rebasket(paid, total);
            proptest::prop_assert!(r.refund_fen >= Fen::ZERO && r.debt_fen >= Fen::ZERO);
            proptest::prop_assert!(r.refund_fen == Fen::ZERO || r.debt_fen == Fen::ZERO);
            proptest::prop_assert_eq!(paid - r.refund_fen + r.debt_fen, total);
        }
    }

    fn run(events: &[OrderEvent]) -> OrderStatus {
        let mut s = Created;
        for e in events {
            s = next(s, e).unwrap_or_else(|why| panic!("{e:?} from {s:?}: {why}"));
        }
        s
    }

    #[test]
    fn status_round_trip() {
        for &s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).ok(), Some(serde_json::Value::from(s.as_str())));
        }
        assert_eq!(OrderStatus::parse("open"), None);
    }

    #[test]
    fn final_statuses() {
        let finals: Vec<_> = OrderStatus::ALL.iter().copied().filter(|s| s.is_final()).collect();
        assert_eq!(finals, vec![Paid, Cancelled, NoPurchase]);
    }

    #[test]
    fn the_happy_path() {
        use OrderEvent as E;
        assert_eq!(run(&[E::Authorized, E::DoorOpened, E::DoorClosed, E::Settled { empty: false }, E::Paid]), Paid);
    }

    #[test]
    fn the_side_exits() {
        use OrderEvent as E;
        assert_eq!(run(&[E::AuthTimeout]), Cancelled);
        assert_eq!(run(&[E::ShopperCancelled]), Cancelled);
        assert_eq!(run(&[E::Authorized, E::DoorNeverOpened]), Cancelled);
        // Authorised: `open` is on its way; the shopper can no longer cancel.
        assert!(matches!(next(Authorized, &E::ShopperCancelled), Err(Stay::Refused(_))));
        assert_eq!(run(&[E::Authorized, E::DoorOpened, E::DoorClosed, E::Settled { empty: true }]), NoPurchase);
        assert_eq!(run(&[E::Authorized, E::DoorOpened, E::DoorClosed, E::Ambiguous]), Review);
        assert_eq!(
            run(&[E::Authorized, E::DoorOpened, E::DoorClosed, E::Ambiguous, E::Reviewed { empty: true }]),
            NoPurchase
        );
        assert_eq!(
            run(&[E::Authorized, E::DoorOpened, E::DoorClosed, E::Ambiguous, E::Reviewed { empty: false }, E::Paid]),
            Paid
        );
    }

    #[test]
    fn a_failed_payment_is_retried_until_paid() {
        use OrderEvent as E;
        let failed = run(&[E::Authorized, E::DoorOpened, E::DoorClosed, E::Settled { empty: false }, E::PaymentFailed]);
        assert_eq!(failed, PaymentFailed);
        assert!(!failed.is_final());
        assert_eq!(next(failed, &E::PaymentFailed), Err(Stay::AlreadyThere), "a retry that fails again");
        assert_eq!(next(failed, &E::Paid), Ok(Paid));
        assert!(matches!(next(Paid, &E::PaymentFailed), Err(Stay::Refused(_))), "a late failure after the money");
    }

    #[test]
    fn a_confirmation_after_the_cancel_never_opens_the_door() {
        assert_eq!(next(Cancelled, &OrderEvent::Authorized), Err(Stay::ReleaseNeeded));
        assert!(matches!(next(Cancelled, &OrderEvent::DoorOpened), Err(Stay::Refused(_))));
    }

    #[test]
    fn a_confirmation_learnt_too_late_cancels_and_never_opens() {
        let scanned = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("time").naive_utc();
        let window = chrono::Duration::seconds(45);
        assert!(opens_the_door(scanned, scanned + chrono::Duration::seconds(10), window));
        assert!(opens_the_door(scanned, scanned + window, window), "the window's last second still opens");
        assert!(!opens_the_door(scanned, scanned + window + chrono::Duration::milliseconds(1), window));
        assert_eq!(next(Created, &OrderEvent::AuthorisedTooLate), Ok(Cancelled));
        assert_eq!(next(Cancelled, &OrderEvent::AuthorisedTooLate), Err(Stay::AlreadyThere));
        assert!(matches!(next(Authorized, &OrderEvent::AuthorisedTooLate), Err(Stay::Refused(_))));
    }

    #[test]
    fn the_auth_timeout_is_stale_once_authorised() {
        assert_eq!(next(Created, &OrderEvent::AuthTimeout), Ok(Cancelled));
        assert!(matches!(next(Authorized, &OrderEvent::AuthTimeout), Err(Stay::Refused(_))));
        assert!(matches!(next(DoorOpen, &OrderEvent::AuthTimeout), Err(Stay::Refused(_))));
    }

    #[test]
    fn an_open_door_cannot_be_cancelled() {
        for e in [OrderEvent::ShopperCancelled, OrderEvent::DoorNeverOpened, OrderEvent::AuthTimeout] {
            assert!(matches!(next(DoorOpen, &e), Err(Stay::Refused(_))), "{e:?}");
        }
    }

    #[test]
    fn late_repeats_are_already_there() {
        assert_eq!(next(Paying, &OrderEvent::Authorized), Err(Stay::AlreadyThere));
        assert_eq!(next(Paid, &OrderEvent::DoorClosed), Err(Stay::AlreadyThere));
        assert_eq!(next(Cancelled, &OrderEvent::AuthTimeout), Err(Stay::AlreadyThere));
        assert_eq!(next(Cancelled, &OrderEvent::ShopperCancelled), Err(Stay::AlreadyThere));
    }

    #[test]
    fn a_different_settlement_is_refused() {
        assert!(matches!(next(Paying, &OrderEvent::Settled { empty: true }), Err(Stay::Refused(_))));
        assert!(matches!(next(NoPurchase, &OrderEvent::Settled { empty: false }), Err(Stay::Refused(_))));
        assert!(matches!(next(Review, &OrderEvent::Settled { empty: false }), Err(Stay::Refused(_))));
        assert!(matches!(next(Settling, &OrderEvent::Reviewed { empty: false }), Err(Stay::Refused(_))));
    }

    fn any_status() -> impl Strategy<Value = OrderStatus> {
        proptest::sample::select(OrderStatus::ALL.to_vec())
    }

    fn any_event() -> impl Strategy<Value = OrderEvent> {
        proptest::sample::select(OrderEvent::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn the_same_event_twice_never_moves_twice(s in any_status(), e in any_event()) {
            if let Ok(moved) = next(s, &e) {
                prop_assert_ne!(moved, s);
                prop_assert_eq!(next(moved, &e), Err(Stay::AlreadyThere));
            }
        }

        #[test]
        fn no_event_leaves_a_final_status(s in any_status(), e in any_event()) {
            if s.is_final() {
                prop_assert!(next(s, &e).is_err());
            }
        }

        #[test]
        fn any_sequence_stays_within_the_machine(events in proptest::collection::vec(any_event(), 0..30)) {
            // Whatever arrives, in whatever order, the order only moves along the machine's edges
            // and, once final, stays.
            let mut s = Created;
            let mut was_final = false;
            for e in &events {
                if let Ok(to) = next(s, e) {
                    prop_assert!(!was_final);
                    s = to;
                }
                was_final = s.is_final();
            }
        }
    }

    /// One change to the facts.
    type Edit = fn(&mut ScanFacts);

    fn ok_facts() -> ScanFacts {
        ScanFacts {
            blocked: false,
            debt_fen: Fen(0),
            channel_bound: true,
            open_order: false,
            door_exists: true,
            cabinet_status: CabinetStatus::Ready,
            liveness: Liveness::Online,
            cabinet_busy: false,
        }
    }

    #[test]
    fn a_good_scan_passes() {
        assert_eq!(check_scan(&ok_facts()), Ok(()));
    }

    #[test]
    fn each_refusal() {
        let cases: [(Edit, ScanRefusal); 9] = [
            (|f| f.blocked = true, ScanRefusal::ShopperBlocked),
            (|f| f.debt_fen = Fen(1), ScanRefusal::UnpaidDebt),
            (|f| f.channel_bound = false, ScanRefusal::ChannelNotBound),
            (|f| f.open_order = true, ScanRefusal::OrderOpen),
            (|f| f.door_exists = false, ScanRefusal::NoSuchDoor),
            (|f| f.liveness = Liveness::Offline, ScanRefusal::CabinetNotOnline),
            (|f| f.liveness = Liveness::Suspect, ScanRefusal::CabinetNotOnline),
            (|f| f.cabinet_status = CabinetStatus::Initializing, ScanRefusal::CabinetNotOnline),
            (|f| f.cabinet_busy = true, ScanRefusal::CabinetBusy),
        ];
        for (spoil, want) in cases {
            let mut f = ok_facts();
            spoil(&mut f);
            assert_eq!(check_scan(&f), Err(want), "{f:?}");
        }
        let mut f = ok_facts();
        f.cabinet_status = CabinetStatus::Disabled;
        assert_eq!(check_scan(&f), Err(ScanRefusal::CabinetNotOnline));
        f = ok_facts();
        f.debt_fen = Fen(-5);
        assert_eq!(check_scan(&f), Ok(()), "a credit is not a debt");
    }

    #[test]
    fn checks_run_in_the_documented_order() {
        // Everything wrong at once; repair one fact at a time, in order, and the answer moves down
        // the list.
        let mut f = ScanFacts {
            blocked: true,
            debt_fen: Fen(100),
            channel_bound: false,
            open_order: true,
            door_exists: false,
            cabinet_status: CabinetStatus::Disabled,
            liveness: Liveness::Offline,
            cabinet_busy: true,
        };
        let repairs: [(Edit, ScanRefusal); 7] = [
            (|f| f.blocked = false, ScanRefusal::ShopperBlocked),
            (|f| f.debt_fen = Fen(0), ScanRefusal::UnpaidDebt),
            (|f| f.channel_bound = true, ScanRefusal::ChannelNotBound),
            (|f| f.open_order = false, ScanRefusal::OrderOpen),
            (|f| f.door_exists = true, ScanRefusal::NoSuchDoor),
            (
                |f| {
                    f.cabinet_status = CabinetStatus::Ready;
                    f.liveness = Liveness::Online;
                },
                ScanRefusal::CabinetNotOnline,
            ),
            (|f| f.cabinet_busy = false, ScanRefusal::CabinetBusy),
        ];
        for (repair, want) in repairs {
            assert_eq!(check_scan(&f), Err(want));
            repair(&mut f);
        }
        assert_eq!(check_scan(&f), Ok(()));
    }

    #[test]
    fn refusal_codes_are_distinct_and_messages_present() {
        let all = [
            ScanRefusal::ShopperBlocked,
            ScanRefusal::UnpaidDebt,
            ScanRefusal::ChannelNotBound,
            ScanRefusal::OrderOpen,
            ScanRefusal::NoSuchDoor,
            ScanRefusal::CabinetNotOnline,
            ScanRefusal::CabinetBusy,
        ];
        let mut codes: Vec<_> = all.iter().map(|r| r.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        assert!(all.iter().all(|r| !r.message().is_empty()));
    }
}
