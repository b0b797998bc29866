//! Operator accounts over HTTP against an in-process Heft, in both profiles: login and tokens
//! (wrong, garbled, expired, disabled), roles per route, operator management by admins, the
//! login limiter, and `heft admin create` through the real binary.

#[macro_use]
mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use common::{ADMIN_USERNAME, Profile, TEST_PASSWORD, TestServer};
use heft::domain::operator::Role;
use heft::web::auth::{Claims, issue_token, jwt_secret};
use reqwest::Method;
use serde_json::{Value, json};

/// GET `path` with a raw `Authorization` header value (or none): (status, body).
async fn get_with(s: &TestServer, path: &str, authorization: Option<&str>) -> (u16, Value) {
    let mut req = s.http.get(format!("{}{path}", s.base));
    if let Some(a) = authorization {
        req = req.header("Authorization", a);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn unauthorized(message: &str) -> Value {
    json!({"error": "unauthorized", "message": message})
}

async fn login_and_tokens(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[]).await else { return };

    let (status, body) = s.login(ADMIN_USERNAME, TEST_PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("token").to_string();
    assert_eq!(body["operator"]["username"], ADMIN_USERNAME);
    assert_eq!(body["operator"]["role"], "admin");
    let id = body["operator"]["id"].as_i64().expect("id");
    let expires_at = chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().expect("expires_at"))
        .expect("RFC 3339")
        .timestamp();
    let ttl = expires_at - chrono::Utc::now().timestamp();
    assert!((43_100..=43_200).contains(&ttl), "token lives auth.token_ttl_s, got {ttl}");

    let (status, body) = get_with(&s, "/ops/cabinets", Some(&format!("Bearer {token}"))).await;
    assert_eq!(status, 200, "the token works: {body}");
    // Usernames ignore case.
    assert_eq!(s.login("ADMIN", TEST_PASSWORD).await.0, 200);
    let (_, ops) = s.get("/ops/operators").await;
    assert!(ops["operators"][0]["last_login_at"].is_string(), "login is recorded: {ops}");

    // Wrong password and unknown user: the same answer.
    let wrong_password = s.login(ADMIN_USERNAME, "not the password").await;
    let unknown_user = s.login("nobody-here", TEST_PASSWORD).await;
    assert_eq!(wrong_password, (401, unauthorized("wrong username or password")));
    assert_eq!(unknown_user, wrong_password);
    assert_eq!(s.login("x", TEST_PASSWORD).await, wrong_password, "impossible usernames too");

    assert_eq!(get_with(&s, "/ops/cabinets", None).await, (401, unauthorized("missing bearer token")));
    for garbled in ["Bearer garbage", "Bearer a.b.c", "Basic YWRtaW46eA==", "Bearer "] {
        assert_eq!(
            get_with(&s, "/ops/cabinets", Some(garbled)).await,
            (401, unauthorized("invalid token")),
            "{garbled}"
        );
    }
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    let (status, body) = get_with(&s, "/ops/cabinets", Some(&format!("Bearer {tampered}"))).await;
    assert_eq!((status, &body), (401, &unauthorized("invalid token")));

    let secret = jwt_secret(&s.config.auth, &s.heft.services.seal);
    let now = chrono::Utc::now().timestamp();
    let expired = issue_token(&secret, &Claims::new(id, ADMIN_USERNAME, Role::Admin, now - 7200, 3600)).expect("sign");
    let (status, body) = get_with(&s, "/ops/cabinets", Some(&format!("Bearer {expired}"))).await;
    assert_eq!((status, &body), (401, &unauthorized("token expired")));
    let forged =
        issue_token(b"not the node's key, not the node's key", &Claims::new(id, "admin", Role::Admin, now, 60));
    let (status, body) = get_with(&s, "/ops/cabinets", Some(&format!("Bearer {}", forged.expect("sign")))).await;
    assert_eq!((status, &body), (401, &unauthorized("invalid token")));
    let ghost = issue_token(&secret, &Claims::new(9999, "ghost", Role::Admin, now, 60)).expect("sign");
    let (status, _) = get_with(&s, "/ops/cabinets", Some(&format!("Bearer {ghost}"))).await;
    assert_eq!(status, 401, "a token for an operator that does not exist");
    s.stop().await;
}
both_profiles!(login_and_tokens_work, login_and_tokens);

async fn roles_per_route(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[]).await else { return };
    let product =
        json!({"name": "Cola", "barcode": "6901234567892", "unit_g": 350.0, "tolerance_g": 10.0, "price_fen": 350});

    let (status, body) = s.call(Role::Restocker, Method::POST, "/ops/products", Some(&product)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body,
        json!({"error": "forbidden", "message": "role restocker may not POST /ops/products; allowed: admin, operator"})
    );
    let (status, body) = s.call(Role::Maintainer, Method::PUT, "/ops/products/1", Some(&product)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["message"], "role maintainer may not PUT /ops/products/{id}; allowed: admin, operator");
    for &role in Role::ALL {
        let (status, body) = s.call(role, Method::GET, "/ops/products", None).await;
        assert_eq!(status, 200, "{role} reads the catalogue: {body}");
        let (status, _) = s.call(role, Method::GET, "/ops/cabinets", None).await;
        assert_eq!(status, 200, "{role} reads the fleet");
        let (status, body) = s.call(role, Method::GET, "/ops/operators", None).await;
        assert_eq!(status, if role == Role::Admin { 200 } else { 403 }, "{role} on operators: {body}");
    }
    let (status, _) = s.call(Role::Operator, Method::POST, "/ops/products", Some(&product)).await;
    assert_eq!(status, 201, "operators manage the catalogue");
    let new_op = json!({"username": "eve", "password": "long enough password", "role": "admin"});
    let (status, body) = s.call(Role::Operator, Method::POST, "/ops/operators", Some(&new_op)).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (403, Some("role operator may not POST /ops/operators; allowed: admin"))
    );
    s.stop().await;
}
both_profiles!(each_route_admits_its_roles, roles_per_route);

