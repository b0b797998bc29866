//! The one rule for every message that moves or holds money (`payment.capture`,
//! `payment.release`, `payment.refund`) when the platform did not do what was asked.
//!
//! Money is never given up on because a platform is away: a platform that cannot be reached, or
//! that answers 5xx, is tried again by the message's own backoff and then in later rounds (the
//! capture's `orders.capture_retry_s`, doubling to `capture_retry_max_s`) for as long as it
//! takes. A request the platform cannot read (a key, a signature, a parameter: our side) is
//! followed the same way, with an alert so a person mends the cause. Only an answer the platform
//! gives for good ends the message: the order or hold does not exist ([`Next::Gone`]), or it is
//! refused ([`Next::End`]); both end in a state an operator sees, with an alert naming the order.

use serde::{Deserialize, Serialize};

/// How one attempt failed, as far as the rule cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Failure {
    /// Not reached, timed out, 5xx, rate-limited, "system busy": the outcome is unknown.
    Unreachable,
    /// The platform does not know the order, the pre-authorisation or the trade (WeChat
    /// `ORDER_NOT_EXIST`, Alipay `AUTH_ORDER_NOT_EXIST` / `ACQ.TRADE_NOT_EXIST`…).
    NotFound,
    /// Refused for good, for a reason the platform states (funds, the order's state, a limit).
    Refused,
    /// Our request or the platform's answer is wrong: a signature, a key, a parameter.
    Broken,
}

/// What the message does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Next {
    /// Again, by the message's own backoff.
    Retry,
    /// The message's attempts are spent: a later round, however long the outage.
    LaterRound,
    /// As [`LaterRound`](Next::LaterRound), and an alert naming the order: a person must mend
    /// our side, and the money waits for them rather than being dropped.
    AlertAndLaterRound,
    /// The order or hold is gone on the platform: the flow's gone path (a capture: owed, with
    /// `preauth_gone`; a release: nothing is held; a refund: failed, with its alert).
    Gone,
    /// Refused for good: the flow ends it in a state an operator sees, with an alert.
    End,
}

/// The rule. `last_attempt`: the message's own backoff runs out with this attempt.
pub fn next(failure: Failure, last_attempt: bool) -> Next {
    match (failure, last_attempt) {
        (Failure::NotFound, _) => Next::Gone,
        (Failure::Refused, _) => Next::End,
        (Failure::Unreachable | Failure::Broken, false) => Next::Retry,
        (Failure::Unreachable, true) => Next::LaterRound,
        (Failure::Broken, true) => Next::AlertAndLaterRound,
    }
}

/// Whether a platform's error code says that the thing asked about does not exist: WeChat
/// `ORDER_NOT_EXIST`, `RESOURCE_NOT_EXISTS` or a bare 404 (`HTTP_404`); Alipay
/// `AUTH_ORDER_NOT_EXIST`, `AUTH_OPERATION_NOT_EXIST`, `ACQ.TRADE_NOT_EXIST`, `ORDER_NOT_EXIST`.
pub fn is_not_found_code(code: &str) -> bool {
    code.ends_with("NOT_EXIST") || code.ends_with("NOT_EXISTS") || code == "HTTP_404"
}

/// The wait before round `round + 1` of a money message: `base_s` doubling each round up to
/// `max_s` (a cap below the base is the base).
pub fn retry_delay_s(base_s: u64, max_s: u64, round: u32) -> u64 {
    base_s.saturating_mul(1u64 << round.min(20)).min(max_s.max(base_s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Failure; 4] = [Failure::Unreachable, Failure::NotFound, Failure::Refused, Failure::Broken];

    #[test]
    fn an_outage_is_retried_then_rounds_never_end() {
        assert_eq!(next(Failure::Unreachable, false), Next::Retry);
        assert_eq!(next(Failure::Unreachable, true), Next::LaterRound);
        assert_eq!(next(Failure::Broken, false), Next::Retry);
        assert_eq!(next(Failure::Broken, true), Next::AlertAndLaterRound);
    }

    #[test]
    fn only_a_platforms_own_answer_ends_a_message() {
        for last in [false, true] {
            assert_eq!(next(Failure::NotFound, last), Next::Gone);
            assert_eq!(next(Failure::Refused, last), Next::End);
        }
    }

    #[test]
    fn not_found_codes_of_both_platforms() {
        for code in
            ["ORDER_NOT_EXIST", "RESOURCE_NOT_EXISTS", "HTTP_404", "AUTH_ORDER_NOT_EXIST", "ACQ.TRADE_NOT_EXIST"]
        {
            assert!(is_not_found_code(code), "{code}");
        }
        for code in ["RULE_LIMIT", "NO_AUTH", "ACQ.SYSTEM_ERROR", "INVALID_ORDER_STATE", "ORDER_DONE", "HTTP_500"] {
            assert!(!is_not_found_code(code), "{code}");
        }
    }

    #[test]
    fn rounds_double_up_to_the_cap() {
        let d: Vec<u64> = (0..8).map(|r| retry_delay_s(300, 3600, r)).collect();
        assert_eq!(d, [300, 600, 1200, 2400, 3600, 3600, 3600, 3600]);
        assert_eq!(retry_delay_s(300, 100, 3), 300, "a cap below the base is the base");
        assert_eq!(retry_delay_s(u64::MAX, u64::MAX, 40), u64::MAX, "no overflow");
    }

    proptest! {
        /// Whatever happens, a message that is not ended by the platform's own word is never
        /// left without a next attempt.
        #[test]
        fn nothing_but_the_platforms_word_stops_the_money(i in 0usize..4, last: bool) {
            let f = ALL[i];
            let n = next(f, last);
            let ends = matches!(n, Next::Gone | Next::End);
            prop_assert_eq!(ends, matches!(f, Failure::NotFound | Failure::Refused));
        }
    }
}
