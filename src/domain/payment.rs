//! What a platform's callback does to a pre-authorisation: the state machine, kept pure so every
//! order of arrival (late, duplicated, after a cancel) can be tested without a platform.
//!
//! The platform is the authority on money: a payment it reports is recorded whatever Heft
//! thought, and flagged when Heft did not expect it. A confirmation that arrives for a
//! pre-authorisation Heft already cancelled is never acted on (the door must not open); it is
//! flagged so the hold is released.

use serde::{Deserialize, Serialize};

use super::names::named_enum;
use super::units::Fen;

named_enum! {
    /// Which platform.
    pub enum Channel {
        /// WeChat Pay Score.
        Wechat = "wechat",
        /// Alipay fund-auth pre-authorisation.
        Alipay = "alipay",
    }
}

named_enum! {
    /// Where a pre-authorisation stands, as Heft records it.
    pub enum PaymentState {
        /// Asked for; the shopper has not confirmed.
        Created = "created",
        /// The shopper confirmed (Pay Score USER_CONFIRM, Alipay freeze SUCCESS).
        Authorized = "authorized",
        /// Charged; the platform is collecting.
        Capturing = "capturing",
        /// The money moved.
        Paid = "paid",
        /// Cancelled or released before any charge.
        Cancelled = "cancelled",
    }
}

named_enum! {
    /// Where a refund stands.
    pub enum RefundStatus {
        /// Written, not sent yet.
        Requested = "requested",
        /// Sent: the platform has it, or may have it (a request whose answer was lost).
        Processing = "processing",
        Succeeded = "succeeded",
        /// The platform refused or gave up: a person must give the money back another way.
        Failed = "failed",
    }
}

impl RefundStatus {
    /// Not ended: still to be sent, or on its way.
    pub const OPEN: [RefundStatus; 2] = [RefundStatus::Requested, RefundStatus::Processing];
}

named_enum! {
    /// What one callback did, as stored with it (`payment_events.outcome`).
    pub enum EventOutcome {
        Applied = "applied",
        AlreadyApplied = "already_applied",
        Ignored = "ignored",
        ReleaseNeeded = "release_needed",
        Anomaly = "anomaly",
    }
}

/// What a callback reports, reduced to what the state machine needs (`pay::PayEventKind`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reported {
    /// The shopper confirmed (Pay Score USER_CONFIRM, Alipay freeze SUCCESS).
    Authorized { platform_order_id: Option<String>, payer_id: Option<String> },
    /// The money moved.
    Paid { amount_fen: Fen, transaction_id: String },
    /// The hold was given back (Alipay unfreeze).
    Released,
    /// A refund ended on the platform (WeChat REFUND.*): recorded on the refund, not the payment.
    Refund { out_refund_no: String, refund_id: Option<String>, succeeded: bool, status: String },
    /// Verified but nothing Heft acts on (refund events, service authorisation…).
    Other,
}

/// The fields a transition sets (None: unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub platform_order_id: Option<String>,
    pub payer_id: Option<String>,
    pub amount_fen: Option<Fen>,
    pub transaction_id: Option<String>,
}

