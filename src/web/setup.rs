//! Ops API for setting a cabinet up: its configuration (doors, lanes, products), shelf labels,
//! calibration, cabinet types, and what came of each: sessions, commands, live weights and the
//! weight log.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::cabinet_call::{Call, call};
pub use super::cabinet_call::{EndedOut, WeightsOut};
use super::extract::{Admins, AnyRole, Calibrators, Managers, Ops, OpsCabinet, SnPath, page_limit, parse_sn};
use crate::actors::cabinet::held::{SessionInfo, StepReport};
use crate::actors::cabinet::session::{ConfigSaved, Delivery};
use crate::db::lane_health::LaneHealth;
use crate::db::models::{CabinetType, CommandRow, Lane, Session};
use crate::db::weight_log::WeightLogRow;
use crate::db::{self, cabinets, commands, layout, sessions};
use crate::device::messages::CalibrationStep;
use crate::domain::cabinet::CabinetStatus;
use crate::domain::calendar::business_day;
use crate::domain::layout::LayoutInput;
use crate::domain::validation::FieldErrors;
use crate::flows;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LaneOut {
    pub code: String,
    pub name: String,
    pub channel: i32,
    pub capacity: i32,
    pub threshold: i32,
    pub product_id: Option<i64>,
    pub stock: i32,
    pub calibrated: bool,
    pub calibrated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DoorOut {
    pub door: i32,
    pub lanes: Vec<LaneOut>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConfigOut {
    pub sn: String,
    #[serde(rename = "type")]
    pub cabinet_type: String,
    pub status: CabinetStatus,
    pub address: Option<String>,
    /// GCJ-02, the datum of Amap and Tencent maps.
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    pub config_version: i64,
    pub config_acked_version: i64,
    pub tags_version: i64,
    pub tags_acked_version: i64,
    pub doors: Vec<DoorOut>,
}

fn doors_out(lanes: Vec<Lane>) -> Vec<DoorOut> {
    let mut doors: Vec<DoorOut> = Vec::new();
    for l in lanes {
        let lane = LaneOut {
            calibrated: l.zero_counts.is_some() && l.counts_per_g.is_some(),
            calibrated_at: l.calibrated_at.map(|t| t.and_utc()),
            code: l.code,
            name: l.name,
            channel: l.channel,
            capacity: l.capacity,
            threshold: l.threshold,
            product_id: l.product_id,
            stock: l.stock,
        };
        match doors.last_mut() {
            Some(d) if d.door == l.door => d.lanes.push(lane),
            _ => doors.push(DoorOut { door: l.door, lanes: vec![lane] }),
        }
    }
    doors
}

/// `GET /ops/cabinets/{sn}/config` — any role.
#[utoipa::path(
    get, path = "/ops/cabinets/{sn}/config", tag = "ops: setup", security(("operator" = [])), params(SnPath),
    responses(
        (status = 200, description = "Its configuration", body = ConfigOut),
    )
)]
pub async fn get_config(OpsCabinet { ops, sn }: OpsCabinet<AnyRole>) -> Result<HttpResponse, ApiError> {
    let key = sn.to_string();
    let (cab, lanes) =
        ops.read(move |c| Ok::<_, db::DbError>((cabinets::find(c, &key)?, layout::lanes(c, &key)?))).await?;
    let cab = cab.ok_or_else(|| ApiError::NotFound(format!("cabinet {sn}")))?;
    Ok(HttpResponse::Ok().json(ConfigOut {
        sn: cab.sn,
        cabinet_type: cab.cabinet_type,
        status: cab.status,
        address: cab.address,
        lat: cab.lat,
        lng: cab.lng,
        config_version: cab.config_version,
        config_acked_version: cab.config_acked_version,
        tags_version: cab.tags_version,
        tags_acked_version: cab.tags_acked_version,
        doors: doors_out(lanes),
    }))
}

