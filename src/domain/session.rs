//! Sessions: what holds a cabinet. A cabinet has at most one session at a time (the device lock).

/// What a session is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionKind {
    /// Delivering a saved configuration to the cabinet.
    Config,
    /// Delivering shelf labels (names and prices) to the cabinet.
    PriceChange,
    /// An operator calibrating one door's scales.
    Calibration,
    /// A shopper's order: from the scan to the settlement.
    Purchase,
    /// A restocker filling lanes; what they added is measured by weight.
    Restock,
    /// A maintainer at an open door: no sale; any weight change is recorded and flagged.
    Maintenance,
}

impl SessionKind {
    pub const ALL: [SessionKind; 6] = [
        SessionKind::Config,
        SessionKind::PriceChange,
        SessionKind::Calibration,
        SessionKind::Purchase,
        SessionKind::Restock,
        SessionKind::Maintenance,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Config => "config",
            SessionKind::PriceChange => "price_change",
            SessionKind::Calibration => "calibration",
            SessionKind::Purchase => "purchase",
            SessionKind::Restock => "restock",
            SessionKind::Maintenance => "maintenance",
        }
    }

    pub fn parse(s: &str) -> Option<SessionKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Sessions that only deliver something and hold no physical state: when the node that ran
    /// one stopped, the next actor may close it and deliver again.
    pub fn is_delivery(self) -> bool {
        matches!(self, SessionKind::Config | SessionKind::PriceChange)
    }
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Failed,
    Aborted,
    /// Left open by an actor that is gone (node stopped or crashed).
    Abandoned,
    /// No step for `calibration.idle_timeout_s`.
    Expired,
    /// A purchase that ended before the door opened.
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Failed => "failed",
            Outcome::Aborted => "aborted",
            Outcome::Abandoned => "abandoned",
            Outcome::Expired => "expired",
            Outcome::Cancelled => "cancelled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for k in SessionKind::ALL {
            assert_eq!(SessionKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(SessionKind::parse("shopping"), None);
    }
}
