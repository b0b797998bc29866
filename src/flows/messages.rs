//! Messages given up on (`dead` in the outbox), as operators handle them.

use super::Effects;
use crate::db::outbox::{self, OutboxRow};
use crate::db::{Db, DbResult};

/// A dead message back to pending, due now, its attempts counted from zero; the row after it, or
/// `None` when there is no dead message with this id.
pub async fn retry_dead(db: &Db, message_id: String) -> DbResult<(Option<OutboxRow>, Effects)> {
    db.write(move |c| match outbox::requeue(c, &message_id)? {
        true => Ok((outbox::find(c, &message_id)?, Effects::wake())),
        false => Ok((None, Effects::none())),
    })
    .await
}
