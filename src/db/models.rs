//! Rows as stored. Typed domain values are made from them at the edges of `db/`.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use crate::domain::alert::{AlertCode, Audience, Severity};
use crate::domain::cabinet::{CabinetEventKind, CabinetStatus};
use crate::domain::command::{CommandStatus, DownKind};
use crate::domain::liveness::Liveness;
use crate::domain::operator::Role;
use crate::domain::order::OrderStatus;
use crate::domain::payment::{Channel, EventOutcome, PaymentState, RefundStatus};
use crate::domain::restock::TaskStatus;
use crate::domain::review::{CaseKind, CaseStatus};
use crate::domain::session::{Outcome, SessionKind};
use crate::domain::settlement::Line;
use crate::domain::stock::StockReason;
use crate::domain::units::{Fen, Grams};

use super::schema::{
    accounts, alerts, cabinet_events, cabinet_types, cabinets, commands, lanes, operators, order_lines, orders,
    payment_events, payments, products, refunds, restock_tasks, review_cases, sessions, stock_ledger, users,
};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = cabinets, primary_key(sn))]
pub struct Cabinet {
    pub sn: String,
    pub cabinet_type: String,
    pub token_hash: String,
    pub frame_key_sealed: String,
    pub status: CabinetStatus,
    pub liveness: Liveness,
    pub last_boot: i64,
    pub node_id: Option<String>,
    pub firmware: Option<String>,
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    pub last_login_at: Option<NaiveDateTime>,
    pub liveness_changed_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub address: Option<String>,
    pub config_version: i64,
    pub config_acked_version: i64,
    pub tags_version: i64,
    pub tags_acked_version: i64,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = cabinets)]
pub struct NewCabinet {
    pub sn: String,
    pub cabinet_type: String,
    pub token_hash: String,
    pub frame_key_sealed: String,
    pub status: CabinetStatus,
    pub liveness: Liveness,
    pub last_boot: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = cabinet_events)]
pub struct CabinetEvent {
    pub id: i64,
    pub sn: String,
    pub kind: CabinetEventKind,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub detail: Option<String>,
    pub node_id: String,
    #[schema(value_type = String)]
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = cabinet_events)]
pub struct NewCabinetEvent {
    pub sn: String,
    pub kind: CabinetEventKind,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub detail: Option<String>,
    pub node_id: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = alerts)]
pub struct Alert {
    pub id: i64,
    pub audience: Audience,
    pub severity: Severity,
    pub code: AlertCode,
    pub sn: Option<String>,
    pub message: String,
    pub detail: Option<String>,
    pub occurrences: i64,
    #[schema(value_type = String)]
    pub created_at: NaiveDateTime,
    #[schema(value_type = String)]
    pub last_seen_at: NaiveDateTime,
    #[schema(value_type = Option<String>)]
    pub resolved_at: Option<NaiveDateTime>,
    /// What the alert is about beside its cabinet (an order's number), when one cabinet may have
    /// several at once.
    pub subject: Option<String>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = alerts)]
pub struct NewAlert {
    pub audience: Audience,
    pub severity: Severity,
    pub code: AlertCode,
    pub sn: Option<String>,
    pub subject: Option<String>,
    pub message: String,
    pub detail: Option<String>,
    pub occurrences: i64,
    pub created_at: NaiveDateTime,
    pub last_seen_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = cabinet_types, primary_key(name))]
pub struct CabinetType {
    pub name: String,
    pub sensor_channels: i32,
    pub temp_min_c: f64,
    pub temp_max_c: f64,
    pub temp_alert_after_s: i64,
    #[schema(value_type = String)]
    pub created_at: NaiveDateTime,
    #[schema(value_type = String)]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, Serialize)]
#[diesel(table_name = lanes, primary_key(sn, code))]
pub struct Lane {
    pub sn: String,
    pub code: String,
    pub door: i32,
    pub position: i32,
    pub name: String,
    pub channel: i32,
    pub capacity: i32,
    pub threshold: i32,
    pub product_id: Option<i64>,
    pub stock: i32,
    pub zero_counts: Option<i64>,
    pub counts_per_g: Option<f64>,
    pub calibrated_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = sessions)]
