//! The whole HTTP API as OpenAPI 3.1 (`/api-docs/openapi.json`, Swagger UI at `/swagger-ui/`):
//! the mini-program's routes, the ops API, health and the payment callbacks, generated from the
//! handlers' annotations so it cannot drift from the code. The errors every route can answer are
//! added to each operation in one place ([`CommonErrors`]), and the limits this node's
//! configuration sets are written into the spec it serves ([`spec`]).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::error::ErrorBody;
use super::{
    auth, bills, catalogue, health, live, messages, nearby, operators, ops, orders, pay_notify, refunds, reports,
    restock, reviews, setup, shoppers,
};
use crate::config::Config;
use crate::domain::validation::FieldError;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let bearer =
            || SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build());
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme("shopper", bearer());
            components.add_security_scheme("operator", bearer());
        }
    }
}

/// The answers any route may give besides its own, added where the route does not state them.
struct CommonErrors;

fn error(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", utoipa::openapi::ContentBuilder::new().schema(Some(error_ref())).build())
        .into()
}

fn error_ref() -> utoipa::openapi::Ref {
    utoipa::openapi::Ref::from_schema_name("ErrorBody")
}

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            // The callbacks answer in each platform's own form, all stated on the route.
            if path.starts_with("/pay/") {
                continue;
            }
            let has_path_params = path.contains('{');
            for op in operations(item) {
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let mut common = vec![
                    ("400", "A query, path or body that does not parse"),
                    ("413", "A body over `api.max_body_bytes`"),
                    ("422", "A field is refused, each named in `fields` (control characters in any text)"),
                    ("500", "Failed on our side; the log has the cause"),
                    ("503", "The database or the cache does not answer; try again"),
                ];
                if secured {
                    common.push(("401", "No token, or a wrong or expired one"));
                    common.push(("403", "The token's role may not do this"));
                }
                if has_path_params {
                    common.push(("404", "Nothing at this path"));
                }
                for (status, description) in common {
                    op.responses.responses.entry(status.to_string()).or_insert_with(|| error(description));
                }
            }
        }
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch].into_iter().flatten()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Heft API",
        description = "The mini-programs' API (`/api/v1`, a shopper's token), the ops API (`/ops`, an \
                       operator's token from `POST /ops/auth/login`; each route names the roles it \
                       allows), health, and the payment platforms' callbacks. Money is integer fen, \
                       weights grams. Times with an offset are RFC 3339; the few without one are UTC. \
                       Errors are `{\"error\": code, \"message\": text}`; refused fields are 422 with \
                       `fields`.",
        version = "1"
    ),
    paths(
        shoppers::login_wechat,
        shoppers::login_alipay,
        shoppers::me,
        nearby::nearby,
        orders::scan,
        orders::get,
        orders::history,
        orders::appeal,
        orders::cancel,
        health::healthz,
        health::readyz,
        health::metrics,
        pay_notify::wechat,
        pay_notify::alipay,
        auth::login,
        live::live,
        reviews::get_order,
        operators::create,
        operators::list,
        operators::patch,
        ops::list_cabinets,
        ops::list_nodes,
        ops::get_cabinet,
        ops::cabinet_events,
        ops::list_alerts,
        setup::get_config,
        setup::put_config,
        setup::send_price_tags,
        setup::start_calibration,
        setup::calibration_step,
        setup::abort_session,
        setup::list_sessions,
        setup::list_commands,
        setup::get_command,
        setup::live_weights,
        setup::list_cabinet_types,
        setup::put_cabinet_type,
        setup::weight_log,
        setup::lane_health,
        restock::start_restock,
        restock::start_maintenance,
        restock::list,
        restock::get,
        reviews::list,
        reviews::get,
        reviews::resolve,
        refunds::list,
        refunds::retry,
        bills::list_cases,
        bills::resolve_case,
        bills::get_file,
        bills::list_runs,
        bills::run_day,
        reports::daily,
        reports::stocktake,
        messages::list,
        messages::retry,
        pay_notify::ops_payment,
        catalogue::create,
        catalogue::list,
        catalogue::get,
        catalogue::replace,
        catalogue::delete,
    ),
    components(schemas(ErrorBody, FieldError)),
    modifiers(&Security, &CommonErrors),
    tags(
        (name = "shopper", description = "The mini-program: sign-in, account, orders"),
        (name = "cabinets", description = "The mini-program: finding a cabinet"),
        (name = "ops: fleet", description = "Cabinets, their state, alerts and weights"),
        (name = "ops: setup", description = "Configuration, labels, calibration, maintenance, commands"),
        (name = "ops: stock", description = "Restock tasks and restocking"),
        (name = "ops: catalogue", description = "Products"),
        (name = "ops: money", description = "Reviews, refunds, payments and the outbox"),
        (name = "ops: operators", description = "Operator sign-in and accounts"),
        (name = "ops: live", description = "The live view over a websocket (docs/live-protocol.md)"),
        (name = "health", description = "Probes and metrics"),
        (name = "payment callbacks", description = "What WeChat Pay and Alipay call"),
    )
)]
pub struct ApiDoc;

