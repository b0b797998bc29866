//! The one HTTP error mapping: every error leaves as `{"error": code, "message": ...}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::actors::cabinet::held::SessionError;
use crate::cache::CacheError;
use crate::db::DbError;
use crate::domain::validation::FieldError;

/// Every error body: a stable code, a message a mini-program may show, and for `422 invalid` one
/// entry per refused field; a conflict may say what it conflicts with.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable, e.g. `invalid`, `unauthorized`, `unavailable`, `cabinet_busy`.
    #[schema(value_type = String)]
    pub error: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<FieldError>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// No credentials, or wrong or expired ones.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but the role may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The route exists, but not for this method; `allow` lists those it takes.
    #[error("{method} is not allowed here; allowed: {}", .allow.join(", "))]
    MethodNotAllowed { method: String, allow: Vec<String> },
    /// The body is larger than `api.max_body_bytes`.
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The request is well formed but conflicts with the state (a session holds the cabinet, the
    /// product is in use, ...). `code` is stable; `detail` says what it conflicts with.
    #[error("{message}")]
    Conflict { code: &'static str, message: String, detail: Option<serde_json::Value> },
    /// The request was carried out and the result refused (a calibration reading that did not
    /// move, a tare with the door open, ...). `code` is stable.
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    /// The cabinet did not carry out a command (refused it, or never answered).
    #[error("{0}")]
    Device(String),
    /// A payment platform refused or failed a call it should have carried out.
    #[error("{0}")]
    Platform(String),
    /// The body parsed but its values are refused, field by field.
    #[error("{} field(s) are invalid", .0.len())]
    Invalid(Vec<FieldError>),
    /// Too many requests of a kind (login attempts, ...); try again after `retry_after_s`.
    #[error("{message}")]
    TooManyRequests { code: &'static str, message: String, retry_after_s: u64 },
    /// A scan refused (`POST /api/v1/orders`): the code and the message a mini-program shows.
    #[error("{}", .refusal.message())]
    Scan { refusal: crate::domain::order::ScanRefusal, detail: Option<serde_json::Value> },
    #[error("{0}")]
    Unavailable(String),
    /// The node that owns the cabinet did not answer, or no longer owns it (its device moved to
    /// another node): asking again in a moment reaches the new owner.
    #[error("{0}")]
    Unreachable(String),
    /// Another node's answer to a request routed there, passed on as it is.
    #[error("answered by the cabinet's node")]
    Routed { status: u16, body: serde_json::Value },
    /// Something failed on our side; the caller learns nothing more, the log has the cause.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// An internal error with its cause (an error, or a sentence).
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ApiError {
        ApiError::Internal(cause.into())
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Conflict { code, .. } => code,
            ApiError::Invalid(_) => "invalid",
            ApiError::Refused { code, .. } => code,
            ApiError::Device(_) => "device_failed",
            ApiError::Platform(_) => "payment_platform_failed",
            ApiError::TooManyRequests { code, .. } => code,
            ApiError::Scan { refusal, .. } => refusal.code(),
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Unreachable(_) => "cabinet_unreachable",
            ApiError::Routed { .. } => "routed",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Invalid(_) | ApiError::Refused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Device(_) | ApiError::Platform(_) => StatusCode::BAD_GATEWAY,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Scan { refusal, .. } => {
                use crate::domain::order::ScanRefusal::*;
                match refusal {
                    ShopperBlocked | ChannelNotBound => StatusCode::FORBIDDEN,
                    UnpaidDebt => StatusCode::PAYMENT_REQUIRED,
                    NoSuchDoor => StatusCode::NOT_FOUND,
                    OrderOpen | CabinetNotOnline | CabinetBusy => StatusCode::CONFLICT,
                }
            }
            ApiError::Unavailable(_) | ApiError::Unreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Routed { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(cause) = self {
            // The cause stays in the log; the caller gets no internals.
            tracing::error!(error = %cause, "internal error");
        }
        let mut res = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unauthorized(_) => {
                res.insert_header(("WWW-Authenticate", "Bearer"));
            }
            ApiError::TooManyRequests { retry_after_s, .. } => {
                res.insert_header(("Retry-After", retry_after_s.to_string()));
            }
            ApiError::MethodNotAllowed { allow, .. } => {
                res.insert_header(("Allow", allow.join(", ")));
            }
            _ => {}
        }
        match self {
            ApiError::Routed { body, .. } => res.json(body),
            _ => res.json(self.body()),
        }
    }
}

impl ApiError {
    /// The JSON body this error leaves as.
    pub fn body(&self) -> ErrorBody {
        let mut body = ErrorBody { error: self.code(), message: self.to_string(), fields: None, detail: None };
        match self {
            ApiError::Invalid(fields) => body.fields = Some(fields.clone()),
            ApiError::Conflict { detail, .. } | ApiError::Scan { detail, .. } => body.detail = detail.clone(),
            _ => {}
        }
        body
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Pool(_) | DbError::Connect(_) => ApiError::Unavailable("database unavailable".into()),
            DbError::Fenced { sn, .. } => {
                ApiError::Unreachable(format!("cabinet {sn} moved to another node; ask again in a moment"))
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        let message = e.to_string();
        let conflict = |code| ApiError::Conflict { code, message: message.clone(), detail: None };
        match e {
            SessionError::Busy(info) => ApiError::Conflict {
                code: "cabinet_busy",
                message,
                detail: Some(serde_json::json!({ "session": info })),
            },
            SessionError::Opening => conflict("cabinet_busy"),
            SessionError::NotFound => ApiError::NotFound("cabinet".into()),
            SessionError::NotConnected => conflict("cabinet_not_connected"),
            SessionError::NotConfigured(_) => conflict("not_configured"),
            SessionError::NoSession(_) => conflict("no_session"),
            SessionError::PurchaseHeld => conflict("purchase_in_progress"),
            SessionError::StepOrder(_) => conflict("calibration_step_order"),
            SessionError::Invalid(fields) => ApiError::Invalid(fields),
            // The cabinet answered with the wrong number of readings: its fault, not the operator's.
            SessionError::Calibration(c) if c.code() == "count_mismatch" => ApiError::Device(message),
            SessionError::Calibration(c) => ApiError::Refused { code: c.code(), message },
            SessionError::Command(_) => ApiError::Device(message),
            SessionError::Loading | SessionError::Stopped => ApiError::Unavailable(message),
            SessionError::Db(e) => e.into(),
            SessionError::Cache(e) => e.into(),
            SessionError::Key(e) => ApiError::internal(e),
        }
    }
}

impl From<CacheError> for ApiError {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::Redis(_) => ApiError::Unavailable("cache unavailable".into()),
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::flows::FlowError> for ApiError {
    fn from(e: crate::flows::FlowError) -> Self {
        match e {
            crate::flows::FlowError::Db(e) => e.into(),
            crate::flows::FlowError::Cache(e) => e.into(),
            crate::flows::FlowError::Platform(e) => ApiError::Platform(e.to_string()),
        }
    }
}
