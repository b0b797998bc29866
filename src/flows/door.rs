//! What a purchase's door does to its order, as the cabinet's actor sees it: opened (with the
//! weights it started from), closed, and the notices the shopper is given meanwhile. Each is
//! idempotent: written again when in doubt.

use super::order;
use crate::db::{self, Db, DbResult, write_tx};
use crate::domain::texts::{self, NoticeCode};
use crate::domain::units::Fen;

/// The door opened: the order is `door_open`, with the weights it started from (lane → grams,
/// JSON), and a notice when lanes weighed differently at the open than at rest.
pub async fn opened(db: &Db, order_id: i64, before_g: String, differ: Vec<String>) -> DbResult<()> {
    db.write(move |c| {
        order::door_opened(c, order_id, Some(&before_g), db::now())?;
        if !differ.is_empty() {
            let text = texts::before_weights_differ(&differ);
            order::add_notice(c, order_id, NoticeCode::BeforeWeightsDiffer, &text, db::now())?;
        }
        Ok(())
    })
    .await
}

/// The door closed: the order is `settling`. `unseen_open`: its open was never heard (a lost
/// frame, a dropped connection), and is recorded first, with the weights taken at the
/// authorisation.
pub async fn closed(db: &Db, order_id: i64, unseen_open: Option<String>) -> DbResult<()> {
    db.write(move |c| {
        write_tx(c, |c| {
            if let Some(before) = unseen_open {
                order::door_opened(c, order_id, Some(&before), db::now())?;
            }
            order::door_closed(c, order_id, db::now())
        })
        .map(|_| ())
    })
    .await
}

/// The door is still open past `orders.door_open_alert_s`: the shopper is asked to close it.
pub async fn open_too_long(db: &Db, order_id: i64) -> DbResult<()> {
    db.write(move |c| order::add_notice(c, order_id, NoticeCode::DoorOpenTooLong, texts::DOOR_OPEN_TOO_LONG, db::now()))
        .await
}

/// While the door is open, the basket looks dearer than the pre-authorisation covers by
/// `excess_fen`: the shopper is told the excess will be owed.
pub async fn over_cap(db: &Db, order_id: i64, excess_fen: Fen) -> DbResult<()> {
    db.write(move |c| order::add_notice(c, order_id, NoticeCode::OverCap, &texts::over_cap(excess_fen), db::now()))
        .await
}
