//! Alerts for people (`domain::alert` says what each one says). An alert raised while one with the
//! same code and cabinet is open counts another occurrence of it; resolving closes it.

use crate::db::{self, AnyConnection, Db, DbResult, alerts};
use crate::domain::alert::{AlertCode, AlertSpec};

/// Raise an alert inside the caller's transaction.
pub fn raise_in(conn: &mut AnyConnection, spec: &AlertSpec) -> DbResult<i64> {
    alerts::raise(conn, spec, 1, db::now())
}

/// Resolve the open alert with this code and cabinet, inside the caller's transaction.
pub fn resolve_in(conn: &mut AnyConnection, code: AlertCode, sn: Option<&str>) -> DbResult<usize> {
    alerts::resolve(conn, code, sn, db::now())
}

/// Raise an alert counting `occurrences` at once (those suppressed since the last one), in its own
/// transaction.
pub async fn raise(db: &Db, spec: AlertSpec, occurrences: i64) -> DbResult<()> {
    db.write(move |c| alerts::raise(c, &spec, occurrences, db::now()).map(|_| ())).await
}

/// Resolve the open alert with this code and cabinet, in its own transaction.
pub async fn resolve(db: &Db, code: AlertCode, sn: Option<String>) -> DbResult<()> {
    db.write(move |c| alerts::resolve(c, code, sn.as_deref(), db::now()).map(|_| ())).await
}
