//! The catalogue over HTTP against an in-process Heft, in both profiles: create, list, get,
//! replace and delete products; every refused input stores nothing; a product on a lane cannot
//! be deleted but can be deactivated; a new name or price bumps the label version of the cabinets
//! that sell it.

#[macro_use]
mod common;

use common::{Profile, TestServer};
use diesel::RunQueryDsl;
use heft::db::models::Lane;
use heft::db::schema::lanes;
use heft::domain::operator::Role;
use reqwest::Method;
use serde_json::{Value, json};

fn cola() -> Value {
    json!({
        "name": "Cola 330 ml",
        "barcode": "6901234567892",
        "unit_g": 350.0,
        "tolerance_g": 10.0,
        "price_fen": 350,
        "image_url": "https://img.example.com/cola.png"
    })
}

fn with(mut base: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().expect("object") {
        base[k] = v.clone();
    }
    base
}

async fn create(s: &TestServer, body: &Value) -> Value {
    let (status, out) = s.call(Role::Operator, Method::POST, "/ops/products", Some(body)).await;
    assert_eq!(status, 201, "{out}");
    out
}

async fn ids(s: &TestServer, query: &str) -> Vec<i64> {
    let body = s.get_ok(&format!("/ops/products{query}")).await;
    body["products"].as_array().expect("products").iter().filter_map(|p| p["id"].as_i64()).collect()
}

/// Put lanes holding `product` straight into the database, as a saved configuration would.
fn put_lanes(s: &TestServer, sn: &str, codes: &[&str], product: i64) {
    let mut conn = s.heft.services.db.write_conn().expect("db connection");
    for (i, code) in codes.iter().enumerate() {
        let lane = Lane {
            sn: sn.into(),
            code: (*code).into(),
            door: 1,
            position: i as i32,
            name: format!("lane {code}"),
            channel: i as i32,
            capacity: 10,
            threshold: 2,
            product_id: Some(product),
            stock: 5,
            zero_counts: None,
            counts_per_g: None,
            calibrated_at: None,
        };
        diesel::insert_into(lanes::table).values(&lane).execute(&mut *conn).expect("insert lane");
    }
}

fn tags_version(s: &TestServer, sn: &str) -> i64 {
    let mut conn = s.heft.services.db.write_conn().expect("db connection");
    heft::db::cabinets::find(&mut conn, sn).expect("query").expect("cabinet").tags_version
}

