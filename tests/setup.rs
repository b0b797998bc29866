//! Setting a cabinet up, end to end, in both profiles: an operator logs in, creates products,
//! configures a simulated cabinet (which acks the configuration and the labels), calibrates it
//! from `initializing` to sellable, reads weights back in grams against the simulator's ground
//! truth, is refused a second session while one is active, finds the cabinet nearby, and gets a
//! clear error for each bad input with nothing changed.

mod common;

use heft::domain::units::Fen;
use std::time::Duration;

use common::{EVENTUALLY, Profile, TestServer, call, eventually, ok};
use heft::domain::operator::Role;
use heft::sim::handle::{SimCabinet, SimCabinetOptions};
use heft::sim::scale::Fault;
use serde_json::{Value, json};

/// Where the simulated cabinet stands (GCJ-02, People's Square, Shanghai).
const HERE: (f64, f64) = (31.2304, 121.4737);

async fn product(s: &TestServer, token: &str, name: &str, barcode: &str, unit_g: f64, price_fen: i64) -> i64 {
    let body = json!({"name": name, "barcode": barcode, "unit_g": unit_g, "tolerance_g": 8.0, "price_fen": price_fen});
    ok(s, "POST", "/ops/products", token, Some(body)).await["id"].as_i64().expect("product id")
}

fn layout(cola: i64, chips: i64) -> Value {
    json!({
        "address": "People's Square, Huangpu, Shanghai",
        "lat": HERE.0,
        "lng": HERE.1,
        "doors": [{"door": 1, "lanes": [
            {"code": "A1", "name": "left", "channel": 0, "capacity": 10, "threshold": 2, "product_id": cola, "stock": 5},
            {"code": "A2", "name": "right", "channel": 1, "capacity": 12, "threshold": 3, "product_id": chips, "stock": 3}
        ]}]
    })
}

async fn command_status(s: &TestServer, token: &str, cmd_id: &str) -> String {
    eventually(&format!("command {cmd_id} finishes"), || async {
        let c = ok(s, "GET", &format!("/ops/commands/{cmd_id}"), token, None).await;
        let status = c["status"].as_str().unwrap_or("").to_string();
        (status != "pending").then_some(status)
    })
    .await
}

async fn config(s: &TestServer, token: &str, sn: &str) -> Value {
    ok(s, "GET", &format!("/ops/cabinets/{sn}/config"), token, None).await
}

/// Configured and labelled: both versions acked.
async fn delivered(s: &TestServer, token: &str, sn: &str) -> Value {
    eventually("configuration and labels acked", || async {
        let c = config(s, token, sn).await;
        let done = c["config_version"] == c["config_acked_version"] && c["tags_version"] == c["tags_acked_version"];
        done.then_some(c)
    })
    .await
}

async fn calibrate(s: &TestServer, token: &str, sn: &str, standard_g: f64) -> Value {
    ok(s, "POST", &format!("/ops/cabinets/{sn}/calibration"), token, Some(json!({"door": 1}))).await;
    ok(s, "POST", &format!("/ops/cabinets/{sn}/calibration/tare"), token, None).await;
    let span = json!({"standard_g": standard_g});
    ok(s, "POST", &format!("/ops/cabinets/{sn}/calibration/span"), token, Some(span.clone())).await;
    ok(s, "POST", &format!("/ops/cabinets/{sn}/calibration/verify"), token, Some(span)).await
}

async fn sim(s: &TestServer, sn: &str, opts: SimCabinetOptions) -> SimCabinet {
    let creds = s.provision(sn);
    SimCabinet::start(creds, &s.broker, opts).await.expect("simulated cabinet logs in")
}

fn quiet(seed: u64) -> SimCabinetOptions {
    SimCabinetOptions { noise_g: 1.0, creep_g_per_h: 0.0, seed: Some(seed), position: Some(HERE), ..Default::default() }
}