/// `PUT /ops/cabinets/{sn}/config` — admin, operator. Refused whole when invalid (422) or while
/// a session holds the cabinet (409).
#[utoipa::path(
    put, path = "/ops/cabinets/{sn}/config", tag = "ops: setup", security(("operator" = [])), params(SnPath), request_body = LayoutInput,
    responses(
        (status = 200, description = "Stored; sent to the cabinet now or at its next login", body = ConfigSaved),
        (status = 409, description = "cabinet_busy: a session holds the cabinet", body = crate::web::error::ErrorBody),
        (status = 422, description = "Refused whole, every problem listed (a channel the type lacks, an unknown product, …)", body = crate::web::error::ErrorBody),
        (status = 503, description = "cabinet_unreachable: the node that owns the cabinet did not answer, or no longer owns it; ask again in a moment", body = crate::web::error::ErrorBody),
    )
)]
pub async fn put_config(
    OpsCabinet { ops, sn }: OpsCabinet<Managers>,
    body: web::Json<LayoutInput>,
) -> Result<HttpResponse, ApiError> {
    let by = ops.user.username.clone();
    call(&ops.state, &sn, Call::SaveConfig { layout: body.into_inner(), by }).await
}

/// `POST /ops/cabinets/{sn}/price-tags` — admin, operator: send the shelf labels again.
#[utoipa::path(
    post, path = "/ops/cabinets/{sn}/price-tags", tag = "ops: setup", security(("operator" = [])), params(SnPath),
    responses(
        (status = 202, description = "Sent; the cabinet's acknowledgement is the command's outcome", body = Delivery),
        (status = 409, description = "cabinet_busy, cabinet_not_connected, not_configured", body = crate::web::error::ErrorBody),
        (status = 503, description = "cabinet_unreachable: the node that owns the cabinet did not answer, or no longer owns it; ask again in a moment", body = crate::web::error::ErrorBody),
    )
)]
pub async fn send_price_tags(OpsCabinet { ops, sn }: OpsCabinet<Managers>) -> Result<HttpResponse, ApiError> {
    call(&ops.state, &sn, Call::SendTags { by: ops.user.username.clone() }).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartCalibrationIn {
    /// A door of the cabinet's configuration.
    #[schema(minimum = 1, maximum = 64)]
    pub door: u32,
}

/// `POST /ops/cabinets/{sn}/calibration` — admin, operator, maintainer: start calibrating a door.
#[utoipa::path(
    post, path = "/ops/cabinets/{sn}/calibration", tag = "ops: setup", security(("operator" = [])), params(SnPath), request_body = StartCalibrationIn,
    responses(
        (status = 201, description = "The calibration session holds the cabinet", body = SessionInfo),
        (status = 409, description = "cabinet_busy, cabinet_not_connected, not_configured", body = crate::web::error::ErrorBody),
        (status = 503, description = "cabinet_unreachable: the node that owns the cabinet did not answer, or no longer owns it; ask again in a moment", body = crate::web::error::ErrorBody),
    )
)]
pub async fn start_calibration(
    OpsCabinet { ops, sn }: OpsCabinet<Calibrators>,
    body: web::Json<StartCalibrationIn>,
) -> Result<HttpResponse, ApiError> {
    call(&ops.state, &sn, Call::StartCalibration { door: body.door, by: ops.user.username.clone() }).await
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepIn {
    /// Grams of the standard weight put on each lane (span, verify); at most
    /// `calibration.max_standard_g` (the spec states this node's).
    #[schema(exclusive_minimum = 0.0)]
    pub standard_g: Option<f64>,
}

/// The step of `/calibration/{step}`, as the spec declares it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct StepPath {
    /// The cabinet's serial number.
    #[param(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub sn: String,
    /// tare (empty lanes), span (the standard weight on each lane), verify (the weight again).
    #[param(pattern = "^(tare|span|verify)$")]
    pub step: String,
}