/// Text the server takes: no control character but a line break or a tab (`input` refuses the
/// rest, 422).
const NO_CONTROL_CHARS: &str = "^[^\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\x7F-\\x9F]*$";

/// The spec this node serves: the limits its configuration sets written in, and the rules the
/// derive cannot state, so the spec never allows what this node refuses.
pub fn spec(config: &Config) -> Result<serde_json::Value, serde_json::Error> {
    let mut json = serde_json::to_value(ApiDoc::openapi())?;
    let min_password = serde_json::json!(config.auth.min_password_len);
    for schema in ["CreateOperator", "PatchOperator"] {
        if let Some(p) = json.pointer_mut(&format!("/components/schemas/{schema}/properties/password")) {
            p["minLength"] = min_password.clone();
        }
    }
    if let Some(p) = json.pointer_mut("/components/schemas/StepIn/properties/standard_g") {
        p["maximum"] = serde_json::json!(config.calibration.max_standard_g);
    }
    let nearby = json.pointer_mut("/paths/~1api~1v1~1cabinets~1nearby/get/parameters").and_then(|p| p.as_array_mut());
    for p in nearby.into_iter().flatten() {
        let max = match p["name"].as_str() {
            Some("radius_m") => serde_json::json!(config.api.nearby_max_radius_m),
            Some("limit") => serde_json::json!(config.api.nearby_max_limit),
            _ => continue,
        };
        p["schema"]["maximum"] = max;
    }
    // A position is both coordinates or neither.
    if let Some(layout) = json.pointer_mut("/components/schemas/LayoutInput") {
        layout["anyOf"] = serde_json::json!([
            {"properties": {"lat": {"type": "null"}, "lng": {"type": "null"}}},
            {"required": ["lat", "lng"], "properties": {"lat": {"type": "number"}, "lng": {"type": "number"}}},
        ]);
    }
    no_control_chars(&mut json);
    Ok(json)
}

/// Every text a request carries (parameters, and the bodies' schemas with those they refer to)
/// declared free of control characters, unless it already has a pattern or is a word of an enum.
fn no_control_chars(spec: &mut serde_json::Value) {
    let mut bodies = std::collections::BTreeSet::new();
    for item in spec["paths"].as_object_mut().into_iter().flat_map(|p| p.values_mut()) {
        for op in item.as_object_mut().into_iter().flat_map(|i| i.values_mut()) {
            for p in op.get_mut("parameters").and_then(|p| p.as_array_mut()).into_iter().flatten() {
                text_pattern(&mut p["schema"]);
            }
            refs(&op["requestBody"], &mut bodies);
        }
    }
    // The bodies' schemas, and the schemas they refer to, to the bottom.
    let mut todo: Vec<String> = bodies.iter().cloned().collect();
    while let Some(name) = todo.pop() {
        let mut found = std::collections::BTreeSet::new();
        refs(&spec["components"]["schemas"][&name], &mut found);
        for n in found {
            if bodies.insert(n.clone()) {
                todo.push(n);
            }
        }
    }
    for name in bodies {
        text_pattern(&mut spec["components"]["schemas"][&name]);
    }
}