async fn crud(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[]).await else { return };

    let created = create(&s, &cola()).await;
    let id = created["id"].as_i64().expect("id");
    assert_eq!(created["name"], "Cola 330 ml");
    assert_eq!(created["price_fen"], 350);
    assert_eq!(created["unit_g"], 350.0);
    assert_eq!(created["active"], true, "active unless said otherwise");
    assert_eq!(s.get_ok(&format!("/ops/products/{id}")).await, created);

    let water = create(&s, &json!({"name": "  Water 550 ml ", "barcode": "WATER-550", "unit_g": 570.0, "tolerance_g": 15.0, "price_fen": 200, "image_url": ""})).await;
    assert_eq!(water["name"], "Water 550 ml", "surrounding blanks go");
    assert!(water["image_url"].is_null(), "an empty URL is no URL");
    // 800.0 is the whole number 800, as JSON Schema has it: an integer field takes it.
    let chips = create(&s, &json!({"name": "Chips", "barcode": "4000001", "unit_g": 70.0, "tolerance_g": 5.0, "price_fen": 800.0, "active": false})).await;
    assert_eq!(chips["price_fen"], 800);
    let (water_id, chips_id) = (water["id"].as_i64().expect("id"), chips["id"].as_i64().expect("id"));

    assert_eq!(ids(&s, "").await, [id, water_id, chips_id]);
    assert_eq!(ids(&s, "?active=true").await, [id, water_id]);
    assert_eq!(ids(&s, "?active=false").await, [chips_id]);
    assert_eq!(ids(&s, "?q=water").await, [water_id], "names match without case");
    assert_eq!(ids(&s, "?q=COLA").await, [id]);
    assert_eq!(ids(&s, "?q=690123").await, [id], "barcodes match too");
    assert_eq!(ids(&s, "?q=%25").await, Vec::<i64>::new(), "% is literal");
    let page = s.get_ok("/ops/products?limit=2").await;
    assert_eq!(page["products"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["next_after"], water_id);
    let page = s.get_ok(&format!("/ops/products?limit=2&after={water_id}")).await;
    assert_eq!(page["products"][0]["id"], chips_id);
    assert!(page["next_after"].is_null());
    assert_eq!(s.get("/ops/products?limit=501").await.0, 400);

    let changed = with(cola(), json!({"name": "Cola 330 ml (new)", "price_fen": 300, "image_url": null}));
    let (status, body) = s.call(Role::Admin, Method::PUT, &format!("/ops/products/{id}"), Some(&changed)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["name"].as_str(), body["price_fen"].as_i64()), (Some("Cola 330 ml (new)"), Some(300)));
    assert!(body["image_url"].is_null(), "PUT replaces the whole product");
    assert_eq!(body["labels_pending"], json!([]), "no lane holds it");
    assert_eq!(body["created_at"], created["created_at"]);
    let (status, _) = s.call(Role::Admin, Method::PUT, "/ops/products/9999", Some(&cola())).await;
    assert_eq!(status, 404);

    let (status, _) = s.call(Role::Operator, Method::DELETE, &format!("/ops/products/{chips_id}"), None).await;
    assert_eq!(status, 204);
    assert_eq!(s.get(&format!("/ops/products/{chips_id}")).await.0, 404);
    let (status, body) = s.call(Role::Operator, Method::DELETE, &format!("/ops/products/{chips_id}"), None).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    assert_eq!(s.get("/ops/products/not-a-number").await.0, 400);

    let (status, _) = s.call(Role::Restocker, Method::GET, &format!("/ops/products/{id}"), None).await;
    assert_eq!(status, 200, "every role reads the catalogue");
    let (status, _) = s.call(Role::Restocker, Method::DELETE, &format!("/ops/products/{id}"), None).await;
    assert_eq!(status, 403);
    s.stop().await;
}
both_profiles!(products_are_created_listed_changed_and_deleted, crud);

async fn bad_input(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[]).await else { return };
    let existing = create(&s, &cola()).await;
    let other = create(&s, &with(cola(), json!({"barcode": "OTHER-1"}))).await;
    let before = s.get_ok("/ops/products").await;

    let cases = [
        (json!({"unit_g": -5.0}), "unit_g", "not_positive"),
        (json!({"tolerance_g": 0.0}), "tolerance_g", "not_positive"),
        (json!({"tolerance_g": 175.0}), "tolerance_g", "too_loose"),
        (json!({"price_fen": -1}), "price_fen", "negative"),
        (json!({"name": "  "}), "name", "required"),
        (json!({"barcode": "6901234567892"}), "barcode", "duplicate"),
    ];
    for (change, field, code) in &cases {
        let body = with(with(cola(), json!({"barcode": "NEW-0001"})), change.clone());
        let (status, out) = s.call(Role::Admin, Method::POST, "/ops/products", Some(&body)).await;
        assert_eq!(status, 422, "{change}: {out}");
        assert_eq!(out["error"], "invalid");
        assert_eq!(out["fields"].as_array().map(Vec::len), Some(1), "{out}");
        assert_eq!(
            (out["fields"][0]["field"].as_str(), out["fields"][0]["code"].as_str()),
            (Some(*field), Some(*code)),
            "{change}"
        );

        // The same refused on PUT, and the stored product stays as it was.
        let path = format!("/ops/products/{}", other["id"]);
        let body = with(with(cola(), json!({"barcode": "OTHER-1"})), change.clone());
        let (status, out) = s.call(Role::Admin, Method::PUT, &path, Some(&body)).await;
        assert_eq!((status, out["fields"][0]["code"].as_str()), (422, Some(*code)), "PUT {change}: {out}");
    }
    let (status, _) =
        s.call(Role::Admin, Method::POST, "/ops/products", Some(&with(cola(), json!({"unit_g": "heavy"})))).await;
    assert_eq!(status, 400, "a body that does not parse");
    assert_eq!(s.get_ok("/ops/products").await, before, "nothing was stored or changed");
    assert_eq!(s.get_ok(&format!("/ops/products/{}", existing["id"])).await, existing);
    s.stop().await;
}
both_profiles!(refused_input_stores_nothing, bad_input);

