//! What the shopper reads: every text the mini-program shows as is, in one place (Chinese, the
//! mini-programs' language), with an English gloss beside each.

use super::names::named_enum;
use super::units::Fen;

// Why a scan was refused (`domain::order::ScanRefusal::message`).
/// "Your account cannot shop at the moment; please contact customer service."
pub const SHOPPER_BLOCKED: &str = "您的账户暂时无法购物，请联系客服";
/// "You have an unpaid order; please pay it before shopping."
pub const UNPAID_DEBT: &str = "您有未支付的订单，请先完成支付";
/// "This payment method is not enabled; please enable it and try again."
pub const CHANNEL_NOT_BOUND: &str = "未开通该支付方式，请开通后再试";
/// "You have an order in progress; please finish it first."
pub const ORDER_OPEN: &str = "您有进行中的订单，请先完成";
/// "This door does not exist; please scan the code on the cabinet door."
pub const NO_SUCH_DOOR: &str = "柜门不存在，请扫描柜门上的二维码";
/// "This cabinet is not in service; please use another one."
pub const CABINET_NOT_ONLINE: &str = "该售货柜暂停服务，请换一台";
/// "The cabinet is in use; please try again in a moment."
pub const CABINET_BUSY: &str = "售货柜正在使用中，请稍后再试";

named_enum! {
    /// A notice on an order: something the shopper is told beside the status. Each code is on an
    /// order at most once.
    pub enum NoticeCode {
        /// While the door was open, the basket looked dearer than the pre-authorisation covers.
        OverCap = "over_cap",
        /// The settled basket came to more than the cap: the excess is owed.
        OverCapDebt = "over_cap_debt",
        /// The door stayed open past `orders.door_open_alert_s`.
        DoorOpenTooLong = "door_open_too_long",
        /// Lanes weighed differently when the door opened than at rest (someone may have been at
        /// them before the shopper).
        BeforeWeightsDiffer = "before_weights_differ",
        /// The confirmation came too long after the scan: the door stayed shut and the hold is
        /// given back.
        AuthorisedTooLate = "authorised_too_late",
        /// The nightly stocktake found units gone from the shelf after this purchase was
        /// weighed: they are added to the order as debt.
        StocktakeCharge = "stocktake_charge",
    }
}

/// A notice on an order, as stored on it (a JSON list) and shown to the shopper.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Notice {
    pub code: NoticeCode,
    pub message: String,
    pub at: chrono::NaiveDateTime,
}

/// "The goods chosen exceed the authorised amount by {excess} fen; the excess will be owed."
pub fn over_cap(excess_fen: Fen) -> String {
    format!("所选商品超出授权额度 {excess_fen} 分，超出部分将计为欠款")
}

/// "The goods chosen exceed the authorised amount; the {excess} fen over it are owed."
pub fn over_cap_debt(excess_fen: Fen) -> String {
    format!("所选商品超出授权额度，超出的 {excess_fen} 分计为欠款")
}

/// "A stock check found {units} more item(s) taken in this purchase; {fen} fen are recorded as
/// owed."
pub fn stocktake_charge(units: i64, fen: Fen) -> String {
    format!("库存盘点发现本次购物另取走 {units} 件商品，{fen} 分计为欠款")
}

/// "The payment confirmation arrived too late, so the door was not opened; the frozen amount is
/// being returned. Please scan again."
pub const AUTHORISED_TOO_LATE: &str = "支付确认到达过晚，柜门未开启，冻结金额将原路退回，请重新扫码";

/// "The door is not closed; please close it to finish the purchase."
pub const DOOR_OPEN_TOO_LONG: &str = "柜门未关闭，请关好柜门以完成结算";

/// Lanes that weighed differently at the open than at rest (kept in English: it is evidence for
/// the review queue as much as a notice).
pub fn before_weights_differ(lanes: &[String]) -> String {
    format!("lanes {} weighed differently when the door opened than at rest", lanes.join(", "))
}

/// "Refund after the order's review": a refund's reason when the reviewer wrote no note.
pub const REVIEW_REFUND_REASON: &str = "订单复核退款";
