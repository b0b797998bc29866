//! Heft's business day: Asia/Shanghai, UTC+8 all year (no daylight saving), as the payment
//! platforms' bills and the operators' reports count days.

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};

/// UTC+8.
pub const SHANGHAI: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(tz) => tz,
    None => panic!("UTC+8 is a valid offset"),
};

/// The business day `at` falls on.
pub fn business_day(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&SHANGHAI).date_naive()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_day_turns_at_midnight_in_shanghai() {
        let before = Utc.with_ymd_and_hms(2026, 12, 3, 15, 59, 59).single().expect("valid");
        let after = Utc.with_ymd_and_hms(2026, 12, 3, 16, 0, 0).single().expect("valid");
        assert_eq!(business_day(before).to_string(), "2026-12-03");
        assert_eq!(business_day(after).to_string(), "2026-12-04");
    }
}
