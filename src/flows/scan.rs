//! A purchase starts: the shopper scans a door. The cabinet's actor (the device lock) reserves the
//! cabinet: in one transaction the scan is checked (`domain::order::check_scan`), a `purchase`
//! session opens, and the order and its payment are written, `created`, with `order.auth_timeout`
//! scheduled. Then the platform is asked for the pre-authorisation, whose confirm page the
//! shopper opens; its confirmation (`flows::callbacks`, `flows::authorise`) opens the door.

use chrono::{Duration, NaiveDateTime};

use super::order::{self, Moved};
use super::{Ctx, Effects, sessions};
use crate::db::models::{NewOrder, NewSession, Order, Payment, Session};
use crate::db::{self, AnyConnection, Db, DbError, orders, payments, users, write_tx};
use crate::domain::account;
use crate::domain::cabinet::CabinetStatus;
use crate::domain::liveness::Liveness;
use crate::domain::order::{OrderEvent, OrderStatus, ScanFacts, ScanRefusal};
use crate::domain::payment::{Channel, PaymentState};
use crate::domain::units::Fen;
use crate::mq::topics::{AuthTimeout, ConfirmCheck, Payload};
use crate::pay::{PayError, Preauth, PreauthRequest};

/// What the cabinet's actor knows at a scan; the rest is read in the transaction.
#[derive(Debug, Clone)]
pub struct ScanInput {
    pub user_id: i64,
    pub channel: Channel,
    pub payer_id: String,
    pub door: u32,
    pub door_exists: bool,
    pub cabinet_status: CabinetStatus,
    pub liveness: Liveness,
    pub cabinet_busy: bool,
    pub cap_fen: Fen,
    pub session: NewSession,
    pub auth_timeout: Duration,
    /// When the platform is asked whether the shopper confirmed, after the scan.
    pub confirm_checks: Vec<Duration>,
}

/// A scan that went through: the order `created`, its payment `created`, the session that holds
/// the cabinet, and `order.confirm_check`s and `order.auth_timeout` scheduled.
#[derive(Debug, Clone)]
pub struct Scanned {
    pub order: Order,
    pub session: Session,
}

