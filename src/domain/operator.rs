//! Operator accounts: roles, and what a username and a password must look like.

use super::names::named_enum;
use super::validation::{FieldError, FieldErrors};

pub const USERNAME_MIN_CHARS: usize = 3;
pub const USERNAME_MAX_CHARS: usize = 32;
/// Longest password accepted. Argon2 takes any length, but a cap keeps a request from making the
/// server hash megabytes.
pub const PASSWORD_MAX_CHARS: usize = 128;
/// The lowest `auth.min_password_len` the configuration may set.
pub const PASSWORD_MIN_FLOOR: usize = 8;

named_enum! {
    /// What an operator may do. Which routes each role may call is stated on the route.
    #[derive(PartialOrd, Ord)]
    pub enum Role {
        /// Everything, including operator accounts.
        Admin = "admin",
        /// Runs the fleet: catalogue, cabinet configuration, calibration.
        Operator = "operator",
        /// Refills lanes.
        Restocker = "restocker",
        /// Repairs and calibrates cabinets.
        Maintainer = "maintainer",
    }
}

/// Usernames are compared without case, so `Admin` cannot pose as `admin`: they are stored and
/// looked up lower-cased.
pub fn normalize_username(raw: &str) -> String {
    raw.to_ascii_lowercase()
}

/// 3–32 ASCII letters, digits, `.`, `_` or `-`.
pub fn validate_username(username: &str) -> Result<(), Vec<FieldError>> {
    let mut errors = FieldErrors::default();
    if username.is_empty() {
        errors.push("username", "required", "username is required");
    } else if !username.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        errors.push("username", "bad_format", "username may contain only ASCII letters, digits, '.', '_' and '-'");
    } else if !(USERNAME_MIN_CHARS..=USERNAME_MAX_CHARS).contains(&username.len()) {
        errors.push(
            "username",
            "bad_length",
            format!("username must be {USERNAME_MIN_CHARS} to {USERNAME_MAX_CHARS} characters"),
        );
    }
    errors.finish()
}

/// At least `min_chars` (from `auth.min_password_len`) and at most [`PASSWORD_MAX_CHARS`]
/// characters. Length is what makes a password strong; no composition rules.
pub fn validate_password(password: &str, min_chars: usize) -> Result<(), Vec<FieldError>> {
    let mut errors = FieldErrors::default();
    let n = password.chars().count();
    if n < min_chars {
        errors.push("password", "too_short", format!("password must be at least {min_chars} characters"));
    } else if n > PASSWORD_MAX_CHARS {
        errors.push("password", "too_long", format!("password must be at most {PASSWORD_MAX_CHARS} characters"));
    }
    errors.finish()
}

/// A role given as text in a request body: `unknown` names the choices.
pub fn parse_role(field: &str, raw: &str) -> Result<Role, FieldError> {
    Role::parse(raw).ok_or_else(|| {
        let choices: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        FieldError::new(field, "unknown", format!("role must be one of {}", choices.join(", ")))
    })
}

/// Why an admin's change to an operator account is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChangeRefusal {
    /// The acting admin was disabled or demoted while the request ran.
    #[error("your account is no longer an active admin")]
    NoLongerAdmin,
    /// The change would lock the acting admin out.
    #[error("an admin cannot demote or disable their own account; ask another admin")]
    SelfLockout,
}

/// An operator account as a change finds it, and the change asked for (`None`: unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountChange {
    pub id: i64,
    pub role: Role,
    pub active: bool,
    pub new_role: Option<Role>,
    pub new_active: Option<bool>,
}

/// Whether admin `actor` may make `change`, given the active admins as they are now. An admin
/// never demotes or disables themself and must still be an active admin: together these keep at
/// least one active admin, even when two admins demote each other at once (the caller reads the
/// admins under a lock, so the second change sees the first).
pub fn check_change(actor: i64, active_admins: &[i64], change: &AccountChange) -> Result<(), ChangeRefusal> {
    if !active_admins.contains(&actor) {
        return Err(ChangeRefusal::NoLongerAdmin);
    }
    let stays_admin =
        change.new_role.unwrap_or(change.role) == Role::Admin && change.new_active.unwrap_or(change.active);
    if change.id == actor && !stays_admin {
        return Err(ChangeRefusal::SelfLockout);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(r: Result<(), Vec<FieldError>>) -> Vec<&'static str> {
        r.err().unwrap_or_default().into_iter().map(|e| e.code).collect()
    }

    #[test]
    fn roles_round_trip() {
        for &r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_value(r).expect("serializes"), serde_json::json!(r.as_str()));
            assert_eq!(serde_json::from_value::<Role>(serde_json::json!(r.as_str())).expect("parses"), r);
        }
        assert_eq!(Role::parse("Admin"), None);
        assert_eq!(Role::parse("root"), None);
        assert!(serde_json::from_value::<Role>(serde_json::json!("root")).is_err());
    }

    #[test]
    fn username_rules() {
        for ok in ["abc", "a.b_c-d", "Z9x", &"x".repeat(32)] {
            assert_eq!(codes(validate_username(ok)), Vec::<&str>::new(), "{ok}");
        }
        assert_eq!(codes(validate_username("")), ["required"]);
        assert_eq!(codes(validate_username("ab")), ["bad_length"]);
        assert_eq!(codes(validate_username(&"x".repeat(33))), ["bad_length"]);
        for bad in ["a b c", "名字abc", "abc@x", "abc/", "tab\tx"] {
            assert_eq!(codes(validate_username(bad)), ["bad_format"], "{bad:?}");
        }
    }

    #[test]
    fn usernames_compare_without_case() {
        assert_eq!(normalize_username("Alice.W"), "alice.w");
    }

    #[test]
    fn password_rules() {
        assert_eq!(codes(validate_password("123456789", 10)), ["too_short"]);
        assert_eq!(codes(validate_password("1234567890", 10)), Vec::<&str>::new());
        // Characters, not bytes: ten CJK characters are ten.
        assert_eq!(codes(validate_password(&"密".repeat(10), 10)), Vec::<&str>::new());
        assert_eq!(codes(validate_password(&"x".repeat(128), 10)), Vec::<&str>::new());
        assert_eq!(codes(validate_password(&"x".repeat(129), 10)), ["too_long"]);
        assert_eq!(codes(validate_password("", 10)), ["too_short"]);
    }

    #[test]
    fn unknown_role_names_the_choices() {
        let e = parse_role("role", "root").expect_err("unknown");
        assert_eq!((e.field.as_str(), e.code), ("role", "unknown"));
        assert!(e.message.contains("admin, operator, restocker, maintainer"), "{}", e.message);
        assert_eq!(parse_role("role", "restocker").expect("known"), Role::Restocker);
    }

    #[test]
    fn an_admin_cannot_lock_themself_out() {
        let me = |new_role, new_active| AccountChange { id: 1, role: Role::Admin, active: true, new_role, new_active };
        assert_eq!(check_change(1, &[1, 2], &me(Some(Role::Operator), None)), Err(ChangeRefusal::SelfLockout));
        assert_eq!(check_change(1, &[1, 2], &me(None, Some(false))), Err(ChangeRefusal::SelfLockout));
        assert_eq!(check_change(1, &[1, 2], &me(Some(Role::Admin), Some(true))), Ok(()));
        let other = AccountChange { id: 2, ..me(Some(Role::Operator), Some(false)) };
        assert_eq!(check_change(1, &[1, 2], &other), Ok(()), "another admin may be demoted");
        assert_eq!(check_change(1, &[2], &other), Err(ChangeRefusal::NoLongerAdmin));
    }
}