async fn setup_end_to_end(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[]).await else { return };
    let token = s.ops_login(Role::Operator).await;
    let t = token.as_str();
    let cola = product(&s, t, "Cola 330 ml", "6901234567892", 355.0, 350).await;
    let chips = product(&s, t, "Chips 70 g", "6901234567908", 78.0, 600).await;
    let cab = sim(&s, "SET-1", quiet(7)).await;

    // Configure: stored, sent, acked; then the labels follow.
    let saved = ok(&s, "PUT", "/ops/cabinets/SET-1/config", t, Some(layout(cola, chips))).await;
    assert_eq!(saved["delivery"], "sent", "{saved}");
    assert_eq!(command_status(&s, t, saved["cmd_id"].as_str().expect("cmd_id")).await, "acked");
    let c = delivered(&s, t, "SET-1").await;
    assert_eq!(c["status"], "initializing", "configured but not calibrated: {c}");
    let sent = cab.last_config().expect("the cabinet holds the configuration");
    assert_eq!(sent.version, c["config_version"].as_u64().expect("version"));
    assert_eq!(
        sent.doors[0].lanes.iter().map(|l| (l.code.as_str(), l.channel)).collect::<Vec<_>>(),
        [("A1", 0), ("A2", 1)]
    );
    let tags = cab.price_tags();
    assert!(tags.iter().any(|t| t.lane == "A1" && t.name == "Cola 330 ml" && t.price_fen == Fen(350)), "{tags:?}");
    assert!(tags.iter().any(|t| t.lane == "A2" && t.price_fen == Fen(600)), "{tags:?}");
    assert_eq!(s.cabinet("SET-1").await["sellable"], false);

    // A session holds the cabinet: a second one is refused with 409, saying which and since when.
    ok(&s, "POST", "/ops/cabinets/SET-1/calibration", t, Some(json!({"door": 1}))).await;
    let (status, body) = call(&s, "PUT", "/ops/cabinets/SET-1/config", t, Some(layout(cola, chips))).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "cabinet_busy");
    assert_eq!(body["detail"]["session"]["kind"], "calibration");
    assert!(body["detail"]["session"]["since"].is_string(), "{body}");
    let (status, body) = call(&s, "POST", "/ops/cabinets/SET-1/price-tags", t, None).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("cabinet_busy")), "{body}");
    let (status, body) = call(&s, "POST", "/ops/cabinets/SET-1/calibration", t, Some(json!({"door": 1}))).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(config(&s, t, "SET-1").await["config_version"], c["config_version"], "nothing changed");

    // Readings taken while the session holds the cabinet carry its id in the weight log.
    let held = ok(&s, "GET", "/ops/cabinets/SET-1/sessions", t, None).await["current"]["id"].clone();
    cab.send_weights_now().await.expect("weights");
    eventually("a reading of the calibration session in the weight log", || async {
        let v = ok(&s, "GET", &format!("/ops/cabinets/SET-1/weight-log?session_id={held}"), t, None).await;
        v["readings"].as_array().is_some_and(|r| !r.is_empty()).then_some(())
    })
    .await;

    // A body that is not a step's is refused, never taken for no body (a tare).
    for bad in [json!(5), json!({"standard_g": "500"}), json!({"weight": 500}), json!({"standard_g": 1e9})] {
        let (status, body) = call(&s, "POST", "/ops/cabinets/SET-1/calibration/tare", t, Some(bad.clone())).await;
        assert!(matches!(status, 400 | 422), "{bad} taken: {status} {body}");
    }
    // Steps out of order are refused; then tare → span → verify makes the cabinet ready.
    let (status, body) =
        call(&s, "POST", "/ops/cabinets/SET-1/calibration/verify", t, Some(json!({"standard_g": 500.0}))).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("calibration_step_order")), "{body}");
    let tare = ok(&s, "POST", "/ops/cabinets/SET-1/calibration/tare", t, None).await;
    assert_eq!(tare["lanes"].as_array().map(Vec::len), Some(2), "{tare}");
    let (status, body) = call(&s, "POST", "/ops/cabinets/SET-1/calibration/span", t, None).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("invalid")), "span needs its weight: {body}");
    let span = json!({"standard_g": 500.0});
    ok(&s, "POST", "/ops/cabinets/SET-1/calibration/span", t, Some(span.clone())).await;
    let verify = ok(&s, "POST", "/ops/cabinets/SET-1/calibration/verify", t, Some(span)).await;
    assert_eq!(verify["done"], true, "{verify}");
    for lane in verify["lanes"].as_array().expect("lanes") {
        let g = lane["grams"].as_f64().expect("grams");
        assert!((g - 500.0).abs() <= 2.0, "verify reads the standard weight: {lane}");
    }
    let cabinet = s.cabinet("SET-1").await;
    assert_eq!((cabinet["status"].as_str(), cabinet["sellable"].as_bool()), (Some("ready"), Some(true)), "{cabinet}");

    // Goods on the lanes: Heft's grams agree with the simulator's ground truth.
    cab.stock(0, 355.0, 5).expect("stock A1");
    cab.stock(1, 78.0, 3).expect("stock A2");
    let truth = cab.truth();
    let weights = eventually("stable weights", || async {
        cab.send_weights_now().await.expect("weights sent");
        let w = ok(&s, "GET", "/ops/cabinets/SET-1/weights", t, None).await;
        let lanes = w["lanes"].as_array().cloned().unwrap_or_default();
        lanes.iter().all(|l| l["stable_g"].is_number()).then_some(lanes)
    })
    .await;
    for lane in &weights {
        let code = lane["code"].as_str().expect("code");
        let real = truth.iter().find(|t| t.code.as_deref() == Some(code)).expect("truth for lane").grams;
        let seen = lane["stable_g"].as_f64().expect("stable");
        assert!((seen - real).abs() <= 5.0, "lane {code}: Heft reads {seen} g, the shelf holds {real} g");
    }

    // A price change reaches the cabinet's label, and its ack is tracked.
    let before = config(&s, t, "SET-1").await["tags_version"].as_i64().expect("tags version");
    let cola_body = json!({"name": "Cola 330 ml", "barcode": "6901234567892", "unit_g": 355.0, "tolerance_g": 8.0, "price_fen": 400});
    let changed = ok(&s, "PUT", &format!("/ops/products/{cola}"), t, Some(cola_body)).await;
    assert_eq!(changed["labels_pending"], json!(["SET-1"]), "{changed}");
    let c = delivered(&s, t, "SET-1").await;
    assert!(c["tags_version"].as_i64().expect("tags version") > before, "{c}");
    let tags = cab.price_tags();
    assert!(tags.iter().any(|t| t.lane == "A1" && t.price_fen == Fen(400)), "the label shows the new price: {tags:?}");

    // The readings are in the weight log (written in batches), in grams per lane.
    let log = eventually("readings in the weight log", || async {
        let v = ok(&s, "GET", "/ops/cabinets/SET-1/weight-log?limit=20", t, None).await;
        let rows = v["readings"].as_array().cloned().unwrap_or_default();
        rows.into_iter().find(|r| r["kind"] == "closed" && r["grams"].as_str().is_some_and(|g| g.contains("A1")))
    })
    .await;
    assert!(log["session_id"].is_null(), "a closed-door reading outside any session: {log}");

    // Nearby: a second cabinet 5 km north, configured while not connected (its configuration
    // waits for its first login, its position is indexed at once).
    s.provision("SET-FAR");
    let mut far_layout = layout(cola, chips);
    far_layout["lat"] = json!(HERE.0 + 0.045);
    let saved = ok(&s, "PUT", "/ops/cabinets/SET-FAR/config", t, Some(far_layout)).await;
    assert_eq!(saved["delivery"], "pending", "{saved}");
    let nearby = |lat: f64, radius: u32| {
        let (s, t) = (&s, t);
        async move {
            let path = format!("/api/v1/cabinets/nearby?lat={lat}&lng={}&radius_m={radius}", HERE.1);
            ok(s, "GET", &path, t, None).await["cabinets"].as_array().cloned().unwrap_or_default()
        }
    };
    let found = eventually("both cabinets indexed", || async {
        let all = nearby(HERE.0, 10_000).await;
        (all.len() == 2).then_some(all)
    })
    .await;
    assert_eq!(found.iter().map(|c| c["sn"].as_str().unwrap_or("")).collect::<Vec<_>>(), ["SET-1", "SET-FAR"]);
    let near = nearby(HERE.0 + 0.0018, 1000).await;
    assert_eq!(near.len(), 1, "only the cabinet within 1 km: {near:?}");
    let hit = &near[0];
    assert_eq!(hit["sn"], "SET-1");
    assert!((150.0..250.0).contains(&hit["distance_m"].as_f64().expect("distance")), "{hit}");
    assert_eq!((hit["sellable"].as_bool(), hit["has_stock"].as_bool()), (Some(true), Some(true)), "{hit}");
    assert_eq!(hit["address"], "People's Square, Huangpu, Shanghai");
    let far = nearby(HERE.0 + 0.045, 1000).await;
    assert_eq!(far.iter().map(|c| c["sn"].as_str().unwrap_or("")).collect::<Vec<_>>(), ["SET-FAR"]);
    assert_eq!(far[0]["sellable"], false, "not configured nor connected: {far:?}");
    // Past the square a map index covers (|lat| > 85.05112878) is out of range, not a failure.
    for lat in ["91", "-90", "85.06"] {
        let (status, body) = call(&s, "GET", &format!("/api/v1/cabinets/nearby?lat={lat}&lng=-180"), t, None).await;
        assert_eq!((status, body["fields"][0]["field"].as_str()), (422, Some("lat")), "{lat}: {body}");
    }

    cab.stop().await;
    s.stop().await;
}
both_profiles!(setup, setup_end_to_end);

