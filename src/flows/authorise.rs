//! From the scan to the open door: the shopper's confirmation (learnt from a callback, or from a
//! query while the shopper waits, `order.confirm_check`, or at the auth timeout), and the ways
//! an order ends before its door opens — the
//! shopper did not confirm in time (`order.auth_timeout`), the door never opened
//! (`door.open_check`), or the shopper cancelled.

use super::order::{self, Moved, OpenTimes};
use super::{Ctx, Effects, FlowError, secs};
use crate::db::models::Order;
use crate::db::{self, Db, orders, payments, write_tx};
use crate::domain::door::Opening;
use crate::domain::order::{OrderEvent, OrderStatus};
use crate::domain::payment::PaymentState;
use crate::mq::topics::{OpenCheck, Payload};
use crate::pay::PlatformState;

async fn load(db: &Db, id: i64) -> Result<Order, FlowError> {
    Ok(db.run(move |c| orders::existing(c, id)).await?)
}

/// `order.auth_timeout`: a `created` order the shopper has not authorised in time. The platform
/// is asked first — a confirmation whose callback is late is recorded (and, learnt this late,
/// released rather than opening the door) — and otherwise the order is cancelled and anything
/// held released.
pub async fn auth_timeout(ctx: &Ctx, id: i64) -> Result<Effects, FlowError> {
    let order = load(&ctx.db, id).await?;
    if order.status != OrderStatus::Created {
        return Ok(Effects::none());
    }
    let moved = match ctx.payments.get(order.channel).query(&order.out_order_no, None).await {
        Ok(PlatformState::Authorized { platform_order_id, payer_id }) => {
            tracing::info!(order = id, "authorised without a callback");
            authorised(ctx, id, platform_order_id, payer_id).await?
        }
        // Not confirmed, or the platform cannot say: cancel. A confirmation that comes after this
        // finds the payment cancelled and is released (`payment.release`).
        other => {
            if let Err(e) = &other {
                tracing::warn!(order = id, error = %e, "platform not asked at the auth timeout; cancelling");
            }
            ctx.db.write(move |c| order::cancel(c, id, OrderEvent::AuthTimeout, "auth_timeout", db::now())).await?
        }
    };
    Ok(moved.effects())
}

/// `order.confirm_check`: while the shopper waits on the confirm page, ask the platform whether
/// they confirmed, so that a callback lost on the way opens the door seconds later, not at the
/// auth timeout. Anything but a confirmation leaves the order as it is: a later check, the
/// callback or the auth timeout decides.
pub async fn confirm_check(ctx: &Ctx, id: i64) -> Result<Effects, FlowError> {
    let order = load(&ctx.db, id).await?;
    if order.status != OrderStatus::Created {
        return Ok(Effects::none());
    }
    match ctx.payments.get(order.channel).query(&order.out_order_no, None).await {
        Ok(PlatformState::Authorized { platform_order_id, payer_id }) => {
            tracing::info!(order = id, "confirmation found by asking; its callback has not come");
            Ok(authorised(ctx, id, platform_order_id, payer_id).await?.effects())
        }
        Ok(_) => Ok(Effects::none()),
        Err(e) => {
            tracing::info!(order = id, error = %e, "platform not asked at a confirm check");
            Ok(Effects::none())
        }
    }
}

/// The platform says the shopper confirmed: the payment `authorized` with its platform ids, and
/// the order authorised (`order::authorize`, which opens nothing when learnt too late).
async fn authorised(
    ctx: &Ctx,
    id: i64,
    platform_order_id: Option<String>,
    payer_id: Option<String>,
) -> Result<Moved, FlowError> {
    let open = OpenTimes::of(&ctx.config.orders);
    Ok(ctx
        .db
        .write(move |c| {
            write_tx(c, |c| {
                let o = orders::lock_existing(c, id)?;
                let from = [PaymentState::Created];
                if payments::set_state(c, &o.out_order_no, &from, PaymentState::Authorized, None, db::now())? {
                    payments::set_ids(c, &o.out_order_no, platform_order_id.as_deref(), payer_id.as_deref())?;
                }
                order::authorize(c, id, open, db::now())
            })
        })
        .await?)
}

/// The order a `door.open_check` is about, while it still waits for its door (`authorized`).
pub async fn waiting_for_door(db: &Db, id: i64) -> Result<Option<Order>, FlowError> {
    let order = load(db, id).await?;
    Ok((order.status == OrderStatus::Authorized).then_some(order))
}

/// `door.open_check`, once the cabinet's actor said where the door stands (`answer`): the first
/// check sends `open` once more and looks again; the second cancels the order and releases the
/// hold (the door locked itself again after `orders.unlock_s`). A door that did open is never
/// cancelled.
pub async fn open_check(ctx: &Ctx, order: &Order, attempt: u32, answer: Opening) -> Result<Effects, FlowError> {
    let id = order.id;
    if answer == Opening::DoorOpened {
        // The door did open; only its record was missing (the actor writes it again).
        tracing::warn!(order = id, sn = %order.sn, "door open but not recorded; recorded again");
        return Ok(Effects::none());
    }
    if attempt < 2 && answer == Opening::Sent {
        tracing::warn!(order = id, sn = %order.sn, "door not opened; sending open once more");
        let again = secs(ctx.config.orders.open_check_s);
        ctx.db.write(move |c| OpenCheck { order_id: id, attempt: 2 }.enqueue_at(c, Some(db::now() + again))).await?;
        return Ok(Effects::wake());
    }
    tracing::warn!(order = id, sn = %order.sn, "door never opened; cancelling");
    let moved = ctx
        .db
        .write(move |c| order::cancel(c, id, OrderEvent::DoorNeverOpened, "door_never_opened", db::now()))
        .await?;
    Ok(moved.effects())
}

/// The shopper cancels before the door opens (they changed their mind on the confirm page).
pub async fn shopper_cancel(db: &Db, id: i64) -> Result<(Moved, Effects), FlowError> {
    let moved =
        db.write(move |c| order::cancel(c, id, OrderEvent::ShopperCancelled, "shopper_cancelled", db::now())).await?;
    let effects = moved.effects();
    Ok((moved, effects))
}
