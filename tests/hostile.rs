//! Hostile and sloppy input, on both backends alike: control characters anywhere in the text
//! of a request, unknown fields, invisible names, oversize bodies, methods a route does not
//! take, routes that do not exist, and cabinets that do not exist. Each gets its own clear error
//! in the one JSON error body, and nothing is stored.

#[macro_use]
mod common;

use common::{Profile, TestServer};
use heft::domain::operator::Role;
use reqwest::Method;
use serde_json::{Value, json};

fn field_codes(body: &Value) -> Vec<(String, String)> {
    body["fields"]
        .as_array()
        .map(|f| {
            f.iter()
                .map(|e| (e["field"].as_str().unwrap_or("").to_string(), e["code"].as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn product(name: &str) -> Value {
    json!({"name": name, "barcode": "6901234567892", "unit_g": 350.0, "tolerance_g": 10.0, "price_fen": 350})
}

async fn text(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[]).await else { return };
    // A NUL in a body string: 422 naming the field (PostgreSQL would have answered 500).
    let (status, body) = s.call(Role::Operator, Method::POST, "/ops/products", Some(&product("Cola\u{0}"))).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("invalid")), "{body}");
    assert_eq!(field_codes(&body), [("name".to_string(), "control_character".to_string())]);
    // Nested, and in a query parameter.
    let layout = json!({"doors": [{"door": 1, "lanes": [{"code": "A\u{0}1", "channel": 0}]}]});
    s.provision("HOST-1");
    let (status, body) = s.call(Role::Operator, Method::PUT, "/ops/cabinets/HOST-1/config", Some(&layout)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(field_codes(&body), [("doors[0].lanes[0].code".to_string(), "control_character".to_string())]);
    let (status, body) = s.call(Role::Operator, Method::GET, "/ops/cabinets?status=%00", None).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(field_codes(&body), [("status".to_string(), "control_character".to_string())]);
    // A name nobody could see.
    let (status, body) =
        s.call(Role::Operator, Method::POST, "/ops/products", Some(&product(" \u{200B}\u{FEFF} "))).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(field_codes(&body), [("name".to_string(), "required".to_string())]);
    // An unknown field is named, not ignored.
    let mut typo = product("Cola");
    typo["prise_fen"] = json!(300);
    let (status, body) = s.call(Role::Operator, Method::POST, "/ops/products", Some(&typo)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(field_codes(&body), [("prise_fen".to_string(), "unknown_field".to_string())]);
    let (status, body) = s.call(Role::Operator, Method::GET, "/ops/cabinets?stauts=ready", None).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_request")), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("stauts")), "{body}");
    // None of it was stored.
    let listed = s.get_ok("/ops/products").await;
    assert_eq!(listed["products"].as_array().map(Vec::len), Some(0), "{listed}");
    s.stop().await;
}
both_profiles!(text_is_checked_before_storage, text);

async fn framework(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[("HEFT__API__MAX_BODY_BYTES", "4096")]).await else { return };
    // A method the path does not take: 405 with Allow, in the JSON error body.
    let (status, body) = s.call(Role::Operator, Method::DELETE, "/ops/cabinets", None).await;
    assert_eq!((status, body["error"].as_str()), (405, Some("method_not_allowed")), "{body}");
    let res = s.http.patch(format!("{}/ops/products", s.base)).send().await.expect("patch");
    assert_eq!(res.status().as_u16(), 405);
    let allow = res.headers().get("allow").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    // No such route: 404, JSON.
    let (status, body) = s.call(Role::Operator, Method::GET, "/ops/no-such-thing", None).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")), "{body}");
    // Over the body limit: 413, JSON.
    let big = product(&"x".repeat(5000));
    let (status, body) = s.call(Role::Operator, Method::POST, "/ops/products", Some(&big)).await;
    assert_eq!((status, body["error"].as_str()), (413, Some("payload_too_large")), "{body}");
    // The payment callbacks answer in each platform's own form.
    let res = s.http.post(format!("{}/pay/wechat/notify", s.base)).body(vec![b'{'; 5000]).send().await.expect("wechat");
    assert_eq!(res.status().as_u16(), 413);
    let body: Value = res.json().await.expect("wechat reply is JSON");
    assert_eq!(body["code"], "FAIL", "{body}");
    let res = s.http.post(format!("{}/pay/alipay/notify", s.base)).body(vec![b'a'; 5000]).send().await.expect("alipay");
    assert_eq!(res.status().as_u16(), 413);
    assert_eq!(res.text().await.expect("alipay reply"), "fail");
    // A cabinet that does not exist is 404 on every sub-resource.
    for sub in ["", "/sessions", "/commands", "/weight-log", "/events", "/config", "/weights"] {
        let (status, body) = s.call(Role::Operator, Method::GET, &format!("/ops/cabinets/NOPE-1{sub}"), None).await;
        assert_eq!((status, body["error"].as_str()), (404, Some("not_found")), "{sub}: {body}");
    }
    s.stop().await;
}
both_profiles!(framework_errors_are_json, framework);
