//! Heft: the backend for weight-sensing smart vending cabinets. See `README.md` and `docs/architecture.md`.

pub mod actors;
pub mod admin;
pub mod app;
pub mod cache;
pub mod config;
pub mod db;
pub mod device;
pub mod domain;
pub mod flows;
pub mod metrics;
pub mod mq;
pub mod pay;
pub mod provision;
pub mod secrets;
pub mod sim;
pub mod web;
