//! The purchase flow's timers and the glue between orders and cabinet actors: an order the
//! database moved (a callback, a timer) is told to its cabinet's actor on this node, and the
//! consumers of `order.auth_timeout` and `door.open_check` end orders that went nowhere.

use std::sync::Arc;

use async_trait::async_trait;

use super::cabinet::door::{OpenForOrder, Opening, OrderEnded};
use super::registry::Routes;
use crate::config::OrdersConfig;
use crate::db::models::Order;
use crate::db::{self, Db, orders};
use crate::domain::order::{OrderEvent, OrderStatus};
use crate::mq::topics::{self, Payload};
use crate::mq::{Handler, HandlerError, Message};
use crate::pay::{Gateways, PlatformState};

/// Tell the cabinet's actor on this node what became of an order: authorised → open the door;
/// cancelled → let go of the session. Without an actor here there is nobody to tell: the order's
/// timers finish it (`door.open_check`).
pub fn order_moved(routes: &Routes, order: &Order) {
    let Some(addr) = routes.read().ok().and_then(|r| r.get(&order.sn).cloned()) else { return };
    match order.status {
        OrderStatus::Authorized => addr.do_send(OpenForOrder { order_id: order.id, send: true }),
        OrderStatus::Cancelled => addr.do_send(OrderEnded { order_id: order.id }),
        _ => {}
    }
}

fn secs(s: u64) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000))
}

async fn load(db: &Db, id: i64) -> Result<Order, HandlerError> {
    db.run(move |c| orders::find(c, id)).await?.ok_or_else(|| HandlerError::Failed(format!("order {id} not found")))
}

/// `order.auth_timeout`: a `created` order the shopper has not authorised in time. The platform
/// is asked first — a confirmation whose callback is late still opens the door — and otherwise
/// the order is cancelled and anything held released.
pub struct AuthTimeout {
    pub db: Db,
    pub gateways: Gateways,
    pub routes: Routes,
    pub orders: OrdersConfig,
}

#[async_trait]
impl Handler for AuthTimeout {
    fn name(&self) -> &str {
        topics::AuthTimeout::TOPIC
    }

    fn topics(&self) -> Vec<String> {
        vec![topics::AuthTimeout::TOPIC.to_string()]
    }

    async fn handle(&self, msg: &Message) -> Result<(), HandlerError> {
        let id = msg.decode::<topics::AuthTimeout>()?.order_id;
        let order = load(&self.db, id).await?;
        if order.status != OrderStatus::Created {
            return Ok(());
        }
        let found = self.gateways.get(order.channel).query(&order.out_order_no, None).await;
        let open_check = secs(self.orders.open_check_s);
        let moved = match found {
            Ok(PlatformState::Authorized { platform_order_id, payer_id }) => {
                tracing::info!(order = id, "authorised without a callback; opening");
                self.db
                    .write(move |c| {
                        orders::authorize_from_query(
                            c,
                            id,
                            platform_order_id.as_deref(),
                            payer_id.as_deref(),
                            open_check,
                            db::now(),
                        )
                    })
                    .await?
            }
            // Not confirmed, or the platform cannot say: cancel. A confirmation that comes after
            // this finds the payment cancelled and is released (`payment.release`).
            other => {
                if let Err(e) = &other {
                    tracing::warn!(order = id, error = %e, "platform not asked at the auth timeout; cancelling");
                }
                self.db
                    .write(move |c| orders::cancel(c, id, OrderEvent::AuthTimeout, "auth_timeout", db::now()))
                    .await?
            }
        };
        if moved.moved() {
            order_moved(&self.routes, moved.order());
        }
        Ok(())
    }
}

/// `door.open_check`: the order was authorised but the door has not opened. The first check
/// sends `open` once more and looks again; the second cancels the order and releases the hold
/// (the door locked itself again after `orders.unlock_s`).
pub struct OpenCheck {
    pub db: Db,
    pub routes: Routes,
    pub orders: OrdersConfig,
}

#[async_trait]
impl Handler for OpenCheck {
    fn name(&self) -> &str {
        topics::OpenCheck::TOPIC
    }

    fn topics(&self) -> Vec<String> {
        vec![topics::OpenCheck::TOPIC.to_string()]
    }

