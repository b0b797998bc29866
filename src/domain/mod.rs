//! Pure rules, no I/O: nothing here imports from `web`, `db`, `actors` or `device`.

pub mod account;
pub mod alert;
pub mod cabinet;
pub mod calibration;
pub mod command;
pub mod door;
pub mod layout;
pub mod live;
pub mod liveness;
pub mod money;
pub mod names;
pub mod operator;
pub mod order;
pub mod outbox;
pub mod payment;
pub mod product;
pub mod restock;
pub mod review;
pub mod session;
pub mod settlement;
pub mod stock;
pub mod temperature;
pub mod texts;
pub mod units;
pub mod validation;
pub mod weight;
