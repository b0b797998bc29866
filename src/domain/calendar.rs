//! Heft's business day: Asia/Shanghai, UTC+8 all year (no daylight saving), as the payment
//! platforms' bills and the operators' reports count days.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, Utc};

/// UTC+8.
pub const SHANGHAI: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(tz) => tz,
    None => panic!("UTC+8 is a valid offset"),
};

/// The business day `at` falls on.
pub fn business_day(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&SHANGHAI).date_naive()
}

/// When a business day starts and the next one does, as UTC (how times are stored).
pub fn day_bounds(day: NaiveDate) -> (NaiveDateTime, NaiveDateTime) {
    let start = |d: NaiveDate| d.and_time(chrono::NaiveTime::MIN) - chrono::Duration::hours(8);
    (start(day), start(day + chrono::Duration::days(1)))
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
        let (from, to) = day_bounds(business_day(after));
        assert_eq!((from, to), (after.naive_utc(), after.naive_utc() + chrono::Duration::days(1)));
        assert!(before.naive_utc() < from, "23:59:59 is the day before");
    }
}