/// Each invalid configuration is refused whole, with the field and the reason, and nothing
/// changes: not the version, not the lanes, and nothing is sent to the cabinet.
async fn bad_configurations(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[]).await else { return };
    let token = s.ops_login(Role::Operator).await;
    let t = token.as_str();
    let cola = product(&s, t, "Cola", "6901234567892", 355.0, 350).await;
    let chips = product(&s, t, "Chips", "6901234567908", 78.0, 600).await;
    let cab = sim(&s, "BAD-1", quiet(3)).await;
    ok(&s, "PUT", "/ops/cabinets/BAD-1/config", t, Some(layout(cola, chips))).await;
    let before = delivered(&s, t, "BAD-1").await;
    let acks = cab.acks_sent();

    // (what, lane, key, bad value, error path, error code)
    let cases = [
        ("unknown product", 0, "product_id", json!(999_999), "doors[0].lanes[0].product_id", "unknown_product"),
        ("duplicate lane code", 1, "code", json!("A1"), "doors[0].lanes[1].code", "duplicate"),
        ("channel out of range", 1, "channel", json!(40), "doors[0].lanes[1].channel", "out_of_range"),
        (
            "threshold above capacity",
            0,
            "threshold",
            json!(11),
            "doors[0].lanes[0].threshold",
            "threshold_above_capacity",
        ),
    ];
    for (what, lane, key, value, field, code) in cases {
        let mut body = layout(cola, chips);
        body["doors"][0]["lanes"][lane][key] = value;
        let (status, res) = call(&s, "PUT", "/ops/cabinets/BAD-1/config", t, Some(body)).await;
        assert_eq!(status, 422, "{what}: {res}");
        assert_eq!(res["error"], "invalid", "{what}");
        let fields = res["fields"].as_array().expect("fields");
        assert!(fields.iter().any(|f| f["field"] == field && f["code"] == code), "{what}: {res}");
        let after = config(&s, t, "BAD-1").await;
        assert_eq!(after, before, "{what}: nothing changed");
    }
    let (status, res) = call(&s, "PUT", "/ops/cabinets/NOPE/config", t, Some(layout(cola, chips))).await;
    assert_eq!(status, 404, "{res}");
    assert_eq!(cab.acks_sent(), acks, "nothing was sent to the cabinet");

    // Calibration refusals: a tare with the door open; a dead load cell whose reading does not
    // move under the standard weight; a reversed one whose reading goes down.
    ok(&s, "POST", "/ops/cabinets/BAD-1/calibration", t, Some(json!({"door": 1}))).await;
    cab.open_door(1).await.expect("door opens");
    let (status, res) = call(&s, "POST", "/ops/cabinets/BAD-1/calibration/tare", t, None).await;
    assert_eq!((status, res["error"].as_str()), (422, Some("door_open")), "{res}");
    cab.close_door(1).await.expect("door closes");
    ok(&s, "DELETE", "/ops/cabinets/BAD-1/session", t, None).await;
    let sessions = ok(&s, "GET", "/ops/cabinets/BAD-1/sessions", t, None).await;
    assert!(sessions["current"].is_null(), "{sessions}");
    assert_eq!(sessions["recent"][0]["outcome"], "aborted", "{sessions}");
    assert_eq!(s.cabinet("BAD-1").await["status"], "initializing");
    cab.stop().await;

    for (sn, fault, code) in [("BAD-2", Fault::Dead, "not_moved"), ("BAD-3", Fault::Reversed, "non_monotonic")] {
        let opts = SimCabinetOptions { faults: vec![(1, fault)], ..quiet(11) };
        let cab = sim(&s, sn, opts).await;
        ok(&s, "PUT", &format!("/ops/cabinets/{sn}/config"), t, Some(layout(cola, chips))).await;
        delivered(&s, t, sn).await;
        ok(&s, "POST", &format!("/ops/cabinets/{sn}/calibration"), t, Some(json!({"door": 1}))).await;
        ok(&s, "POST", &format!("/ops/cabinets/{sn}/calibration/tare"), t, None).await;
        let (status, res) =
            call(&s, "POST", &format!("/ops/cabinets/{sn}/calibration/span"), t, Some(json!({"standard_g": 500.0})))
                .await;
        assert_eq!((status, res["error"].as_str()), (422, Some(code)), "{sn}: {res}");
        assert!(res["message"].as_str().unwrap_or("").contains("A2"), "names the lane: {res}");
        let lanes = config(&s, t, sn).await["doors"][0]["lanes"].clone();
        assert!(lanes.as_array().expect("lanes").iter().all(|l| l["calibrated"] == false), "{lanes}");
        cab.stop().await;
    }
    s.stop().await;
}
both_profiles!(bad_input, bad_configurations);

