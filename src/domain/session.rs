//! Sessions: what holds a cabinet. A cabinet has at most one session at a time (the device lock).

use super::names::named_enum;

named_enum! {
    /// What a session is for.
    pub enum SessionKind {
        /// Delivering a saved configuration to the cabinet.
        Config = "config",
        /// Delivering shelf labels (names and prices) to the cabinet.
        PriceChange = "price_change",
        /// An operator calibrating one door's scales.
        Calibration = "calibration",
        /// A shopper's order: from the scan to the settlement.
        Purchase = "purchase",
        /// A restocker filling lanes; what they added is measured by weight.
        Restock = "restock",
        /// A maintainer at an open door: no sale; any weight change is recorded and flagged.
        Maintenance = "maintenance",
    }
}

impl SessionKind {
    /// Sessions that only deliver something and hold no physical state: when the node that ran
    /// one stopped, the next actor may close it and deliver again.
    pub fn is_delivery(self) -> bool {
        matches!(self, SessionKind::Config | SessionKind::PriceChange)
    }
}

named_enum! {
    /// How a session ended.
    pub enum Outcome {
        Done = "done",
        Failed = "failed",
        Aborted = "aborted",
        /// Left open by an actor that is gone (node stopped or crashed).
        Abandoned = "abandoned",
        /// No step for `calibration.idle_timeout_s`.
        Expired = "expired",
        /// A purchase that ended before the door opened.
        Cancelled = "cancelled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for &k in SessionKind::ALL {
            assert_eq!(SessionKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(SessionKind::parse("shopping"), None);
    }
}
