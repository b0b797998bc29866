//! What each consumer has already handled, so a message delivered twice acts once.

use diesel::prelude::*;

use super::schema::consumed_messages;
use super::{AnyConnection, DbResult, now};

/// Record that `consumer` handles `message_id`: true the first time, false when it already did.
/// Call it in the same write transaction as the consumer's effect, and skip the effect on false;
/// a rollback of the effect then also forgets the record.
pub fn once(conn: &mut AnyConnection, consumer: &str, message_id: &str) -> DbResult<bool> {
    let row = (
        consumed_messages::consumer.eq(consumer),
        consumed_messages::message_id.eq(message_id),
        consumed_messages::consumed_at.eq(now()),
    );
    // ON CONFLICT DO NOTHING rather than catching the unique violation: on PostgreSQL a failed
    // statement aborts the caller's whole transaction.
    let inserted = crate::on_backend!(conn, |c| {
        diesel::insert_into(consumed_messages::table).values(row).on_conflict_do_nothing().execute(c)?
    });
    Ok(inserted == 1)
}