    async fn handle(&self, msg: &Message) -> Result<(), HandlerError> {
        let topics::OpenCheck { order_id: id, attempt } = msg.decode()?;
        let order = load(&self.db, id).await?;
        if order.status != OrderStatus::Authorized {
            return Ok(());
        }
        let actor = self.routes.read().ok().and_then(|r| r.get(&order.sn).cloned());
        let asked = match actor {
            Some(addr) => addr.send(OpenForOrder { order_id: id, send: attempt < 2 }).await.unwrap_or(Opening::NotHeld),
            None => Opening::NotHeld,
        };
        if asked == Opening::DoorOpened {
            // The door did open; only its record was missing (the actor writes it again).
            tracing::warn!(order = id, sn = %order.sn, "door open but not recorded; recorded again");
            return Ok(());
        }
        if attempt < 2 && asked == Opening::Sent {
            tracing::warn!(order = id, sn = %order.sn, "door not opened; sending open once more");
            let again = secs(self.orders.open_check_s);
            self.db
                .write(move |c| topics::OpenCheck { order_id: id, attempt: 2 }.enqueue_at(c, Some(db::now() + again)))
                .await?;
            return Ok(());
        }
        tracing::warn!(order = id, sn = %order.sn, "door never opened; cancelling");
        let moved = self
            .db
            .write(move |c| orders::cancel(c, id, OrderEvent::DoorNeverOpened, "door_never_opened", db::now()))
            .await?;
        if moved.moved() {
            order_moved(&self.routes, moved.order());
        }
        Ok(())
    }
}

/// `restock.check`: lanes went under their threshold. The cabinet's restock task says what to
/// bring (every low lane filled to capacity), and operators are alerted once per new task.
pub struct RestockCheck {
    pub db: Db,
}

#[async_trait]
impl Handler for RestockCheck {
    fn name(&self) -> &str {
        topics::RestockCheck::TOPIC
    }

    fn topics(&self) -> Vec<String> {
        vec![topics::RestockCheck::TOPIC.to_string()]
    }

    async fn handle(&self, msg: &Message) -> Result<(), HandlerError> {
        let sn = msg.decode::<topics::RestockCheck>()?.sn;
        self.db
            .write(move |c| {
                db::write_tx(c, |c| {
                    let Some((task, created)) = crate::db::restock::check(c, &sn, db::now())? else {
                        return Ok::<_, crate::db::DbError>(());
                    };
                    if created {
                        let spec = crate::domain::alert::AlertSpec {
                            audience: crate::domain::alert::Audience::Ops,
                            severity: crate::domain::alert::Severity::Info,
                            code: crate::db::restock::RESTOCK_NEEDED.into(),
                            sn: Some(sn.clone()),
                            message: format!("cabinet {sn}: lanes to restock (task {})", task.id),
                            detail: Some(task.wanted.clone()),
                        };
                        crate::db::alerts::raise(c, &spec, 1, db::now())?;
                    }
                    Ok(())
                })
            })
            .await?;
        Ok(())
    }
}

/// The purchase flow's consumers of this node.
pub fn handlers(
    db: &Db,
    cache: &Arc<dyn crate::cache::Cache>,
    gateways: &Gateways,
    routes: &Routes,
    config: &crate::config::Config,
) -> Vec<Arc<dyn Handler>> {
    vec![
        Arc::new(AuthTimeout {
            db: db.clone(),
            gateways: gateways.clone(),
            routes: routes.clone(),
            orders: config.orders.clone(),
        }),
        Arc::new(OpenCheck { db: db.clone(), routes: routes.clone(), orders: config.orders.clone() }),
        Arc::new(RestockCheck { db: db.clone() }),
        Arc::new(crate::pay::capture::Capture {
            db: db.clone(),
            cache: cache.clone(),
            gateways: gateways.clone(),
            orders: config.orders.clone(),
            handler_timeout_ms: config.messages.handler_timeout_ms,
            max_attempts: config.messages.max_attempts,
            title: config.orders.title.clone(),
        }),
        Arc::new(crate::pay::refund::RefundHandler {
            db: db.clone(),
            gateways: gateways.clone(),
            orders: config.orders.clone(),
            max_attempts: config.messages.max_attempts,
        }),
    ]
}