/// Why a scan stopped.
#[derive(Debug, thiserror::Error)]
pub enum ScanFail {
    #[error("{0}")]
    Refused(ScanRefusal),
    /// Another node's session holds the cabinet.
    #[error("the cabinet is held by another session")]
    Busy(Box<Session>),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for ScanFail {
    fn from(e: diesel::result::Error) -> Self {
        ScanFail::Db(e.into())
    }
}

/// A new pre-authorisation number: `HO` + UTC time + 8 random hex digits (24 characters of
/// `[0-9A-Z]`, within both platforms' 32).
pub fn new_out_order_no(now: NaiveDateTime) -> String {
    format!("HO{}{:08X}", now.format("%Y%m%d%H%M%S"), rand::random::<u32>())
}

/// Reserve the cabinet for the scan, in one transaction. The relay is to be woken after it.
pub async fn reserve(db: &Db, input: ScanInput) -> Result<(Scanned, Effects), ScanFail> {
    let scanned = db.write(move |c| reserve_in(c, &input, db::now())).await?;
    Ok((scanned, Effects::wake()))
}

fn reserve_in(conn: &mut AnyConnection, input: &ScanInput, now: NaiveDateTime) -> Result<Scanned, ScanFail> {
    write_tx(conn, |conn| {
        check(conn, input)?;
        let session = match sessions::open_in(conn, &input.session)? {
            Ok(s) => s,
            Err(held) => return Err(ScanFail::Busy(Box::new(held))),
        };
        let no = new_out_order_no(now);
        payments::create(conn, &new_payment(input, &no, now))?;
        let new = NewOrder {
            user_id: input.user_id,
            sn: input.session.sn.clone(),
            door: i32::try_from(input.door).unwrap_or(i32::MAX),
            channel: input.channel,
            status: OrderStatus::Created,
            out_order_no: no,
            session_id: Some(session.id),
            cap_fen: input.cap_fen,
            debt_fen: Fen::ZERO,
            notices: "[]".into(),
            created_at: now,
            updated_at: now,
        };
        // The partial unique index is the last word on "one open order": two scans by one
        // shopper at once on two cabinets both pass the count in `check`.
        let order = orders::insert(conn, &new).map_err(|e| match e.is_unique_violation() {
            true => ScanFail::Refused(ScanRefusal::OrderOpen),
            false => e.into(),
        })?;
        AuthTimeout { order_id: order.id }.enqueue_at(conn, Some(now + input.auth_timeout))?;
        for after in &input.confirm_checks {
            ConfirmCheck { order_id: order.id }.enqueue_at(conn, Some(now + *after))?;
        }
        Ok(Scanned { order, session })
    })
}

/// The scan's checks, with the shopper's account and open orders read now.
fn check(conn: &mut AnyConnection, input: &ScanInput) -> Result<(), ScanFail> {
    let account = users::account(conn, input.user_id)?
        .ok_or_else(|| DbError::Corrupt(format!("user {} has no account", input.user_id)))?;
    let bound = match input.channel {
        Channel::Wechat => account::WECHAT_PAYSCORE,
        Channel::Alipay => account::ALIPAY_FUND_AUTH,
    };
    let facts = ScanFacts {
        blocked: account.blocked,
        debt_fen: account.debt_fen,
        channel_bound: account::channels(&account.channels).contains(&bound),
        open_order: orders::count_at_cabinet(conn, input.user_id)? > 0,
        door_exists: input.door_exists,
        cabinet_status: input.cabinet_status,
        liveness: input.liveness,
        cabinet_busy: input.cabinet_busy,
    };
    crate::domain::order::check_scan(&facts).map_err(ScanFail::Refused)
}

fn new_payment(input: &ScanInput, no: &str, now: NaiveDateTime) -> Payment {
    Payment {
        out_order_no: no.to_string(),
        channel: input.channel,
        user_id: input.user_id,
        state: PaymentState::Created,
        cap_fen: input.cap_fen,
        amount_fen: None,
        platform_order_id: None,
        payer_id: Some(input.payer_id.clone()),
        out_trade_no: None,
        transaction_id: None,
        created_at: now,
        updated_at: now,
    }
}

/// Why the pre-authorisation was not started; the order is cancelled and the cabinet let go.
#[derive(Debug, thiserror::Error)]
pub enum PreauthFail {
    #[error(transparent)]
    Platform(#[from] PayError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Ask the platform for the reserved order's pre-authorisation. Creating is idempotent on both
/// platforms: a request lost on the way is sent once more rather than failing a shopper who
/// stands at the cabinet. When it fails nothing is held (or the release finds out): the order is
/// cancelled and its cabinet let go. The effects are to be run either way.
pub async fn preauthorise(ctx: &Ctx, order: &Order, payer_id: &str) -> (Result<Preauth, PreauthFail>, Effects) {
    let req = PreauthRequest {
        out_order_no: order.out_order_no.clone(),
        cap_fen: order.cap_fen,
        title: ctx.config.orders.title.clone(),
        device_id: order.sn.clone(),
        payer_id: payer_id.to_string(),
        attach: order.id.to_string(),
    };
    let gateway = ctx.payments.get(order.channel);
    let created = match gateway.create_preauth(&req).await {
        Err(PayError::Retryable(e)) => {
            tracing::warn!(order = order.id, error = %e, "pre-authorisation not created; trying once more");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            gateway.create_preauth(&req).await
        }
        other => other,
    };
    match created {
        Ok(pre) => {
            let recorded = match pre.platform_order_id.clone() {
                Some(platform_id) => {
                    let no = order.out_order_no.clone();
                    ctx.db.write(move |c| payments::set_platform_order_id(c, &no, &platform_id)).await
                }
                None => Ok(()),
            };
            (recorded.map(|()| pre).map_err(PreauthFail::from), Effects::none())
        }
        Err(e) => {
            tracing::warn!(order = order.id, error = %e, "pre-authorisation not created; cancelling");
            let id = order.id;
            let cancelled = ctx
                .db
                .write(move |c| order::cancel(c, id, OrderEvent::ShopperCancelled, "preauth_failed", db::now()))
                .await;
            match cancelled {
                Ok(moved) => (Err(e.into()), Moved::effects(&moved)),
                Err(db_error) => (Err(db_error.into()), Effects::none()),
            }
        }
    }
}
