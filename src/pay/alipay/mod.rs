//! Alipay fund-auth pre-authorisation over the Open Platform gateway: freeze (signed `orderStr`
//! for the mini-program) → `fund_auth_freeze` notify → `alipay.trade.pay` with the `auth_no` →
//! `trade_status_sync` notify; unfreeze or cancel otherwise; the daily trade bill.

pub mod bill;
pub mod client;
pub mod sign;

pub use bill::{BillError, BillLine};
pub use client::AlipayFundAuth;
pub use sign::SignError;

/// Now in Beijing time (UTC+8, no DST): Alipay's timestamps and bill dates.
pub fn beijing_now() -> chrono::NaiveDateTime {
    (chrono::Utc::now() + chrono::Duration::hours(8)).naive_utc()
}

/// The `yyyy-MM-dd HH:mm:ss` format of Alipay's timestamps.
pub const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";