/// Calibration copes with noise: a realistic σ 8 g cell is calibrated from as many samples as it
/// needs; one far too noisy to count anything is refused, saying so and naming the lane.
async fn noisy_calibration(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[]).await else { return };
    let token = s.ops_login(Role::Operator).await;
    let t = token.as_str();
    let cola = product(&s, t, "Cola", "6901234567892", 355.0, 350).await;
    let chips = product(&s, t, "Chips", "6901234567908", 78.0, 600).await;
    for (sn, noise_g, refused) in [("CAL-8", 8.0, None), ("CAL-60", 60.0, Some("noisy"))] {
        let opts = SimCabinetOptions { noise_g, realistic: true, ..quiet(21) };
        let cab = sim(&s, sn, opts).await;
        ok(&s, "PUT", &format!("/ops/cabinets/{sn}/config"), t, Some(layout(cola, chips))).await;
        delivered(&s, t, sn).await;
        ok(&s, "POST", &format!("/ops/cabinets/{sn}/calibration"), t, Some(json!({"door": 1}))).await;
        ok(&s, "POST", &format!("/ops/cabinets/{sn}/calibration/tare"), t, None).await;
        let span = json!({"standard_g": 500.0});
        let (status, res) =
            call(&s, "POST", &format!("/ops/cabinets/{sn}/calibration/span"), t, Some(span.clone())).await;
        match refused {
            None => {
                assert_eq!(status, 200, "{sn}: {res}");
                let done = ok(&s, "POST", &format!("/ops/cabinets/{sn}/calibration/verify"), t, Some(span)).await;
                assert_eq!(done["done"], true, "{done}");
                for lane in done["lanes"].as_array().expect("lanes") {
                    let g = lane["grams"].as_f64().expect("grams");
                    assert!((g - 500.0).abs() < 5.0, "{sn}: {lane}");
                }
            }
            Some(code) => {
                assert_eq!((status, res["error"].as_str()), (422, Some(code)), "{sn}: {res}");
                assert!(res["message"].as_str().unwrap_or("").contains("too noisy"), "{res}");
            }
        }
        cab.stop().await;
    }
    s.stop().await;
}
both_profiles!(noise, noisy_calibration);

