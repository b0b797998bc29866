//! The embedded transport: the relay hands each due message to this node's handlers; a row is
//! done when they all succeeded.

use futures_util::StreamExt;

use super::{Context, Message};
use crate::db::outbox::OutboxRow;

/// Messages of one batch handled at once; handlers mostly wait on the database.
const CONCURRENCY: usize = 8;

/// Handle each row; the outcome per row (`Err` carries the reason, counted as a failed attempt).
pub async fn handle_batch(ctx: &Context, rows: Vec<OutboxRow>) -> Vec<(OutboxRow, Result<(), String>)> {
    futures_util::stream::iter(rows)
        .map(|row| async move {
            let outcome = match Message::from_row(&row) {
                Ok(msg) => ctx.consumers.dispatch(&msg).await.map_err(|e| e.to_string()),
                Err(e) => Err(format!("payload is not JSON: {e}")),
            };
            (row, outcome)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await
}
