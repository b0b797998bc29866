//! Commands to cabinets as recorded: a row written before a command is first sent (so its ack
//! always finds it), and updated once, when the command ends. The sending, retrying and timing
//! out is the cabinet actor's.

use rand::Rng;

use crate::db::models::CommandRow;
use crate::db::{self, Db, DbResult, commands};
use crate::domain::command::{CommandStatus, DownKind};

/// The row of a new pending command with a fresh `cmd_id`.
pub fn new_row(sn: &str, kind: DownKind, body: &serde_json::Value, session_id: Option<i64>) -> CommandRow {
    CommandRow {
        id: format!("{:016x}", rand::thread_rng().r#gen::<u64>()),
        sn: sn.to_string(),
        kind,
        session_id,
        body: body.to_string(),
        status: CommandStatus::Pending,
        attempts: 0,
        error: None,
        result: None,
        created_at: db::now(),
        finished_at: None,
    }
}

/// Record a command about to be sent.
pub async fn record(db: &Db, row: CommandRow) -> DbResult<()> {
    db.write(move |c| commands::insert(c, &row)).await
}

/// How a command ended, for its row.
#[derive(Debug, Clone)]
pub struct Finished {
    pub status: CommandStatus,
    pub attempts: i32,
    pub error: Option<String>,
    /// What the cabinet answered (JSON).
    pub result: Option<String>,
}

/// Record how a command ended, once (a command already finished is left alone).
pub async fn finish(db: &Db, id: String, f: Finished) -> DbResult<()> {
    db.write(move |c| {
        commands::finish(c, &id, f.status, f.attempts, f.error.as_deref(), f.result.as_deref(), db::now()).map(|_| ())
    })
    .await
}