/// Commands are retried when the ack does not come, and end `timed_out` (freeing the cabinet)
/// when it never does; a cabinet that refuses ends the command `failed`.
async fn commands_retry_and_time_out(profile: Profile) {
    let extra = [("HEFT__PROTOCOL__COMMAND_TIMEOUT_MS", "300"), ("HEFT__PROTOCOL__COMMAND_RETRIES", "2")];
    let Some(s) = TestServer::start(profile, &extra).await else { return };
    let token = s.ops_login(Role::Admin).await;
    let t = token.as_str();
    let cola = product(&s, t, "Cola", "6901234567892", 355.0, 350).await;
    let chips = product(&s, t, "Chips", "6901234567908", 78.0, 600).await;
    let cab = sim(&s, "CMD-1", quiet(5)).await;

    cab.set_drop_acks(1);
    let saved = ok(&s, "PUT", "/ops/cabinets/CMD-1/config", t, Some(layout(cola, chips))).await;
    let id = saved["cmd_id"].as_str().expect("cmd_id").to_string();
    assert_eq!(command_status(&s, t, &id).await, "acked");
    let row = ok(&s, "GET", &format!("/ops/commands/{id}"), t, None).await;
    assert_eq!(row["attempts"], 2, "one retry after the dropped ack: {row}");
    delivered(&s, t, "CMD-1").await;

    cab.set_drop_acks(1000);
    let d = ok(&s, "POST", "/ops/cabinets/CMD-1/price-tags", t, None).await;
    let id = d["cmd_id"].as_str().expect("cmd_id").to_string();
    assert_eq!(command_status(&s, t, &id).await, "timed_out");
    let row = ok(&s, "GET", &format!("/ops/commands/{id}"), t, None).await;
    assert_eq!(row["attempts"], 3, "first send and two retries: {row}");
    let sessions = eventually("the session ends", || async {
        let v = ok(&s, "GET", "/ops/cabinets/CMD-1/sessions", t, None).await;
        v["current"].is_null().then_some(v)
    })
    .await;
    assert_eq!(sessions["recent"][0]["outcome"], "failed", "{sessions}");
    // A failed delivery is not retried in a loop (that would hold the cabinet for good): the
    // cabinet stays free for the operator.
    let count = sessions["recent"].as_array().map(Vec::len);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = ok(&s, "GET", "/ops/cabinets/CMD-1/sessions", t, None).await;
    assert!(later["current"].is_null(), "{later}");
    assert_eq!(later["recent"].as_array().map(Vec::len), count, "no new session started by itself: {later}");

    cab.set_drop_acks(0);
    cab.set_refuse(true);
    let d = ok(&s, "POST", "/ops/cabinets/CMD-1/price-tags", t, None).await;
    let id = d["cmd_id"].as_str().expect("cmd_id").to_string();
    assert_eq!(command_status(&s, t, &id).await, "failed");
    let row = ok(&s, "GET", &format!("/ops/commands/{id}"), t, None).await;
    assert!(row["error"].as_str().unwrap_or("").contains("refused"), "{row}");
    cab.stop().await;
    s.stop().await;
}
both_profiles!(commands, commands_retry_and_time_out);