/// The verdict on one callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Move to the state and record the changes.
    Apply { to: PaymentState, changes: Changes },
    /// Already in effect (a repeat in other clothes): nothing to do.
    AlreadyApplied,
    /// Stale or irrelevant: recorded, not applied.
    Ignored(&'static str),
    /// A confirmation for a cancelled pre-authorisation: never act on it; release the hold.
    ReleaseNeeded,
    /// A refund ended: recorded on the refund; the payment stays as it is.
    RefundEnded,
    /// Money moved where Heft did not expect it (paid after a cancel, a second transaction):
    /// recorded as the platform says, and flagged for a person.
    Anomaly { to: PaymentState, changes: Changes, reason: &'static str },
}

impl Verdict {
    /// What is stored with the event (`payment_events.outcome`).
    pub fn outcome(&self) -> EventOutcome {
        match self {
            Verdict::Apply { .. } | Verdict::RefundEnded => EventOutcome::Applied,
            Verdict::AlreadyApplied => EventOutcome::AlreadyApplied,
            Verdict::Ignored(_) => EventOutcome::Ignored,
            Verdict::ReleaseNeeded => EventOutcome::ReleaseNeeded,
            Verdict::Anomaly { .. } => EventOutcome::Anomaly,
        }
    }
}

/// Decide what `reported` does to a pre-authorisation in `state` (whose recorded transaction, if
/// paid, is `transaction_id`).
pub fn apply(state: PaymentState, transaction_id: Option<&str>, reported: &Reported) -> Verdict {
    use PaymentState::*;
    match reported {
        Reported::Authorized { platform_order_id, payer_id } => match state {
            Created => Verdict::Apply {
                to: Authorized,
                changes: Changes {
                    platform_order_id: platform_order_id.clone(),
                    payer_id: payer_id.clone(),
                    ..Changes::default()
                },
            },
            Authorized | Capturing | Paid => Verdict::AlreadyApplied,
            Cancelled => Verdict::ReleaseNeeded,
        },
        Reported::Paid { amount_fen, transaction_id: reported_tx } => {
            let changes = Changes {
                amount_fen: Some(*amount_fen),
                transaction_id: Some(reported_tx.clone()),
                ..Changes::default()
            };
            match state {
                Capturing | Authorized => Verdict::Apply { to: Paid, changes },
                Paid if transaction_id == Some(reported_tx.as_str()) => Verdict::AlreadyApplied,
                Paid => {
                    Verdict::Anomaly { to: Paid, changes, reason: "a second transaction for one pre-authorisation" }
                }
                Created | Cancelled => {
                    Verdict::Anomaly { to: Paid, changes, reason: "paid although Heft never charged it" }
                }
            }
        }
        Reported::Released => match state {
            Created | Authorized => Verdict::Apply { to: Cancelled, changes: Changes::default() },
            Cancelled => Verdict::AlreadyApplied,
            // After a trade Alipay unfreezes the rest (auth_confirm_mode COMPLETE): expected.
            Capturing | Paid => Verdict::Ignored("release of the remainder after a charge"),
        },
        Reported::Other => Verdict::Ignored("an event Heft does not act on"),
        // The payment stays paid: a refund is its own record (`db::refunds`).
        Reported::Refund { .. } => Verdict::RefundEnded,
    }
}

/// The trade number a capture uses (Alipay `trade.pay`); the same on every retry.
pub fn out_trade_no(out_order_no: &str) -> String {
    format!("{out_order_no}T")
}

/// What a basket of `total_fen` comes to over a pre-authorisation of `cap_fen`: the platform will
/// not charge more than it holds, so the excess is owed.
pub fn excess_fen(total_fen: Fen, cap_fen: Fen) -> Fen {
    (total_fen - cap_fen).max(Fen::ZERO)
}

/// What the capture charges: the basket up to the cap.
pub fn charge_fen(total_fen: Fen, cap_fen: Fen) -> Fen {
    total_fen.min(cap_fen)
}

/// An order's debt once its charge went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaidDebt {
    /// Still owed on the order: only the part of the basket over the cap.
    pub order_debt_fen: Fen,
    /// Taken off the account: what a failed charge had added to it.
    pub cleared_fen: Fen,
}

/// [`PaidDebt`] of an order owing `order_debt_fen` whose basket of `total_fen` (pre-authorised up to
/// `cap_fen`) was just paid.
pub fn paid_debt(order_debt_fen: Fen, total_fen: Fen, cap_fen: Fen) -> PaidDebt {
    let excess = excess_fen(total_fen, cap_fen);
    PaidDebt { order_debt_fen: excess, cleared_fen: (order_debt_fen - excess).max(Fen::ZERO) }
}

/// Whether a charge the platform has been collecting since round 0 has been at it for `grace_s`
/// by round `round`: the waits of the rounds before it add up to at least that (a lower bound on
/// the time: a round may start late, never early).
pub fn collecting_overdue(base_s: u64, max_s: u64, grace_s: u64, round: u32) -> bool {
    let waited: u64 = (0..round).map(|r| super::money::retry_delay_s(base_s, max_s, r)).fold(0, u64::saturating_add);
    waited >= grace_s
}

#[cfg(test)]
mod tests {
    use super::*;
    use PaymentState::*;