pub struct Session {
    pub id: i64,
    pub sn: String,
    pub kind: SessionKind,
    pub door: Option<i32>,
    pub started_by: String,
    pub node_id: String,
    #[schema(value_type = String)]
    pub started_at: NaiveDateTime,
    #[schema(value_type = Option<String>)]
    pub ended_at: Option<NaiveDateTime>,
    pub outcome: Option<Outcome>,
    pub detail: Option<String>,
    /// For a settled purchase: the recent readings of each lane of its door that the settlement
    /// judged (JSON, lane → grams, oldest first), stored with the settlement.
    pub evidence: Option<String>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = sessions)]
pub struct NewSession {
    pub sn: String,
    pub kind: SessionKind,
    pub door: Option<i32>,
    pub started_by: String,
    pub node_id: String,
    pub started_at: NaiveDateTime,
    /// While open: what an actor taking the session up needs (a door session's weights before).
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = commands)]
pub struct CommandRow {
    /// The command's `cmd_id`, as the device protocol names it.
    #[serde(rename = "cmd_id")]
    pub id: String,
    pub sn: String,
    pub kind: DownKind,
    pub session_id: Option<i64>,
    pub body: String,
    pub status: CommandStatus,
    pub attempts: i32,
    pub error: Option<String>,
    pub result: Option<String>,
    #[schema(value_type = String)]
    pub created_at: NaiveDateTime,
    #[schema(value_type = Option<String>)]
    pub finished_at: Option<NaiveDateTime>,
}

/// An operator account. Not `Serialize`: the password hash must never leave through the API by
/// accident; handlers map it to an output type without it.
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = operators)]
pub struct Operator {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub role: Role,
    pub active: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub last_login_at: Option<NaiveDateTime>,
}

// The hash stays out of Debug output (and so out of logs).
impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("role", &self.role)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Insertable)]
#[diesel(table_name = operators)]
pub struct NewOperator {
    pub username: String,
    pub password_hash: String,
    pub role: Role,
    pub active: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = products)]
pub struct Product {
    pub id: i64,
    pub name: String,
    pub barcode: String,
    pub unit_g: Grams,
    pub tolerance_g: Grams,
    pub price_fen: Fen,
    pub image_url: Option<String>,
    pub active: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = products, treat_none_as_null = true)]
pub struct ProductValues {
    pub name: String,
    pub barcode: String,
    pub unit_g: Grams,
    pub tolerance_g: Grams,
    pub price_fen: Fen,
    pub image_url: Option<String>,
    pub active: bool,
    pub updated_at: NaiveDateTime,
}

/// A shopper as one platform knows them.
#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i64,
    pub channel: Channel,
    pub platform_uid: String,
    pub unionid: Option<String>,
    pub created_at: NaiveDateTime,
    pub last_login_at: NaiveDateTime,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub channel: Channel,
    pub platform_uid: &'a str,
    pub unionid: Option<&'a str>,
    pub created_at: NaiveDateTime,
    pub last_login_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize)]
#[diesel(table_name = accounts, primary_key(user_id))]
pub struct Account {
    pub user_id: i64,
    pub channels: String,
    pub debt_fen: Fen,
    pub blocked: bool,
    pub blocked_reason: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = payments, primary_key(out_order_no))]
pub struct Payment {
    pub out_order_no: String,
    pub channel: Channel,
    pub user_id: i64,
    pub state: PaymentState,
    pub cap_fen: Fen,
    pub amount_fen: Option<Fen>,
    pub platform_order_id: Option<String>,
    pub payer_id: Option<String>,
    pub out_trade_no: Option<String>,
    pub transaction_id: Option<String>,
    #[schema(value_type = String)]
    pub created_at: NaiveDateTime,
    #[schema(value_type = String)]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = payment_events)]
pub struct PaymentEvent {
    pub id: i64,
    pub channel: Channel,
    pub event_id: String,
    pub event_type: String,
    pub out_order_no: Option<String>,
    pub resource: String,
    pub raw: String,
    pub outcome: EventOutcome,
    #[schema(value_type = String)]
    pub received_at: NaiveDateTime,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = payment_events)]
