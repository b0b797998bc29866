//! The embedded transport: the relay hands each due message to this node's handlers; a row is
//! done when they all succeeded.

use futures_util::StreamExt;

use super::{Context, HandlerError, Message};
use crate::db::outbox::OutboxRow;

/// Messages of one batch handled at once; handlers mostly wait on the database.
const CONCURRENCY: usize = 8;

/// How handling one row went.
pub enum Handled {
    Ok,
    /// The handler failed: counts as an attempt.
    Failed(String),
    /// Our database failed under the handler: says nothing about the message, not counted.
    DbDown(String),
}

/// Handle each row.
pub async fn handle_batch(ctx: &Context, rows: Vec<OutboxRow>) -> Vec<(OutboxRow, Handled)> {
    futures_util::stream::iter(rows)
        .map(|row| async move {
            let msg = Message::from_row(&row);
            let outcome = match ctx.consumers.dispatch_within(&msg, ctx.handler_limit()).await {
                Ok(()) => Handled::Ok,
                Err(e @ HandlerError::Db(_)) => Handled::DbDown(e.to_string()),
                Err(e) => Handled::Failed(e.to_string()),
            };
            (row, outcome)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await
}
