//! Alerts for people (`domain::alert` says what each one says). An alert raised while one with the
//! same code and cabinet is open counts another occurrence of it.

use crate::db::{self, AnyConnection, Db, DbResult, alerts};
use crate::domain::alert::AlertSpec;

/// Raise an alert inside the caller's transaction.
pub fn raise_in(conn: &mut AnyConnection, spec: &AlertSpec) -> DbResult<i64> {
    alerts::raise(conn, spec, 1, db::now())
}

/// Raise an alert counting `occurrences` at once (those suppressed since the last one), in its own
/// transaction. An alert that cannot be stored is logged with its code, cabinet and message:
/// there is nobody else to tell.
pub async fn raise_counted(db: &Db, spec: AlertSpec, occurrences: i64) {
    let (code, sn, message) = (spec.code.clone(), spec.sn.clone(), spec.message.clone());
    if let Err(e) = db.write(move |c| alerts::raise(c, &spec, occurrences, db::now())).await {
        tracing::error!(%code, sn = ?sn, %message, error = %e, "alert not stored");
    }
}

/// [`raise_counted`], once.
pub async fn raise(db: &Db, spec: AlertSpec) {
    raise_counted(db, spec, 1).await
}

/// The open alert with this code and cabinet is over. Logged, like [`raise`], when it cannot be
/// stored: it stays open for a person to close.
pub async fn resolve(db: &Db, code: &'static str, sn: Option<String>) {
    let who = sn.clone();
    if let Err(e) = db.write(move |c| alerts::resolve(c, code, sn.as_deref(), db::now())).await {
        tracing::error!(%code, sn = ?who, error = %e, "alert not resolved");
    }
}

/// Resolve the open alert with this code and cabinet, inside the caller's transaction.
pub fn resolve_in(conn: &mut AnyConnection, code: &str, sn: Option<&str>) -> DbResult<usize> {
    alerts::resolve(conn, code, sn, db::now())
}