pub struct NewPaymentEvent<'a> {
    pub channel: Channel,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub out_order_no: Option<&'a str>,
    pub resource: &'a str,
    pub raw: &'a str,
    pub outcome: EventOutcome,
    pub received_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = orders)]
pub struct Order {
    pub id: i64,
    pub user_id: i64,
    pub sn: String,
    pub door: i32,
    pub channel: Channel,
    pub status: OrderStatus,
    pub out_order_no: String,
    pub session_id: Option<i64>,
    pub cap_fen: Fen,
    pub total_fen: Option<Fen>,
    pub paid_fen: Option<Fen>,
    pub debt_fen: Fen,
    pub before_g: Option<String>,
    pub after_g: Option<String>,
    pub notices: String,
    pub cancel_reason: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub authorized_at: Option<NaiveDateTime>,
    pub opened_at: Option<NaiveDateTime>,
    pub closed_at: Option<NaiveDateTime>,
    pub settled_at: Option<NaiveDateTime>,
    pub finished_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = orders)]
pub struct NewOrder {
    pub user_id: i64,
    pub sn: String,
    pub door: i32,
    pub channel: Channel,
    pub status: OrderStatus,
    pub out_order_no: String,
    pub session_id: Option<i64>,
    pub cap_fen: Fen,
    pub debt_fen: Fen,
    pub notices: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, Serialize)]
#[diesel(table_name = order_lines)]
pub struct OrderLine {
    pub order_id: i64,
    pub lane: String,
    pub product_id: i64,
    pub product_name: String,
    pub qty: i64,
    pub unit_fen: Fen,
    pub amount_fen: Fen,
}

/// A stored line as the settlement wrote it.
impl From<&OrderLine> for Line {
    fn from(l: &OrderLine) -> Line {
        Line {
            lane: l.lane.clone(),
            product_id: l.product_id,
            product_name: l.product_name.clone(),
            qty: l.qty,
            unit_fen: l.unit_fen,
            amount_fen: l.amount_fen,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = stock_ledger)]
pub struct LedgerRow {
    pub id: i64,
    pub sn: String,
    pub lane: String,
    pub product_id: Option<i64>,
    pub delta: i32,
    pub stock_after: i32,
    pub reason: StockReason,
    pub order_id: Option<i64>,
    pub session_id: Option<i64>,
    pub task_id: Option<i64>,
    #[schema(value_type = String)]
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = stock_ledger)]
pub struct NewLedgerRow {
    pub sn: String,
    pub lane: String,
    pub product_id: Option<i64>,
    pub delta: i32,
    pub stock_after: i32,
    pub reason: StockReason,
    pub order_id: Option<i64>,
    pub session_id: Option<i64>,
    pub task_id: Option<i64>,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = restock_tasks)]
pub struct RestockTask {
    pub id: i64,
    pub sn: String,
    pub status: TaskStatus,
    pub wanted: String,
    pub added: Option<String>,
    pub session_id: Option<i64>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub closed_at: Option<NaiveDateTime>,
    pub closed_by: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = review_cases)]
pub struct ReviewCase {
    pub id: i64,
    pub order_id: i64,
    pub kind: CaseKind,
    pub status: CaseStatus,
    pub reasons: String,
    pub opened_by: String,
    pub resolution: Option<String>,
    pub resolved_by: Option<String>,
    pub created_at: NaiveDateTime,
    pub resolved_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = refunds)]
pub struct Refund {
    pub out_refund_no: String,
    pub order_id: i64,
    pub out_order_no: String,
    pub case_id: Option<i64>,
    pub amount_fen: Fen,
    pub reason: String,
    pub status: RefundStatus,
    pub refund_id: Option<String>,
    pub last_error: Option<String>,
    pub requested_by: String,
    #[schema(value_type = String)]
    pub created_at: NaiveDateTime,
    #[schema(value_type = String)]
    pub updated_at: NaiveDateTime,
    #[schema(value_type = Option<String>)]
    pub finished_at: Option<NaiveDateTime>,
}
