//! Every request's text is looked at once, before any handler: a control character (a NUL byte
//! above all, which PostgreSQL refuses and SQLite stores) in the path, a query parameter or a JSON
//! body string is a 422 naming the field, on both backends alike; a body over `api.max_body_bytes`
//! is a 413. Handlers and storage then only ever see clean text. A whole number written as a
//! float (`26.0`) is taken as the integer it is, as JSON Schema has it.
//!
//! Payment callbacks (`/pay/…`) are left to their handlers, which answer in each platform's own
//! form.

use actix_web::body::BoxBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use futures_util::StreamExt;
use serde_json::Value;

use super::{ApiError, AppState};
use crate::domain::validation::{FieldError, has_control_chars};

/// The middleware: see the module doc.
pub async fn check(req: ServiceRequest, next: Next<BoxBody>) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    Ok(json_for_bare(checked(req, next).await?))
}

async fn checked(mut req: ServiceRequest, next: Next<BoxBody>) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if req.path().starts_with("/pay/") {
        return next.call(req).await;
    }
    if let Some(e) = check_path_and_query(&req) {
        return Ok(req.error_response(e));
    }
    if req.content_type().ends_with("json") {
        let limit = req.app_data::<web::Data<AppState>>().map_or(usize::MAX, |s| s.svc.config.api.max_body_bytes);
        let body = match read_body(req.take_payload(), limit).await {
            Ok(body) => body,
            Err(e) => return Ok(req.error_response(e)),
        };
        // Unreadable JSON is the handler's to answer (400); readable, its strings are checked.
        let mut body = body;
        if let Ok(mut value) = serde_json::from_slice::<Value>(&body) {
            let mut fields = Vec::new();
            walk(&value, "", &mut fields);
            if !fields.is_empty() {
                return Ok(req.error_response(ApiError::Invalid(fields)));
            }
            if whole_numbers(&mut value) {
                body = serde_json::to_vec(&value).map(web::Bytes::from).unwrap_or(body);
            }
        }
        req.set_payload(Payload::from(body));
    }
    next.call(req).await
}

/// The router's own answers (no route: 404; a method the path does not take: 405 with `Allow`)
/// come with no body: they get the JSON error body every other error has.
fn json_for_bare(res: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
    let status = res.status();
    let bare = !res.headers().contains_key(header::CONTENT_TYPE);
    if !bare || !(status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED) {
        return res;
    }
    let error = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = res.headers().get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or_default();
            ApiError::MethodNotAllowed {
                method: res.request().method().to_string(),
                allow: allow.split(',').map(|m| m.trim().to_string()).filter(|m| !m.is_empty()).collect(),
            }
        }
        _ => ApiError::NotFound(format!("route {}", res.request().path())),
    };
    let (req, _) = res.into_parts();
    ServiceResponse::new(req, actix_web::ResponseError::error_response(&error))
}

/// The body, or 413 once it grows past `limit`.
async fn read_body(mut payload: Payload, limit: usize) -> Result<web::Bytes, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn check_path_and_query(req: &ServiceRequest) -> Option<ApiError> {
    let mut fields = Vec::new();
    let path = percent_encoding::percent_decode_str(req.path()).decode_utf8_lossy();
    if has_control_chars(&path) {
        fields.push(control("path"));
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    for (key, value) in &pairs {
        if has_control_chars(key) || has_control_chars(value) {
            fields.push(control(key));
        }
    }
    (!fields.is_empty()).then_some(ApiError::Invalid(fields))
}

/// Every string (and object key) of a JSON value with a control character, by its path
/// (`doors[0].lanes[2].code`).
fn walk(value: &Value, path: &str, out: &mut Vec<FieldError>) {
    match value {
        Value::String(s) if has_control_chars(s) => out.push(control(if path.is_empty() { "body" } else { path })),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let at = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                if has_control_chars(key) {
                    out.push(control(&at));
                }
                walk(item, &at, out);
            }
        }
        _ => {}
    }
}

/// The largest integer an `f64` holds exactly (2^53).
const EXACT_IN_F64: f64 = 9_007_199_254_740_992.0;

/// A number written with a zero fraction (`26.0`) is the integer it equals, as JSON Schema (and
/// so the OpenAPI spec) has it, but serde refuses it for an integer field: such numbers are
/// rewritten as integers. A float field takes an integer as well. True when any was rewritten.
fn whole_numbers(value: &mut Value) -> bool {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() <= EXACT_IN_F64 => {
                *value = Value::from(f as i64);
                true
            }
            _ => false,
        },
        Value::Array(items) => items.iter_mut().fold(false, |any, v| whole_numbers(v) | any),
        Value::Object(map) => map.values_mut().fold(false, |any, v| whole_numbers(v) | any),
        _ => false,
    }
}

fn control(field: &str) -> FieldError {
    FieldError::new(field, "control_character", "control characters (such as NUL) are not allowed in text")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_keys_with_control_characters_are_named_by_path() {
        let v = serde_json::json!({
            "name": "Cola\u{0}",
            "doors": [{ "lanes": [{ "code": "A1" }, { "code": "A\u{1b}2" }] }],
            "note\u{7}": "fine",
            "ok": "line one\nline two",
        });
        let mut out = Vec::new();
        walk(&v, "", &mut out);
        let fields: Vec<&str> = out.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["doors[0].lanes[1].code", "name", "note\u{7}"]);
        assert!(out.iter().all(|f| f.code == "control_character"));
    }

    #[test]
    fn whole_numbers_written_as_floats_become_integers() {
        let mut v = serde_json::json!({"door": 26.0, "lanes": [{"capacity": 1.2e3, "unit_g": 12.5}], "big": 1e300});
        assert!(whole_numbers(&mut v));
        assert_eq!(v, serde_json::json!({"door": 26, "lanes": [{"capacity": 1200, "unit_g": 12.5}], "big": 1e300}));
        #[derive(serde::Deserialize)]
        struct Door {
            door: u32,
        }
        let door: Door = serde_json::from_value(v).expect("an integer field takes 26.0 once rewritten");
        assert_eq!(door.door, 26);
        let mut plain = serde_json::json!({"door": 26, "unit_g": 12.5});
        assert!(!whole_numbers(&mut plain), "nothing to rewrite");
    }
}