/// `POST /ops/cabinets/{sn}/calibration/{step}` (tare, span, verify) — admin, operator,
/// maintainer. Answers with the reading once the cabinet has taken it.
#[utoipa::path(
    post, path = "/ops/cabinets/{sn}/calibration/{step}", tag = "ops: setup", security(("operator" = [])), params(StepPath), request_body(content = Option<StepIn>),
    responses(
        (status = 200, description = "What the step read, per lane", body = StepReport),
        (status = 409, description = "no_session (no calibration is running), calibration_step_order, cabinet_not_connected", body = crate::web::error::ErrorBody),
        (status = 422, description = "The reading is refused (a span that did not move, a verify off the standard weight, …)", body = crate::web::error::ErrorBody),
        (status = 502, description = "device_failed: the cabinet did not take the reading", body = crate::web::error::ErrorBody),
        (status = 503, description = "cabinet_unreachable: the node that owns the cabinet did not answer, or no longer owns it; ask again in a moment", body = crate::web::error::ErrorBody),
    )
)]
pub async fn calibration_step(
    ops: Ops<Calibrators>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (raw_sn, raw_step) = path.into_inner();
    let sn = parse_sn(&raw_sn)?;
    let step = match raw_step.as_str() {
        "tare" => CalibrationStep::Tare,
        "span" => CalibrationStep::Span,
        "verify" => CalibrationStep::Verify,
        other => return Err(ApiError::NotFound(format!("calibration step {other:?} (tare, span or verify)"))),
    };
    // No body is no standard weight (a tare); a body that is not a StepIn is refused, never
    // taken for none.
    let step_in = match body.is_empty() {
        true => None,
        false => serde_json::from_slice::<Option<StepIn>>(&body)
            .map_err(|e| super::json_error(actix_web::error::JsonPayloadError::Deserialize(e), usize::MAX))?,
    };
    let standard_g = step_in.unwrap_or_default().standard_g;
    call(&ops.state, &sn, Call::CalibrateStep { step, standard_g }).await
}