/// A quiet cabinet `sn` ([`layout`]) configured, labelled, calibrated, with five colas on A1 and
/// three bags of chips on A2.
async fn stocked(s: &TestServer, t: &str, sn: &str, seed: u64) -> SimCabinet {
    let cola = product(s, t, "Cola", "6901234567892", 355.0, 350).await;
    let chips = product(s, t, "Chips", "6901234567908", 78.0, 600).await;
    let cab = sim(s, sn, quiet(seed)).await;
    ok(s, "PUT", &format!("/ops/cabinets/{sn}/config"), t, Some(layout(cola, chips))).await;
    delivered(s, t, sn).await;
    calibrate(s, t, sn, 500.0).await;
    cab.stock(0, 355.0, 5).expect("stock");
    cab.stock(1, 78.0, 3).expect("stock");
    cab
}

/// Closed door, no session: a lane whose weight changes raises one alert naming it.
async fn closed_door_drift(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[("HEFT__WEIGHTS__HEALTH_EVERY_S", "1")]).await else { return };
    let token = s.ops_login(Role::Operator).await;
    let t = token.as_str();
    let cab = stocked(&s, t, "DRIFT-1", 9).await;
    let n = s.config.weights.stable_readings;
    let send = |k: usize| {
        let cab = &cab;
        async move {
            for _ in 0..k {
                cab.send_weights_now().await.expect("weights");
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
    };
    // A baseline moves on a rest of at least 2n readings.
    send(2 * n + 1).await;
    // A can vanishes from A1 with the door locked.
    cab.take(0, 1).expect("take");
    send(2 * n + 1).await;
    let alert = eventually("lane drift alert", || async {
        s.alerts("code=lane_drift&sn=DRIFT-1&open=true").await.into_iter().next()
    })
    .await;
    let message = alert["message"].as_str().unwrap_or("");
    assert!(message.contains("A1") && !message.contains("A2"), "names the lane that moved: {alert}");
    assert!(message.contains("1 unit taken"), "says the move was a whole can: {alert}");
    assert_eq!(alert["occurrences"], 1);
    // The lane's day keeps the move, where reconciliation and the dashboard read it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    send(1).await;
    let health = eventually("lane health", || async {
        let body = ok(&s, "GET", "/ops/cabinets/DRIFT-1/lane-health?days=2", t, None).await;
        body["days"].as_array()?.iter().find(|d| d["lane"] == "A1" && d["moves"] == 1).cloned()
    })
    .await;
    assert!(health["baseline_g"].as_f64().is_some_and(|g| (g - 4.0 * 355.0).abs() < 5.0), "{health}");
    let (status, body) = call(&s, "GET", "/ops/cabinets/DRIFT-1/lane-health?days=0", t, None).await;
    assert_eq!(status, 400, "{body}");
    let _ = EVENTUALLY;
    cab.stop().await;
    s.stop().await;
}
both_profiles!(drift, closed_door_drift);

/// A cell that turns too noisy to count its product (a loose wire): maintenance hears of it once,
/// naming the lane, its noise and its product's unit; the quiet lane beside it is not named.
async fn noisy_cell_is_reported(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[]).await else { return };
    let token = s.ops_login(Role::Operator).await;
    let t = token.as_str();
    let cab = stocked(&s, t, "NOISY-1", 10).await;
    // 60 g of noise: a 78 g bag's count would need (60 / 6)² = 100 readings, and a settlement
    // waits for `settle_max_ms / after_close_weight_ms` of them.
    cab.physical(|p| p.set_noise(1, 60.0)).expect("channel 1");
    let w = &s.config.weights;
    for _ in 0..(w.noise_readings + 16) {
        cab.send_weights_now().await.expect("weights");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let alert = eventually("lane unreliable alert", || async {
        s.alerts("code=lane_unreliable&sn=NOISY-1&open=true").await.into_iter().next()
    })
    .await;
    let message = alert["message"].as_str().unwrap_or("");
    assert!(message.contains("A2") && message.contains("units of 78 g"), "names the noisy lane: {alert}");
    assert!(!message.contains("A1"), "the quiet lane is fine: {alert}");
    // Told once, however long the cell stays noisy.
    for _ in 0..10 {
        cab.send_weights_now().await.expect("weights");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let alerts = s.alerts("code=lane_unreliable&sn=NOISY-1").await;
    assert_eq!((alerts.len(), &alerts[0]["occurrences"]), (1, &serde_json::json!(1)), "{alerts:?}");
    cab.stop().await;
    s.stop().await;
}
both_profiles!(noisy_cell, noisy_cell_is_reported);

/// Temperature out of the type's range for longer than its duration: one alert, cleared once.
async fn temperature_alert(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[]).await else { return };
    let token = s.ops_login(Role::Admin).await;
    let t = token.as_str();
    // The simulator keeps its cabinets near 4 °C: a range that excludes it, alert at once.
    let hot = json!({"sensor_channels": 32, "temp_min_c": 20.0, "temp_max_c": 30.0, "temp_alert_after_s": 0});
    ok(&s, "PUT", "/ops/cabinet-types/fridge", t, Some(hot)).await;
    let cab = sim(&s, "TEMP-1", quiet(1)).await;
    let alert = eventually("temperature alert", || async {
        s.alerts("code=temperature_out_of_range&sn=TEMP-1&open=true").await.into_iter().next()
    })
    .await;
    // Heartbeats come every second in tests: still one alert, one occurrence.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let open = s.alerts("code=temperature_out_of_range&sn=TEMP-1").await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["occurrences"], alert["occurrences"], "not raised again: {open:?}");
    let fine = json!({"sensor_channels": 32, "temp_min_c": 0.0, "temp_max_c": 10.0, "temp_alert_after_s": 0});
    ok(&s, "PUT", "/ops/cabinet-types/fridge", t, Some(fine)).await;
    eventually("temperature alert cleared", || async {
        s.alerts("code=temperature_out_of_range&sn=TEMP-1&open=true").await.is_empty().then_some(())
    })
    .await;
    let all = s.alerts("code=temperature_out_of_range&sn=TEMP-1").await;
    assert_eq!(all.len(), 1, "cleared once, not raised again: {all:?}");
    cab.stop().await;
    s.stop().await;
}
both_profiles!(temperature, temperature_alert);

/// A calibration nobody continues ends after `calibration.idle_timeout_s`, freeing the cabinet.
async fn idle_calibration_ends(profile: Profile) {
    let Some(s) = TestServer::start(profile, &[("HEFT__CALIBRATION__IDLE_TIMEOUT_S", "1")]).await else { return };
    let token = s.ops_login(Role::Maintainer).await;
    let admin = s.ops_login(Role::Operator).await;
    let t = token.as_str();
    let cola = product(&s, &admin, "Cola", "6901234567892", 355.0, 350).await;
    let chips = product(&s, &admin, "Chips", "6901234567908", 78.0, 600).await;
    let cab = sim(&s, "IDLE-1", quiet(4)).await;
    ok(&s, "PUT", "/ops/cabinets/IDLE-1/config", &admin, Some(layout(cola, chips))).await;
    delivered(&s, t, "IDLE-1").await;
    ok(&s, "POST", "/ops/cabinets/IDLE-1/calibration", t, Some(json!({"door": 1}))).await;
    ok(&s, "POST", "/ops/cabinets/IDLE-1/calibration/tare", t, None).await;
    let sessions = eventually("the idle calibration ends", || async {
        let v = ok(&s, "GET", "/ops/cabinets/IDLE-1/sessions", t, None).await;
        v["current"].is_null().then_some(v)
    })
    .await;
    assert_eq!(sessions["recent"][0]["outcome"], "expired", "{sessions}");
    // The cabinet is free again.
    ok(&s, "POST", "/ops/cabinets/IDLE-1/calibration", t, Some(json!({"door": 1}))).await;
    cab.stop().await;
    s.stop().await;
}
both_profiles!(idle, idle_calibration_ends);