/// The component names `value` refers to.
fn refs(value: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(name) =
                map.get("$ref").and_then(|r| r.as_str()).and_then(|r| r.strip_prefix("#/components/schemas/"))
            {
                out.insert(name.to_string());
            }
            map.values().for_each(|v| refs(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// The no-control-characters pattern on every string of a schema without a pattern or an enum.
fn text_pattern(schema: &mut serde_json::Value) {
    let Some(map) = schema.as_object_mut() else { return };
    let is_string = match map.get("type") {
        Some(serde_json::Value::String(t)) => t == "string",
        Some(serde_json::Value::Array(ts)) => ts.iter().any(|t| t == "string"),
        _ => false,
    };
    if is_string && !map.contains_key("pattern") && !map.contains_key("enum") {
        map.insert("pattern".into(), NO_CONTROL_CHARS.into());
    }
    for v in map.values_mut() {
        match v {
            serde_json::Value::Array(items) => items.iter_mut().for_each(text_pattern),
            v => text_pattern(v),
        }
    }
}

pub fn routes(spec: serde_json::Value) -> impl Fn(&mut actix_web::web::ServiceConfig) {
    move |cfg: &mut actix_web::web::ServiceConfig| {
        cfg.service(
            utoipa_swagger_ui::SwaggerUi::new("/swagger-ui/{_:.*}")
                .external_url_unchecked("/api-docs/openapi.json", spec.clone()),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    fn config() -> Config {
        let env = [("HEFT__AUTH__MIN_PASSWORD_LEN", "14"), ("HEFT__API__NEARBY_MAX_LIMIT", "37")];
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::from_toml_and_env(include_str!("../../config.toml"), Path::new("config.toml"), env).expect("config")
    }

    fn served() -> serde_json::Value {
        spec(&config()).expect("the spec serializes")
    }

    /// Every route `web::routes` registers, as (method, path), read from its source: a resource
    /// and the methods routed to it, under the scope it is registered in.
    fn registered() -> BTreeSet<(String, String)> {
        let source = include_str!("mod.rs");
        let mut prefix = "";
        let mut out = BTreeSet::new();
        let mut current: Option<String> = None;
        for line in source.lines() {
            if line.contains("fn ops_routes") {
                prefix = "/ops";
            } else if line.contains("fn api_routes") {
                prefix = "";
            }
            for scope in ["/api/v1", "/pay"] {
                if line.contains(&format!("web::scope(\"{scope}\")")) {
                    prefix = scope;
                }
            }
            if let Some(start) = line.find("web::resource(\"") {
                let rest = &line[start + 15..];
                current = rest.find('"').map(|end| format!("{prefix}{}", &rest[..end]));
            }
            for method in ["get", "post", "put", "patch", "delete"] {
                if let Some(path) = &current {
                    for _ in line.matches(&format!("web::{method}()")) {
                        out.insert((method.to_string(), path.clone()));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_route_is_in_the_spec_and_nothing_else() {
        let spec = served();
        let mut documented = BTreeSet::new();
        for (path, item) in spec["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("item").keys() {
                documented.insert((method.clone(), path.clone()));
            }
        }
        let routes = registered();
        assert!(routes.len() > 50, "the route reader found only {}: {routes:?}", routes.len());
        let missing: Vec<_> = routes.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&routes).collect();
        assert!(missing.is_empty() && extra.is_empty(), "not documented: {missing:?}; not routed: {extra:?}");
    }

    #[test]
    fn operation_ids_are_unique() {
        let spec = served();
        let mut seen = BTreeSet::new();
        for item in spec["paths"].as_object().expect("paths").values() {
            for op in item.as_object().expect("item").values() {
                let id = op["operationId"].as_str().expect("operationId");
                assert!(seen.insert(id.to_string()), "operationId {id} is used twice");
            }
        }
        // Every link leads to an operation that exists.
        let text = spec.to_string();
        let mut links = 0;
        for part in text.split("\"operationId\":\"").skip(1) {
            let id = part.split('"').next().unwrap_or_default();
            assert!(seen.contains(id), "a link or operation names {id}, which is no operation");
            links += 1;
        }
        assert!(links > seen.len(), "the list and create operations link to what they return");
    }

    #[test]
    fn every_operation_states_the_errors_it_can_answer() {
        let spec = served();
        for (path, item) in spec["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("item") {
                let statuses: BTreeSet<&str> =
                    op["responses"].as_object().expect("responses").keys().map(|k| k.as_str()).collect();
                // Sign-in takes no token, and the live view takes it inside the websocket.
                let tokened = path.starts_with("/ops/") && path != "/ops/auth/login" && path != "/ops/live";
                let must: &[&str] = match (path.starts_with("/pay/"), tokened) {
                    (true, _) => &["400", "401", "413", "500", "503"],
                    (false, true) => &["400", "401", "403", "413", "422", "500", "503"],
                    (false, false) => &["400", "413", "422", "500", "503"],
                };
                for status in must {
                    assert!(statuses.contains(status), "{method} {path} does not state {status}: {statuses:?}");
                }
                if path.contains('{') {
                    assert!(statuses.contains("404"), "{method} {path} does not state 404");
                }
            }
        }
    }

    #[test]
    fn values_null_until_known_are_nullable() {
        let spec = served();
        let order = &spec["components"]["schemas"]["OrderView"];
        let required: Vec<&str> =
            order["required"].as_array().expect("required").iter().filter_map(|v| v.as_str()).collect();
        for field in ["before_g", "after_g", "total_fen", "paid_fen", "closed_at"] {
            let schema = &order["properties"][field];
            let nullable =
                !required.contains(&field) || schema.to_string().contains("null") || schema.get("type").is_none();
            assert!(nullable, "{field} is required and not nullable: {schema}");
        }
    }

    #[test]
    fn enums_and_limits_are_declared() {
        let spec = served();
        let schemas = &spec["components"]["schemas"];
        let statuses = schemas["OrderStatus"]["enum"].as_array().expect("OrderStatus is an enum");
        assert!(statuses.iter().any(|s| s == "paying") && statuses.iter().any(|s| s == "review"), "{statuses:?}");
        assert_eq!(schemas["LaneInput"]["properties"]["capacity"]["maximum"], 1000);
        assert_eq!(schemas["LayoutInput"]["properties"]["lat"]["maximum"], crate::domain::layout::MAX_LATITUDE);
        // This node's configuration is what the spec states.
        assert_eq!(schemas["StepIn"]["properties"]["standard_g"]["maximum"], 20000.0);
        let password = schemas["CreateOperator"]["properties"]["password"].to_string();
        assert!(password.contains("\"minLength\":14"), "{password}");
        let params = spec["paths"]["/api/v1/cabinets/nearby"]["get"]["parameters"].as_array().expect("params");
        let limit = params.iter().find(|p| p["name"] == "limit").expect("limit");
        assert!(limit["schema"].to_string().contains("\"maximum\":37"), "{limit}");
    }
}