/// `DELETE /ops/cabinets/{sn}/session` — admin, operator, maintainer: end a calibration.
#[utoipa::path(
    delete, path = "/ops/cabinets/{sn}/session", tag = "ops: setup", security(("operator" = [])), params(SnPath),
    responses(
        (status = 200, description = "Ended", body = EndedOut),
        (status = 409, description = "no_session to end, or purchase_in_progress (a shopper's session is never aborted)", body = crate::web::error::ErrorBody),
        (status = 503, description = "cabinet_unreachable: the node that owns the cabinet did not answer, or no longer owns it; ask again in a moment", body = crate::web::error::ErrorBody),
    )
)]
pub async fn abort_session(OpsCabinet { ops, sn }: OpsCabinet<Calibrators>) -> Result<HttpResponse, ApiError> {
    call(&ops.state, &sn, Call::AbortSession { by: ops.user.username.clone() }).await
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionsOut {
    /// The session holding the cabinet, if any.
    pub current: Option<Session>,
    pub recent: Vec<Session>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LimitQuery {
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// `GET /ops/cabinets/{sn}/sessions` — any role.
#[utoipa::path(
    get, path = "/ops/cabinets/{sn}/sessions", tag = "ops: setup", security(("operator" = [])), params(SnPath, LimitQuery),
    responses(
        (status = 200, description = "The current session and the latest ones", body = SessionsOut),
    )
)]
pub async fn list_sessions(
    OpsCabinet { ops, sn }: OpsCabinet<AnyRole>,
    q: web::Query<LimitQuery>,
) -> Result<HttpResponse, ApiError> {
    let n = page_limit(q.limit)?;
    let key = sn.to_string();
    let out = ops
        .read(move |c| {
            Ok::<_, db::DbError>(SessionsOut {
                current: sessions::current(c, &key)?,
                recent: sessions::list(c, &key, n)?,
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(out))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CommandsOut {
    pub commands: Vec<CommandRow>,
}

/// `GET /ops/cabinets/{sn}/commands` — any role: newest first, with how each ended.
#[utoipa::path(
    get, path = "/ops/cabinets/{sn}/commands", tag = "ops: setup", security(("operator" = [])), params(SnPath, LimitQuery),
    responses(
        (status = 200, description = "Commands, newest first", body = CommandsOut, links(("GetCommand" = (operation_id = "get_command", parameters(("id" = "$response.body#/commands/0/cmd_id")))))),
    )
)]
pub async fn list_commands(
    OpsCabinet { ops, sn }: OpsCabinet<AnyRole>,
    q: web::Query<LimitQuery>,
) -> Result<HttpResponse, ApiError> {
    let n = page_limit(q.limit)?;
    let key = sn.to_string();
    let rows: Vec<CommandRow> = ops.read(move |c| commands::list(c, &key, n)).await?;
    Ok(HttpResponse::Ok().json(CommandsOut { commands: rows }))
}

/// `GET /ops/commands/{id}` — any role.
#[utoipa::path(
    get, path = "/ops/commands/{id}", tag = "ops: setup", security(("operator" = [])), params(("id" = String, Path, description = "The command id (`cmd_id`)")),
    responses(
        (status = 200, description = "The command", body = CommandRow),
        (status = 404, description = "No such command", body = crate::web::error::ErrorBody),
    )
)]
pub async fn get_command(ops: Ops<AnyRole>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let key = id.clone();
    let row =
        ops.read(move |c| commands::find(c, &key)).await?.ok_or_else(|| ApiError::NotFound(format!("command {id}")))?;
    Ok(HttpResponse::Ok().json(row))
}

/// `GET /ops/cabinets/{sn}/weights` — any role: live per-lane weights from the cabinet's actor.
#[utoipa::path(
    get, path = "/ops/cabinets/{sn}/weights", tag = "ops: fleet", security(("operator" = [])), params(SnPath),
    responses(
        (status = 200, description = "Live weights", body = WeightsOut),
        (status = 409, description = "cabinet_not_connected to this node", body = crate::web::error::ErrorBody),
        (status = 503, description = "cabinet_unreachable: the node that owns the cabinet did not answer, or no longer owns it; ask again in a moment", body = crate::web::error::ErrorBody),
    )
)]
pub async fn live_weights(OpsCabinet { ops, sn }: OpsCabinet<AnyRole>) -> Result<HttpResponse, ApiError> {
    call(&ops.state, &sn, Call::Weights).await
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CabinetTypeIn {
    /// Load-cell channels of the type's sensor board.
    #[schema(minimum = 1, maximum = 256)]
    pub sensor_channels: i32,
    /// The range the cabinet should stay in; `temp_min_c` below `temp_max_c`.
    pub temp_min_c: f64,
    pub temp_max_c: f64,
    /// How long outside the range before an alert.
    #[schema(minimum = 0)]
    pub temp_alert_after_s: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TypesOut {
    pub types: Vec<CabinetType>,
}

/// `GET /ops/cabinet-types` — any role.
#[utoipa::path(
    get, path = "/ops/cabinet-types", tag = "ops: setup", security(("operator" = [])),
    responses(
        (status = 200, description = "Every cabinet type", body = TypesOut),
    )
)]
pub async fn list_cabinet_types(ops: Ops<AnyRole>) -> Result<HttpResponse, ApiError> {
    let rows: Vec<CabinetType> = ops.read(layout::cabinet_types).await?;
    Ok(HttpResponse::Ok().json(TypesOut { types: rows }))
}

