//! Alerts: raised by the watchdog and the cabinet actors, read by operators.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::{Alert, NewAlert};
use super::schema::alerts;
use super::{AnyConnection, DbResult, write_tx};
use crate::domain::alert::{AlertCode, AlertSpec};

/// Raise an alert, or count another occurrence of the same open one. Returns its id.
pub fn raise(conn: &mut AnyConnection, spec: &AlertSpec, occurrences: i64, at: NaiveDateTime) -> DbResult<i64> {
    match raise_once(conn, spec, occurrences, at) {
        // Another node opened the same alert between our read and our insert: count on it.
        Err(e) if e.is_unique_violation() => raise_once(conn, spec, occurrences, at),
        other => other,
    }
}

fn raise_once(conn: &mut AnyConnection, spec: &AlertSpec, occurrences: i64, at: NaiveDateTime) -> DbResult<i64> {
    write_tx(conn, |c| {
        let open = open_id(c, spec.code, spec.sn.as_deref(), spec.subject.as_deref())?;
        if let Some(id) = open {
            diesel::update(alerts::table.find(id))
                .set((alerts::occurrences.eq(alerts::occurrences + occurrences), alerts::last_seen_at.eq(at)))
                .execute(c)?;
            return Ok(id);
        }
        diesel::insert_into(alerts::table)
            .values(NewAlert {
                audience: spec.audience,
                severity: spec.severity,
                code: spec.code,
                sn: spec.sn.clone(),
                subject: spec.subject.clone(),
                message: spec.message.clone(),
                detail: spec.detail.clone(),
                occurrences,
                created_at: at,
                last_seen_at: at,
            })
            .execute(c)?;
        Ok(open_id(c, spec.code, spec.sn.as_deref(), spec.subject.as_deref())?.unwrap_or_default())
    })
}

fn open_id(c: &mut AnyConnection, code: AlertCode, sn: Option<&str>, subject: Option<&str>) -> DbResult<Option<i64>> {
    let mut q = alerts::table
        .select(alerts::id)
        .filter(alerts::code.eq(code))
        .filter(alerts::resolved_at.is_null())
        .into_boxed();
    q = match sn {
        Some(sn) => q.filter(alerts::sn.eq(sn.to_string())),
        None => q.filter(alerts::sn.is_null()),
    };
    q = match subject {
        Some(subject) => q.filter(alerts::subject.eq(subject.to_string())),
        None => q.filter(alerts::subject.is_null()),
    };
    Ok(q.order(alerts::id.desc()).first::<i64>(c).optional()?)
}

/// Resolve the open alert with this code and cabinet (and no subject), if any. Returns how many
/// were resolved.
pub fn resolve(conn: &mut AnyConnection, code: AlertCode, sn: Option<&str>, at: NaiveDateTime) -> DbResult<usize> {
    resolve_about(conn, code, sn, None, at)
}

/// Resolve the open alert with this code, cabinet and subject, if any.
pub fn resolve_about(
    conn: &mut AnyConnection,
    code: AlertCode,
    sn: Option<&str>,
    subject: Option<&str>,
    at: NaiveDateTime,
) -> DbResult<usize> {
    let Some(id) = open_id(conn, code, sn, subject)? else {
        return Ok(0);
    };
    Ok(diesel::update(alerts::table.find(id)).set(alerts::resolved_at.eq(Some(at))).execute(conn)?)
}

#[derive(Debug, Default, Clone)]
pub struct AlertFilter {
    pub code: Option<AlertCode>,
    pub sn: Option<String>,
    pub open_only: bool,
}

/// Newest first.
pub fn list(conn: &mut AnyConnection, f: &AlertFilter, limit: i64) -> DbResult<Vec<Alert>> {
    let mut q = alerts::table.select(Alert::as_select()).into_boxed();
    if let Some(code) = f.code {
        q = q.filter(alerts::code.eq(code));
    }
    if let Some(sn) = &f.sn {
        q = q.filter(alerts::sn.eq(sn.clone()));
    }
    if f.open_only {
        q = q.filter(alerts::resolved_at.is_null());
    }
    Ok(q.order(alerts::id.desc()).limit(limit).load(conn)?)
}