async fn in_use(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[]).await else { return };
    let cola = create(&s, &cola()).await;
    let water = create(
        &s,
        &json!({"name": "Water", "barcode": "WATER-550", "unit_g": 570.0, "tolerance_g": 15.0, "price_fen": 200}),
    )
    .await;
    let (cola_id, water_id) = (cola["id"].as_i64().expect("id"), water["id"].as_i64().expect("id"));
    for sn in ["CAB-1", "CAB-2", "CAB-3"] {
        s.provision(sn);
    }
    put_lanes(&s, "CAB-2", &["A1", "A2"], cola_id);
    put_lanes(&s, "CAB-1", &["B1"], cola_id);
    put_lanes(&s, "CAB-3", &["C1"], water_id);
    let versions = |s: &TestServer| ["CAB-1", "CAB-2", "CAB-3"].map(|sn| tags_version(s, sn));
    let v0 = versions(&s);

    let path = format!("/ops/products/{cola_id}");
    let (status, body) = s.call(Role::Operator, Method::DELETE, &path, None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body,
        json!({
            "error": "product_in_use",
            "message": format!("product {cola_id} is on 3 lanes; deactivate it instead"),
            "detail": {"lanes": [
                {"sn": "CAB-1", "code": "B1"},
                {"sn": "CAB-2", "code": "A1"},
                {"sn": "CAB-2", "code": "A2"},
            ]}
        })
    );
    assert_eq!(s.get_ok(&path).await, cola, "still there");

    // Neither name nor price: the labels stay as they are. The product as read back has fields
    // an input does not take (id, timestamps): those are refused, so the edit sends its own.
    let mut as_input = cola.clone();
    for read_only in ["id", "created_at", "updated_at"] {
        as_input.as_object_mut().expect("object").remove(read_only);
    }
    let (status, body) = s.call(Role::Operator, Method::PUT, &path, Some(&cola)).await;
    assert_eq!((status, body["fields"][0]["code"].as_str()), (422, Some("unknown_field")), "{body}");
    let heavier = with(as_input, json!({"unit_g": 355.0}));
    let (status, body) = s.call(Role::Operator, Method::PUT, &path, Some(&heavier)).await;
    assert_eq!((status, &body["labels_pending"]), (200, &json!([])), "{body}");
    assert_eq!(versions(&s), v0);

    // A new price: every cabinet selling it relabels, once, and no other.
    let cheaper = with(heavier.clone(), json!({"price_fen": 300}));
    let (status, body) = s.call(Role::Operator, Method::PUT, &path, Some(&cheaper)).await;
    assert_eq!((status, &body["labels_pending"]), (200, &json!(["CAB-1", "CAB-2"])), "{body}");
    assert_eq!(body["price_fen"], 300);
    assert_eq!(versions(&s), [v0[0] + 1, v0[1] + 1, v0[2]]);
    let renamed = with(cheaper.clone(), json!({"name": "Cola Zero"}));
    let (_, body) = s.call(Role::Operator, Method::PUT, &path, Some(&renamed)).await;
    assert_eq!(body["labels_pending"], json!(["CAB-1", "CAB-2"]));
    assert_eq!(versions(&s), [v0[0] + 2, v0[1] + 2, v0[2]]);

    // Deactivating is how a product on a lane is retired.
    let (status, body) =
        s.call(Role::Operator, Method::PUT, &path, Some(&with(renamed, json!({"active": false})))).await;
    assert_eq!((status, body["active"].as_bool()), (200, Some(false)), "{body}");
    assert_eq!(ids(&s, "?active=false").await, [cola_id]);
    assert_eq!(ids(&s, "?active=true").await, [water_id]);
    let (status, _) = s.call(Role::Operator, Method::DELETE, &path, None).await;
    assert_eq!(status, 409, "still on its lanes");
    let (status, body) = s.call(Role::Operator, Method::DELETE, &format!("/ops/products/{water_id}"), None).await;
    assert_eq!(body["message"], format!("product {water_id} is on 1 lane; deactivate it instead"));
    assert_eq!(status, 409);
    s.stop().await;
}
both_profiles!(products_on_lanes_are_kept_and_relabelled, in_use);