/// `PUT /ops/cabinet-types/{name}` — admin: create or change a cabinet type.
#[utoipa::path(
    put, path = "/ops/cabinet-types/{name}", tag = "ops: setup", security(("operator" = [])), params(("name" = String, Path, description = "1–64 ASCII letters, digits, '-' or '_'", pattern = r"^[A-Za-z0-9_-]{1,64}$")), request_body = CabinetTypeIn,
    responses(
        (status = 200, description = "Stored", body = CabinetType),
        (status = 422, description = "A field is refused (temp_min_c not below temp_max_c, …)", body = crate::web::error::ErrorBody),
    )
)]
pub async fn put_cabinet_type(
    ops: Ops<Admins>,
    path: web::Path<String>,
    body: web::Json<CabinetTypeIn>,
) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    let t = body.into_inner();
    let mut errors = FieldErrors::default();
    if crate::domain::cabinet::validate_type(&name).is_err() {
        errors.push("name", "bad_format", "a type name is 1–64 ASCII letters, digits, '-' or '_'");
    }
    if !(1..=256).contains(&t.sensor_channels) {
        errors.push("sensor_channels", "out_of_range", "must be between 1 and 256");
    }
    if !(t.temp_min_c.is_finite() && t.temp_max_c.is_finite() && t.temp_min_c < t.temp_max_c) {
        errors.push("temp_max_c", "out_of_range", "temp_min_c must be below temp_max_c");
    }
    if t.temp_alert_after_s < 0 {
        errors.push("temp_alert_after_s", "negative", "must be 0 or more seconds");
    }
    errors.finish().map_err(ApiError::Invalid)?;
    let now = db::now();
    let row = CabinetType {
        name,
        sensor_channels: t.sensor_channels,
        temp_min_c: t.temp_min_c,
        temp_max_c: t.temp_max_c,
        temp_alert_after_s: t.temp_alert_after_s,
        created_at: now,
        updated_at: now,
    };
    let effects = flows::setup::put_cabinet_type(&ops.state.svc.db, row.clone()).await?;
    ops.state.svc.effects.run(effects);
    Ok(HttpResponse::Ok().json(row))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WeightLogQuery {
    /// Only the readings of this session (its whole trace, oldest first).
    pub session_id: Option<i64>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReadingsOut {
    pub readings: Vec<WeightLogRow>,
}

/// `GET /ops/cabinets/{sn}/weight-log` — any role: the newest readings, or one session's trace.
#[utoipa::path(
    get, path = "/ops/cabinets/{sn}/weight-log", tag = "ops: fleet", security(("operator" = [])), params(SnPath, WeightLogQuery),
    responses(
        (status = 200, description = "Readings", body = ReadingsOut),
    )
)]
pub async fn weight_log(
    OpsCabinet { ops, sn }: OpsCabinet<AnyRole>,
    q: web::Query<WeightLogQuery>,
) -> Result<HttpResponse, ApiError> {
    let n = page_limit(q.limit)?;
    let key = sn.to_string();
    let session_id = q.session_id;
    let rows = ops
        .read(move |c| match session_id {
            Some(id) => Ok::<_, db::DbError>(
                db::weight_log::for_session(c, id)?.into_iter().filter(|r| r.sn == key).collect::<Vec<_>>(),
            ),
            None => db::weight_log::recent(c, &key, n),
        })
        .await?;
    Ok(HttpResponse::Ok().json(ReadingsOut { readings: rows }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LaneHealthQuery {
    /// Days back from today (Asia/Shanghai), today included; 30 when absent.
    #[param(minimum = 1, maximum = 366)]
    pub days: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LaneHealthOut {
    /// Per lane and day, oldest day first.
    pub days: Vec<LaneHealth>,
}

/// `GET /ops/cabinets/{sn}/lane-health` — any role: each lane's load cell day by day (noise,
/// closed-door drift followed, moves), to judge a cell by.
#[utoipa::path(
    get, path = "/ops/cabinets/{sn}/lane-health", tag = "ops: fleet", security(("operator" = [])), params(SnPath, LaneHealthQuery),
    responses(
        (status = 200, description = "Lane history", body = LaneHealthOut),
        (status = 400, description = "`days` out of range", body = crate::web::error::ErrorBody),
    )
)]
pub async fn lane_health(
    OpsCabinet { ops, sn }: OpsCabinet<AnyRole>,
    q: web::Query<LaneHealthQuery>,
) -> Result<HttpResponse, ApiError> {
    let days = match q.days.unwrap_or(30) {
        n @ 1..=366 => n,
        n => return Err(ApiError::BadRequest(format!("days must be between 1 and 366, got {n}"))),
    };
    let since = (business_day(chrono::Utc::now()) - chrono::Duration::days(days - 1)).to_string();
    let key = sn.to_string();
    let rows = ops.read(move |c| db::lane_health::for_cabinet(c, &key, &since)).await?;
    Ok(HttpResponse::Ok().json(LaneHealthOut { days: rows }))
}
