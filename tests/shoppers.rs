//! Shopper sign-in from both mini-programs, against the payment simulator Heft runs: a login code
//! from the platform's phone side becomes a user and an account, created together or not at all.

mod common;

use common::{Profile, TestServer};
use diesel::RunQueryDsl;
use heft::domain::operator::Role;
use serde_json::{Value, json};

async fn sign_in(s: &TestServer, channel: &str, code: &str) -> (u16, Value) {
    let res = s
        .http
        .post(format!("{}/api/v1/auth/{channel}", s.base))
        .json(&json!({"code": code}))
        .send()
        .await
        .expect("http");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn count(s: &TestServer, table: &'static str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    s.heft
        .services
        .db
        .run(move |c| {
            diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}"))
                .get_result::<N>(c)
                .map(|r| r.n)
                .map_err(heft::db::DbError::from)
        })
        .await
        .expect("count")
}

async fn sql(s: &TestServer, statement: String) {
    s.heft
        .services
        .db
        .run(move |c| diesel::sql_query(statement).execute(c).map_err(heft::db::DbError::from))
        .await
        .expect("sql");
}

async fn shoppers(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[]).await else { return };
    for (channel, uid, bound) in [
        ("wechat", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "wechat_payscore"),
        ("alipay", "2088102000300001", "alipay_fund_auth"),
    ] {
        // First sign-in creates the user and the account.
        let code = s.platform_login_code(channel, uid).await;
        let (status, body) = sign_in(&s, channel, &code).await;
        assert_eq!(status, 200, "{channel}: {body}");
        assert_eq!(body["created"], true);
        assert_eq!(body["account"]["channels"], json!([bound]));
        assert_eq!(body["account"]["debt_fen"], 0);
        assert_eq!(body["account"]["blocked"], false);
        let user_id = body["account"]["user_id"].as_i64().expect("user id");
        let token = body["token"].as_str().expect("token").to_string();

        // The token works on the shopper API...
        let me: Value = s
            .http
            .get(format!("{}/api/v1/me", s.base))
            .bearer_auth(&token)
            .send()
            .await
            .expect("me")
            .json()
            .await
            .expect("json");
        assert_eq!(me["user_id"], user_id);
        // ...and not on the ops API.
        let res = s.http.get(format!("{}/ops/cabinets", s.base)).bearer_auth(&token).send().await.expect("http");
        assert_eq!(res.status().as_u16(), 401);

        // A code is good once: the platform refuses it the second time.
        let (status, body) = sign_in(&s, channel, &code).await;
        assert_eq!(status, 401, "reused code: {body}");

        // A later sign-in finds the same shopper.
        let code = s.platform_login_code(channel, uid).await;
        let (status, body) = sign_in(&s, channel, &code).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["created"], false);
        assert_eq!(body["account"]["user_id"], user_id);
    }
    assert_eq!((count(&s, "users").await, count(&s, "accounts").await), (2, 2));

    // Refusals: an empty code, a made-up code, no token, an ops token on the shopper API.
    let (status, body) = sign_in(&s, "wechat", "").await;
    assert_eq!((status, body["error"].as_str()), (422, Some("invalid")), "{body}");
    let (status, _) = sign_in(&s, "alipay", "made-up-code").await;
    assert_eq!(status, 401);
    let res = s.http.get(format!("{}/api/v1/me", s.base)).send().await.expect("http");
    assert_eq!(res.status().as_u16(), 401);
    let ops = s.ops_login(Role::Admin).await;
    let res = s.http.get(format!("{}/api/v1/me", s.base)).bearer_auth(ops).send().await.expect("http");
    assert_eq!(res.status().as_u16(), 401);

    // A failure between the two inserts leaves neither: make the account insert fail.
    match profile {
        Profile::Embedded => {
            sql(
                &s,
                "CREATE TRIGGER no_accounts BEFORE INSERT ON accounts BEGIN SELECT RAISE(ABORT, 'injected'); END"
                    .into(),
            )
            .await
        }
        Profile::Production => {
            sql(
                &s,
                "CREATE FUNCTION no_accounts() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'injected'; END $$ LANGUAGE plpgsql"
                    .into(),
            )
            .await;
            sql(
                &s,
                "CREATE TRIGGER no_accounts BEFORE INSERT ON accounts FOR EACH ROW EXECUTE FUNCTION no_accounts()"
                    .into(),
            )
            .await;
        }
    }
    let code = s.platform_login_code("wechat", "o-new-shopper").await;
    let (status, body) = sign_in(&s, "wechat", &code).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!((count(&s, "users").await, count(&s, "accounts").await), (2, 2), "nothing half-made");
    match profile {
        Profile::Embedded => sql(&s, "DROP TRIGGER no_accounts".into()).await,
        Profile::Production => sql(&s, "DROP TRIGGER no_accounts ON accounts".into()).await,
    }
    let code = s.platform_login_code("wechat", "o-new-shopper").await;
    let (status, body) = sign_in(&s, "wechat", &code).await;
    assert_eq!((status, &body["created"]), (200, &json!(true)), "{body}");
    assert_eq!((count(&s, "users").await, count(&s, "accounts").await), (3, 3));
    s.stop().await;
}
both_profiles!(shopper_sign_in, shoppers);

/// The mini-program API is documented where its developers look, generated from the handlers.
#[actix_rt::test]
async fn openapi_documents_the_mini_program_api() {
    let Some(s) = TestServer::start(Profile::Embedded, &[]).await else { return };
    let spec: Value =
        s.http.get(format!("{}/api-docs/openapi.json", s.base)).send().await.expect("spec").json().await.expect("json");
    for path in [
        "/api/v1/auth/wechat",
        "/api/v1/auth/alipay",
        "/api/v1/me",
        "/api/v1/cabinets/nearby",
        "/api/v1/orders",
        "/api/v1/orders/{id}",
        "/api/v1/orders/{id}/appeal",
        "/api/v1/orders/{id}/cancel",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} missing from the spec");
    }
    // An order's schema carries what the shopper is shown about refunds.
    let order = &spec["components"]["schemas"]["OrderView"]["properties"];
    assert!(order["refunds"].is_object() && order["refunded_fen"].is_object(), "{order}");
    assert!(spec["components"]["schemas"]["RefundView"].is_object());
    assert!(spec["components"]["securitySchemes"]["shopper"].is_object());
    let ui = s.http.get(format!("{}/swagger-ui/", s.base)).send().await.expect("swagger ui");
    assert_eq!(ui.status().as_u16(), 200);
    s.stop().await;
}
