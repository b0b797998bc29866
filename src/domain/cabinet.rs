//! Cabinet identity and lifecycle.

use std::fmt;

use super::names::named_enum;

/// A cabinet serial number. It is the MQTT client id, the username and a topic level, so it is
/// restricted to characters that are safe in all three: ASCII letters, digits, `-` and `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sn(String);

pub const SN_MAX_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnError {
    #[error("serial number is empty")]
    Empty,
    #[error("serial number is longer than {SN_MAX_LEN} characters")]
    TooLong,
    #[error("serial number may contain only ASCII letters, digits, '-' and '_'")]
    BadChar,
}

impl Sn {
    pub fn parse(s: &str) -> Result<Sn, SnError> {
        if s.is_empty() {
            return Err(SnError::Empty);
        }
        if s.len() > SN_MAX_LEN {
            return Err(SnError::TooLong);
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(SnError::BadChar);
        }
        Ok(Sn(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A shopper may use a cabinet that is ready and online.
pub fn sellable(status: CabinetStatus, liveness: super::liveness::Liveness) -> bool {
    status == CabinetStatus::Ready && liveness == super::liveness::Liveness::Online
}

named_enum! {
    /// Where a cabinet is in its life. Whether it is reachable is [`super::liveness::Liveness`].
    pub enum CabinetStatus {
        /// Provisioned, perhaps connected, but not yet configured and calibrated: cannot sell.
        Initializing = "initializing",
        /// Configured and calibrated: sells while its liveness is `online`.
        Ready = "ready",
        /// Taken out of service by an operator.
        Disabled = "disabled",
    }
}

named_enum! {
    /// What a cabinet event records (`cabinet_events.kind`).
    pub enum CabinetEventKind {
        /// A login was accepted.
        Login = "login",
        /// Liveness changed (`from_state`, `to_state` are liveness words).
        Liveness = "liveness",
        /// The lifecycle status changed (`from_state`, `to_state` are status words).
        Status = "status",
    }
}

/// The lifecycle status the facts call for: `ready` once the current configuration (version ≥ 1)
/// is acknowledged by the cabinet and every lane (at least one) is calibrated; `initializing`
/// otherwise. `disabled` is an operator's decision and stays.
pub fn readiness(
    current: CabinetStatus,
    config_version: i64,
    config_acked_version: i64,
    lanes: usize,
    calibrated_lanes: usize,
) -> CabinetStatus {
    if current == CabinetStatus::Disabled {
        return current;
    }
    let configured = config_version >= 1 && config_acked_version == config_version;
    if configured && lanes > 0 && calibrated_lanes == lanes {
        CabinetStatus::Ready
    } else {
        CabinetStatus::Initializing
    }
}

/// A cabinet type name given at provisioning (`--type`), e.g. `fridge` or `ambient`.
pub fn validate_type(t: &str) -> Result<(), SnError> {
    Sn::parse(t).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sn_rules() {
        assert!(Sn::parse("CAB-0001_a").is_ok());
        assert_eq!(Sn::parse(""), Err(SnError::Empty));
        assert_eq!(Sn::parse("a/b"), Err(SnError::BadChar));
        assert_eq!(Sn::parse("a+"), Err(SnError::BadChar));
        assert_eq!(Sn::parse("#"), Err(SnError::BadChar));
        assert_eq!(Sn::parse(&"x".repeat(65)), Err(SnError::TooLong));
    }

    proptest! {
        #[test]
        fn a_valid_sn_is_one_topic_level(s in "\\PC{0,80}") {
            if let Ok(sn) = Sn::parse(&s) {
                prop_assert!(!sn.as_str().contains(['/', '+', '#']));
                prop_assert!(sn.as_str().len() <= SN_MAX_LEN);
            }
        }
    }

    #[test]
    fn ready_only_when_configured_and_calibrated() {
        use CabinetStatus::*;
        assert_eq!(readiness(Initializing, 2, 2, 4, 4), Ready);
        assert_eq!(readiness(Ready, 3, 2, 4, 4), Initializing, "a new configuration not yet acked");
        assert_eq!(readiness(Ready, 2, 2, 4, 3), Initializing, "a lane not calibrated");
        assert_eq!(readiness(Initializing, 0, 0, 0, 0), Initializing, "never configured");
        assert_eq!(readiness(Initializing, 1, 1, 0, 0), Initializing, "no lanes");
        assert_eq!(readiness(Disabled, 2, 2, 4, 4), Disabled);
    }

    #[test]
    fn status_round_trip() {
        for s in [CabinetStatus::Initializing, CabinetStatus::Ready, CabinetStatus::Disabled] {
            assert_eq!(CabinetStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(CabinetStatus::parse("online"), None);
    }
}