    #[test]
    fn a_basket_over_the_cap_is_charged_the_cap_and_the_rest_owed() {
        assert_eq!((charge_fen(Fen(1500), Fen(2000)), excess_fen(Fen(1500), Fen(2000))), (Fen(1500), Fen(0)));
        assert_eq!((charge_fen(Fen(2600), Fen(2000)), excess_fen(Fen(2600), Fen(2000))), (Fen(2000), Fen(600)));
        // A failed charge had put the capped 2000 on the account: paid, only the excess stays.
        assert_eq!(
            paid_debt(Fen(2600), Fen(2600), Fen(2000)),
            PaidDebt { order_debt_fen: Fen(600), cleared_fen: Fen(2000) }
        );
        assert_eq!(
            paid_debt(Fen(600), Fen(2600), Fen(2000)),
            PaidDebt { order_debt_fen: Fen(600), cleared_fen: Fen(0) }
        );
        assert_eq!(paid_debt(Fen(0), Fen(1500), Fen(2000)), PaidDebt { order_debt_fen: Fen(0), cleared_fen: Fen(0) });
    }

    #[test]
    fn collecting_is_overdue_once_the_waits_reach_the_grace() {
        // Rounds wait 300, 600, 1200…: by round 2, 900 s have passed.
        assert!(!collecting_overdue(300, 3600, 600, 0));
        assert!(!collecting_overdue(300, 3600, 600, 1));
        assert!(collecting_overdue(300, 3600, 600, 2));
        assert!(collecting_overdue(1, 3600, 1, 1));
        assert!(collecting_overdue(1, 1, 0, 0), "no grace: overdue at once");
    }

    fn authorized() -> Reported {
        Reported::Authorized { platform_order_id: Some("o1".into()), payer_id: Some("u1".into()) }
    }

    fn paid(tx: &str) -> Reported {
        Reported::Paid { amount_fen: Fen(1250), transaction_id: tx.into() }
    }

    #[test]
    fn the_happy_path() {
        let Verdict::Apply { to, changes } = apply(Created, None, &authorized()) else { panic!() };
        assert_eq!(to, Authorized);
        assert_eq!(changes.payer_id.as_deref(), Some("u1"));
        let Verdict::Apply { to, changes } = apply(Capturing, None, &paid("t1")) else { panic!() };
        assert_eq!((to, changes.amount_fen), (Paid, Some(Fen(1250))));
    }

    #[test]
    fn repeats_are_already_applied() {
        assert_eq!(apply(Authorized, None, &authorized()), Verdict::AlreadyApplied);
        assert_eq!(apply(Paid, Some("t1"), &paid("t1")), Verdict::AlreadyApplied);
        assert_eq!(apply(Cancelled, None, &Reported::Released), Verdict::AlreadyApplied);
    }

    #[test]
    fn a_confirmation_after_the_cancel_never_authorizes() {
        assert_eq!(apply(Cancelled, None, &authorized()), Verdict::ReleaseNeeded);
    }

    #[test]
    fn the_platform_wins_on_money_and_is_flagged() {
        assert!(matches!(apply(Cancelled, None, &paid("t1")), Verdict::Anomaly { to: Paid, .. }));
        assert!(matches!(apply(Paid, Some("t1"), &paid("t2")), Verdict::Anomaly { to: Paid, .. }));
    }

    #[test]
    fn release_after_a_charge_is_the_remainder() {
        assert!(matches!(apply(Paid, Some("t1"), &Reported::Released), Verdict::Ignored(_)));
        assert!(matches!(apply(Authorized, None, &Reported::Released), Verdict::Apply { to: Cancelled, .. }));
    }

    proptest::proptest! {
        /// Applying the same report twice never changes anything the second time.
        #[test]
        fn idempotent(start in 0usize..5, which in 0usize..4) {
            let states = [Created, Authorized, Capturing, Paid, Cancelled];
            let reports = [authorized(), paid("t1"), Reported::Released, Reported::Other];
            let (state, report) = (states[start], &reports[which]);
            let (after, tx) = match apply(state, None, report) {
                Verdict::Apply { to, changes } | Verdict::Anomaly { to, changes, .. } => (to, changes.transaction_id),
                _ => (state, None),
            };
            let again = apply(after, tx.as_deref(), report);
            proptest::prop_assert!(
                !matches!(again, Verdict::Apply { .. } | Verdict::Anomaly { .. }),
                "{state:?} + {report:?} twice: {again:?}"
            );
        }
    }
}