async fn operator_management(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[]).await else { return };
    let create = |body: Value| {
        let s = &s;
        async move { s.call(Role::Admin, Method::POST, "/ops/operators", Some(&body)).await }
    };

    let (status, bob) =
        create(json!({"username": "Bob.Restock", "password": "bob's long password", "role": "restocker"})).await;
    assert_eq!(status, 201, "{bob}");
    assert_eq!(
        (bob["username"].as_str(), bob["role"].as_str(), bob["active"].as_bool()),
        (Some("bob.restock"), Some("restocker"), Some(true))
    );
    assert!(bob.get("password_hash").is_none() && bob.get("password").is_none(), "{bob}");
    let bob_id = bob["id"].as_i64().expect("id");

    let (status, body) =
        create(json!({"username": "bob.restock", "password": "another long one", "role": "operator"})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        (body["fields"][0]["field"].as_str(), body["fields"][0]["code"].as_str()),
        (Some("username"), Some("duplicate"))
    );
    let (status, body) = create(json!({"username": "a b", "password": "short", "role": "root"})).await;
    assert_eq!(status, 422, "{body}");
    let fields: Vec<(&str, &str)> = body["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| (f["field"].as_str().unwrap_or(""), f["code"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(fields, [("username", "bad_format"), ("password", "too_short"), ("role", "unknown")]);

    let (status, list) = s.get("/ops/operators").await;
    assert_eq!(status, 200);
    let names: Vec<&str> =
        list["operators"].as_array().expect("list").iter().filter_map(|o| o["username"].as_str()).collect();
    assert_eq!(names, [ADMIN_USERNAME, "bob.restock"]);
    assert!(!list.to_string().contains("argon2"), "no hash leaves: {list}");

    let (status, body) = s.login("bob.restock", "bob's long password").await;
    assert_eq!(status, 200, "{body}");
    let bob_token = body["token"].as_str().expect("token").to_string();

    // Promote: the role counts at once, even with a token issued before.
    let path = format!("/ops/operators/{bob_id}");
    let (status, body) = s.call(Role::Admin, Method::PATCH, &path, Some(&json!({"role": "operator"}))).await;
    assert_eq!((status, body["role"].as_str()), (200, Some("operator")), "{body}");
    let res = s.http.get(format!("{}/ops/products", s.base)).bearer_auth(&bob_token).send().await.expect("request");
    assert_eq!(res.status(), 200);

    // New password: the old one stops working.
    let (status, _) =
        s.call(Role::Admin, Method::PATCH, &path, Some(&json!({"password": "a brand new password"}))).await;
    assert_eq!(status, 200);
    assert_eq!(s.login("bob.restock", "bob's long password").await.0, 401);
    assert_eq!(s.login("bob.restock", "a brand new password").await.0, 200);
    let (status, body) = s.call(Role::Admin, Method::PATCH, &path, Some(&json!({"password": "short"}))).await;
    assert_eq!((status, body["fields"][0]["code"].as_str()), (422, Some("too_short")));

    // Disabled: no login, and the token already issued is refused.
    let (status, body) = s.call(Role::Admin, Method::PATCH, &path, Some(&json!({"active": false}))).await;
    assert_eq!((status, body["active"].as_bool()), (200, Some(false)), "{body}");
    assert_eq!(
        s.login("bob.restock", "a brand new password").await,
        (401, json!({"error": "unauthorized", "message": "account disabled"}))
    );
    let (status, body) = get_with(&s, "/ops/products", Some(&format!("Bearer {bob_token}"))).await;
    assert_eq!((status, body["message"].as_str()), (401, Some("account disabled")));
    // Someone without the password is not told the account exists.
    assert_eq!(s.login("bob.restock", "guessing wrong").await.1["message"], "wrong username or password");

    // An admin cannot lock themself out.
    let (_, me) = s.login(ADMIN_USERNAME, TEST_PASSWORD).await;
    let me = format!("/ops/operators/{}", me["operator"]["id"]);
    for change in [json!({"role": "operator"}), json!({"active": false})] {
        let (status, body) = s.call(Role::Admin, Method::PATCH, &me, Some(&change)).await;
        assert_eq!((status, body["error"].as_str()), (409, Some("self_lockout")), "{change}: {body}");
    }
    let (status, body) = s.call(Role::Admin, Method::PATCH, &me, Some(&json!({"active": true}))).await;
    assert_eq!(status, 200, "a change that keeps them an admin is fine: {body}");
    let (status, _) = s.call(Role::Admin, Method::PATCH, "/ops/operators/9999", Some(&json!({"active": true}))).await;
    assert_eq!(status, 404);
    let (status, body) = s.call(Role::Admin, Method::PATCH, &path, Some(&json!({"role": "root"}))).await;
    assert_eq!((status, body["fields"][0]["field"].as_str()), (422, Some("role")));

    // A second admin may demote the first; then the first is refused at once.
    let (status, carol) =
        create(json!({"username": "carol", "password": "carol's long password", "role": "admin"})).await;
    assert_eq!(status, 201);
    let (_, carol_login) = s.login("carol", "carol's long password").await;
    let carol_token = carol_login["token"].as_str().expect("token");
    let res = s
        .http
        .patch(format!("{}{me}", s.base))
        .bearer_auth(carol_token)
        .json(&json!({"role": "maintainer"}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let (status, body) = s.get("/ops/operators").await;
    assert_eq!(
        (status, body["message"].as_str()),
        (403, Some("role maintainer may not GET /ops/operators; allowed: admin"))
    );
    let _ = carol;
    s.stop().await;
}
both_profiles!(admins_manage_operators, operator_management);

async fn login_limit(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[("HEFT__AUTH__LOGIN_ATTEMPTS_PER_MINUTE", "3")]).await else { return };
    s.ensure_operator("victim", Role::Operator).await;
    for _ in 0..3 {
        assert_eq!(s.login("victim", "a wrong guess!").await.0, 401);
    }
    let (status, body) = s.login("victim", TEST_PASSWORD).await;
    assert_eq!(status, 429, "refused even with the right password: {body}");
    assert_eq!(body["error"], "too_many_attempts");
    assert_eq!(s.login("VICTIM", TEST_PASSWORD).await.0, 429, "case does not make a new username");
    assert_eq!(s.login("someone-else", "x").await.0, 401, "other usernames have their own allowance");
    assert_eq!(s.login(ADMIN_USERNAME, TEST_PASSWORD).await.0, 200);
    s.stop().await;
}
both_profiles!(too_many_attempts_are_refused, login_limit);

/// Run the real `heft` binary against a storage's database.
fn heft_cli(db_url: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_heft"))
        .arg("--config")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"))
        .args(args)
        .env("HEFT__DATABASE__URL", db_url)
        .env("HEFT__LOG__FILTER", "warn")
        .env_remove("RUST_LOG")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("heft runs");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("heft exits");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[actix_rt::test]
async fn admin_create_through_the_binary() {
    let storage = common::storage(Profile::Embedded).expect("embedded storage");
    let url = storage.database_url.clone();

    let (ok, out, err) = heft_cli(&url, &["admin", "create", "--username", "Root.Admin", "--role", "admin"], None);
    assert!(ok, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("operator root.admin created"), "{out}");
    let password = out
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("the generated password is printed")
        .trim()
        .to_string();
    assert!(password.len() >= 32, "a strong password: {password}");

    let (ok, out, err) = heft_cli(&url, &["admin", "create", "--username", "root.admin"], None);
    assert!(!ok, "an existing username is refused: {out}");
    assert!(err.contains("operator root.admin already exists"), "{err}");

    let (ok, _, err) = heft_cli(
        &url,
        &["admin", "create", "--username", "rita", "--role", "restocker", "--password-stdin"],
        Some("short\n"),
    );
    assert!(!ok);
    assert!(err.contains("at least 10 characters"), "{err}");
    let (ok, out, err) = heft_cli(
        &url,
        &["admin", "create", "--username", "rita", "--role", "restocker", "--password-stdin"],
        Some("rita's own pass phrase\n"),
    );
    assert!(ok, "{err}");
    assert!(!out.contains("password:"), "a given password is not echoed: {out}");
    let (ok, _, err) = heft_cli(&url, &["admin", "create", "--username", "x1", "--role", "root"], None);
    assert!(!ok);
    assert!(err.contains("admin, operator, restocker or maintainer"), "{err}");

    let config = common::config(&storage, common::free_port(), &[]);
    let s = TestServer::start_with(storage, config).await;
    let (status, body) = s.login("root.admin", &password).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["operator"]["role"], "admin");
    let (status, body) = s.login("rita", "rita's own pass phrase").await;
    assert_eq!((status, body["operator"]["role"].as_str()), (200, Some("restocker")), "{body}");
    s.stop().await;
}
