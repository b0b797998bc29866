//! Commands sent to cabinets and how each ended. A row is written when the command is first
//! sent and updated once, when it reaches a terminal state.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::CommandRow;
use super::schema::commands;
use super::{AnyConnection, DbResult};
use crate::domain::command::CommandStatus;

pub fn insert(conn: &mut AnyConnection, row: &CommandRow) -> DbResult<()> {
    diesel::insert_into(commands::table).values(row).execute(conn)?;
    Ok(())
}

/// Record the terminal state of a pending command; a command already finished is left alone.
pub fn finish(
    conn: &mut AnyConnection,
    id: &str,
    status: CommandStatus,
    attempts: i32,
    error: Option<&str>,
    result: Option<&str>,
    at: NaiveDateTime,
) -> DbResult<bool> {
    let n = diesel::update(commands::table.find(id).filter(commands::finished_at.is_null()))
        .set((
            commands::status.eq(status),
            commands::attempts.eq(attempts),
            commands::error.eq(error.map(str::to_string)),
            commands::result.eq(result.map(str::to_string)),
            commands::finished_at.eq(Some(at)),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

pub fn find(conn: &mut AnyConnection, id: &str) -> DbResult<Option<CommandRow>> {
    Ok(commands::table.find(id).select(CommandRow::as_select()).first(conn).optional()?)
}

/// Newest first.
pub fn list(conn: &mut AnyConnection, sn: &str, limit: i64) -> DbResult<Vec<CommandRow>> {
    Ok(commands::table
        .select(CommandRow::as_select())
        .filter(commands::sn.eq(sn))
        .order((commands::created_at.desc(), commands::id.desc()))
        .limit(limit)
        .load(conn)?)
}

/// Whether any command of this cabinet is still pending.
pub fn has_pending(conn: &mut AnyConnection, sn: &str) -> DbResult<bool> {
    let n: i64 =
        commands::table.filter(commands::sn.eq(sn)).filter(commands::finished_at.is_null()).count().get_result(conn)?;
    Ok(n > 0)
}

/// Commands left pending by a node that stopped or crashed: they can never be acked now.
pub fn abandon_pending(conn: &mut AnyConnection, sn: &str, at: NaiveDateTime) -> DbResult<usize> {
    Ok(diesel::update(commands::table.filter(commands::sn.eq(sn)).filter(commands::finished_at.is_null()))
        .set((
            commands::status.eq(CommandStatus::TimedOut),
            commands::error.eq(Some("abandoned: the actor that sent it stopped")),
            commands::finished_at.eq(Some(at)),
        ))
        .execute(conn)?)
}
