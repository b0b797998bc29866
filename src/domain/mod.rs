//! Pure rules, no I/O: nothing here imports from `web`, `db`, `actors` or `device`.

pub mod alert;
pub mod cabinet;
pub mod liveness;
