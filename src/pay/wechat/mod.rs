//! WeChat Pay Score over API v3: request signing and response/callback verification (`sign`),
//! the trade bill (`bill`), and the [`crate::pay::PaymentGateway`] adapter (`client`).

pub mod bill;
pub mod client;
pub mod sign;

pub use client::WechatPayScore;
