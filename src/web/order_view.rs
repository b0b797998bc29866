//! How an order looks to the shopper's mini-program (and in a scan's answer).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::db::models::{Order, OrderLine, Refund};
use crate::domain::order::OrderStatus;
use crate::domain::payment::RefundStatus;
use crate::domain::units::Fen;
use crate::pay::Channel;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanRequest {
    /// The cabinet's serial number, from the QR code.
    #[schema(pattern = r"^\s*[A-Za-z0-9_-]{1,64}\s*$", example = "SN-0001")]
    pub sn: String,
    /// The door, from the QR code.
    #[schema(minimum = 1, maximum = 64, example = 1)]
    pub door: u32,
    /// `wechat` (Pay Score) or `alipay` (fund-auth pre-authorisation).
    #[schema(value_type = Channel)]
    pub channel: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LineView {
    pub lane: String,
    pub product_id: i64,
    pub product_name: String,
    pub qty: i64,
    /// Fen.
    #[schema(value_type = i64)]
    pub unit_fen: Fen,
    /// Fen.
    #[schema(value_type = i64)]
    pub amount_fen: Fen,
}

impl From<&OrderLine> for LineView {
    fn from(l: &OrderLine) -> Self {
        LineView {
            lane: l.lane.clone(),
            product_id: l.product_id,
            product_name: l.product_name.clone(),
            qty: l.qty,
            unit_fen: l.unit_fen,
            amount_fen: l.amount_fen,
        }
    }
}

/// An order as the shopper sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderView {
    pub id: i64,
    pub sn: String,
    pub door: i32,
    pub channel: Channel,
    pub status: OrderStatus,
    pub out_order_no: String,
    /// The most the pre-authorisation covers, fen.
    #[schema(value_type = i64)]
    pub cap_fen: Fen,
    /// What the basket comes to, fen (once settled).
    #[schema(value_type = Option<i64>)]
    pub total_fen: Option<Fen>,
    /// What the platform says was paid, fen.
    #[schema(value_type = Option<i64>)]
    pub paid_fen: Option<Fen>,
    /// Owed on this order, fen: a failed charge, a basket over the cap, or a correction that
    /// added to a paid basket.
    #[schema(value_type = i64)]
    pub debt_fen: Fen,
    /// Given back after a review corrected the basket, fen (refunds that went through).
    #[schema(value_type = i64)]
    pub refunded_fen: Fen,
    pub lines: Vec<LineView>,
    /// Refunds on this order, with where each stands.
    pub refunds: Vec<RefundView>,
    /// Grams per lane before the door opened; null until it has.
    pub before_g: Option<serde_json::Value>,
    /// Grams per lane after the door closed and the lanes settled; null until they have.
    pub after_g: Option<serde_json::Value>,
    /// What the shopper is told beside the status (door open too long, basket over the cap…).
    #[schema(value_type = Vec<Object>)]
    pub notices: serde_json::Value,
    pub cancel_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A refund as the shopper sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RefundView {
    pub out_refund_no: String,
    #[schema(value_type = i64)]
    pub amount_fen: Fen,
    pub status: RefundStatus,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<&Refund> for RefundView {
    fn from(r: &Refund) -> Self {
        RefundView {
            out_refund_no: r.out_refund_no.clone(),
            amount_fen: r.amount_fen,
            status: r.status,
            reason: r.reason.clone(),
            created_at: r.created_at.and_utc(),
            finished_at: r.finished_at.map(|t| t.and_utc()),
        }
    }
}

fn json(text: Option<&str>) -> Option<serde_json::Value> {
    text.and_then(|t| serde_json::from_str(t).ok())
}

impl OrderView {
    pub fn new(o: &Order, lines: &[OrderLine], refunds: &[Refund]) -> Self {
        OrderView {
            id: o.id,
            sn: o.sn.clone(),
            door: o.door,
            channel: o.channel,
            status: o.status,
            out_order_no: o.out_order_no.clone(),
            cap_fen: o.cap_fen,
            total_fen: o.total_fen,
            paid_fen: o.paid_fen,
            debt_fen: o.debt_fen,
            refunded_fen: refunds.iter().filter(|r| r.status == RefundStatus::Succeeded).map(|r| r.amount_fen).sum(),
            lines: lines.iter().map(LineView::from).collect(),
            refunds: refunds.iter().map(RefundView::from).collect(),
            before_g: json(o.before_g.as_deref()),
            after_g: json(o.after_g.as_deref()),
            notices: json(Some(&o.notices)).unwrap_or_else(|| serde_json::json!([])),
            cancel_reason: o.cancel_reason.clone(),
            created_at: o.created_at.and_utc(),
            closed_at: o.closed_at.map(|t| t.and_utc()),
            finished_at: o.finished_at.map(|t| t.and_utc()),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScanResponse {
    pub order: OrderView,
    /// What the mini-program passes to the platform: WeChat `{businessType, extraData: {package}}`
    /// for `wx.openBusinessView`; Alipay `{orderStr}` for `my.tradePay`.
    #[schema(value_type = Object)]
    pub confirm: serde_json::Value,
}
