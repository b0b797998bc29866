//! The platforms' bills against Heft, in both profiles and on both platforms: shoppers buy and
//! one is refunded, the day's bills come out, and reconciliation matches them. Bills with every
//! mismatch the simulator can put in give exactly one case each, a clean bill none, and running
//! the day again opens nothing twice. Operators resolve a case with a note and fetch the kept
//! bill behind it; the scheduler runs missed nights once.

mod common;
mod purchase {
    pub mod shop;
}

use std::time::Duration;

use common::{Profile, TestServer};
use heft::domain::calendar::business_day;
use heft::domain::operator::Role;
use heft::domain::reconcile::{Job, RunStatus};
use heft::flows::reconcile::RunOutcome;
use purchase::shop::{self, FAST, call, ok};
use serde_json::{Value, json};

const CHANNELS: [&str; 2] = ["wechat", "alipay"];

/// Three purchases on `channel` (one cola and one bag of chips each), the first refunded one
/// cola after an appeal. Their orders' numbers.
async fn shop_day(s: &TestServer, cab: &heft::sim::handle::SimCabinet, channel: &str) -> Vec<String> {
    let t = s.ops_login(Role::Operator).await;
    let uid = format!("bills-{channel}");
    let token = shop::shopper(s, channel, &uid).await;
    let mut numbers = Vec::new();
    for i in 0..3 {
        let id = shop::open_visit(s, cab, &token, channel, &uid).await;
        cab.take(0, 1).expect("a cola");
        cab.take(1, 1).expect("chips");
        tokio::time::sleep(Duration::from_millis(300)).await;
        cab.close_door(1).await.expect("close");
        let paid = shop::order_in(s, &token, id, "paid").await;
        numbers.push(paid["out_order_no"].as_str().expect("number").to_string());
        if i == 0 {
            let appeal =
                ok(s, "POST", &format!("/api/v1/orders/{id}/appeal"), &token, Some(json!({"reason": "no cola"}))).await;
            let lines = json!([{"lane": "A2", "qty": 1}]);
            let decision = json!({"decision": "refund", "lines": lines, "note": "video: chips only"});
            ok(s, "POST", &format!("/ops/reviews/{}/resolve", appeal["case_id"]), &t, Some(decision)).await;
            common::eventually("the refund went through", || async {
                let o = shop::order(s, &token, id).await;
                (o["refunds"][0]["status"] == "succeeded").then_some(())
            })
            .await;
        }
    }
    numbers
}

async fn reconcile(s: &TestServer, job: Job, day: chrono::NaiveDate) -> RunOutcome {
    let svc = &s.heft.services;
    heft::flows::reconcile::run(&svc.flows(), svc.effects.as_ref(), job, day, "test")
        .await
        .expect("the run is recorded")
}

/// The figures of a bill run that finished.
fn bill_report(o: RunOutcome) -> heft::flows::bills::BillReport {
    match o.report {
        Some(heft::flows::reconcile::JobReport::Bills(r)) => r,
        _ => panic!("a finished bill run: {o:?}"),
    }
}

/// Change what the database holds behind Heft's back.
async fn sql(s: &TestServer, statement: &str) {
    let statement = statement.to_string();
    s.heft
        .services
        .db
        .write(move |c| {
            use diesel::RunQueryDsl;
            diesel::sql_query(statement).execute(c).map_err(heft::db::DbError::from)
        })
        .await
        .expect("sql");
}

async fn cases(s: &TestServer, query: &str) -> Vec<Value> {
    let t = s.ops_login(Role::Operator).await;
    let listed = ok(s, "GET", &format!("/ops/bill-cases?{query}"), &t, None).await;
    listed["cases"].as_array().cloned().expect("cases")
}

fn kinds(cases: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = cases.iter().map(|c| c["kind"].as_str().unwrap_or("?").to_string()).collect();
    k.sort();
    k
}

async fn bills_match_and_each_mismatch_is_one_case(profile: Profile) {
    let env = [FAST[0], FAST[1], ("HEFT__RECONCILE__WAIT_DAYS", "0")];
    let Some(s) = TestServer::start(profile, &env).await else { return };
    let cab = shop::ready_cabinet_with(&s, "BIL-1", shop::quiet(41), Some((10, 12))).await;
    let mut orders = Vec::new();
    for channel in CHANNELS {
        orders.push(shop_day(&s, &cab, channel).await);
    }
    let today = business_day(chrono::Utc::now());
    s.platforms_next_morning().await;

    // Clean bills: everything matches, no case.
    for job in [Job::BillsWechat, Job::BillsAlipay] {
        let r = bill_report(reconcile(&s, job, today).await);
        assert_eq!((r.rows, r.matched, r.refunds_matched, r.cases), (4, 3, 1, 0), "{job}: {r:?}");
        assert!(r.totals_checked, "{job}: the bill states its totals");
    }
    assert!(cases(&s, "").await.is_empty());

    // A refund in a later bill than its payment: as if yesterday's bills had shown the payments,
    // today's show only the refunds. Nothing is missing.
    let yesterday = today.pred_opt().expect("yesterday").to_string();
    let moved = format!("UPDATE bill_rows SET day = '{yesterday}' WHERE kind = 'payment'");
    sql(&s, &moved).await;
    shop::knobs(&s, json!({"bill": {"missing_trade": 3}})).await;
    for job in [Job::BillsWechat, Job::BillsAlipay] {
        let r = bill_report(reconcile(&s, job, today).await);
        assert_eq!((r.rows, r.refunds_matched, r.cases), (1, 1, 0), "{job}: {r:?}");
    }
    sql(&s, &format!("DELETE FROM bill_rows WHERE day = '{yesterday}'")).await;

    // Every mismatch once: exactly one case each, on each platform.
    let faults =
        json!({"missing_trade": 1, "unknown_trade": 1, "wrong_amount": 1, "wrong_fee": 1, "missing_refund": 1});
    shop::knobs(&s, json!({ "bill": faults })).await;
    for (job, numbers) in [Job::BillsWechat, Job::BillsAlipay].into_iter().zip(&orders) {
        let channel = job.channel().expect("a bill job").as_str();
        let r = bill_report(reconcile(&s, job, today).await);
        assert_eq!((r.cases, r.opened), (5, 5), "{job}: {r:?}");
        let found = cases(&s, &format!("channel={channel}&day={today}")).await;
        assert_eq!(kinds(&found), ["amount", "fee", "heft_only", "platform_only", "refund_missing"], "{found:?}");
        let about = |kind: &str| found.iter().find(|c| c["kind"] == kind).cloned().expect("case");
        // The bill's payments in order: the first left out, the second one yuan over, the third's fee up.
        assert_eq!(about("heft_only")["out_order_no"], numbers[0].as_str());
        assert_eq!(about("refund_missing")["out_order_no"], numbers[0].as_str());
        let amount = about("amount");
        assert_eq!(amount["out_order_no"], numbers[1].as_str());
        assert_eq!(amount["bill_fen"].as_i64(), amount["heft_fen"].as_i64().map(|f| f + 100), "{amount}");
        let fee = about("fee");
        assert_eq!(fee["out_order_no"], numbers[2].as_str());
        assert_eq!(fee["bill_fen"].as_i64(), fee["heft_fen"].as_i64().map(|f| f + 1), "{fee}");
        assert!(about("platform_only")["out_order_no"].as_str().is_some_and(|n| n.starts_with("UNKNOWN")));

        // Again: nothing new.
        let again = bill_report(reconcile(&s, job, today).await);
        assert_eq!((again.cases, again.opened), (5, 0), "{job}: {again:?}");
        assert_eq!(cases(&s, &format!("channel={channel}")).await.len(), 5);

        // The kept bill is the evidence: served as downloaded, its hash as recorded.
        let file_id = amount["file_id"].as_i64().expect("file id");
        let t = s.ops_login(Role::Operator).await;
        let res =
            s.http.get(format!("{}/ops/bill-files/{file_id}", s.base)).bearer_auth(&t).send().await.expect("file");
        assert_eq!(res.status(), 200);
        let sha = res.headers()["x-content-sha256"].to_str().expect("sha").to_string();
        let bytes = res.bytes().await.expect("bytes");
        assert_eq!(sha, again.sha256);
        assert_eq!(sha, hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)));
    }
    let alerts = s.alerts("code=bill_cases").await;
    assert_eq!(alerts.len(), 2, "one alert per platform's day: {alerts:?}");
    cab.stop().await;
}
both_profiles!(bills_reconcile, bills_match_and_each_mismatch_is_one_case);

/// An operator resolves a case with a note, once; a bad note and an unknown case are refused.
/// The API runs a day that is over, never today.
async fn operators_resolve_cases_and_run_days(profile: Profile) {
    let env = [FAST[0], FAST[1], ("HEFT__RECONCILE__WAIT_DAYS", "0")];
    let Some(s) = TestServer::start(profile, &env).await else { return };
    let cab = shop::ready_cabinet_with(&s, "BIL-2", shop::quiet(42), Some((10, 12))).await;
    let token = shop::shopper(&s, "alipay", "bills-ops").await;
    let id = shop::open_visit(&s, &cab, &token, "alipay", "bills-ops").await;
    cab.take(0, 1).expect("a cola");
    tokio::time::sleep(Duration::from_millis(300)).await;
    cab.close_door(1).await.expect("close");
    shop::order_in(&s, &token, id, "paid").await;
    let today = business_day(chrono::Utc::now());
    s.platforms_next_morning().await;
    shop::knobs(&s, json!({"bill": {"wrong_fee": 1}})).await;
    reconcile(&s, Job::BillsAlipay, today).await;
    let case = cases(&s, "status=open&kind=fee").await.pop().expect("the fee case");
    let t = s.ops_login(Role::Operator).await;
    let path = format!("/ops/bill-cases/{}/resolve", case["id"]);
    let (status, body) = call(&s, "POST", &path, &t, Some(json!({"resolution": "accept", "note": "  "}))).await;
    assert_eq!((status, body["fields"][0]["field"].as_str()), (422, Some("note")), "{body}");
    let note = json!({"resolution": "accept", "note": "the platform's promotional rate that day"});
    let resolved = ok(&s, "POST", &path, &t, Some(note.clone())).await;
    assert_eq!((resolved["status"].as_str(), resolved["resolution"].as_str()), (Some("resolved"), Some("accept")));
    assert_eq!(resolved["resolved_by"], "test-operator", "{resolved}");
    let (status, body) = call(&s, "POST", &path, &t, Some(note.clone())).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("already_resolved")), "{body}");
    let (status, _) = call(&s, "POST", "/ops/bill-cases/999999/resolve", &t, Some(note)).await;
    assert_eq!(status, 404);
    assert!(cases(&s, "status=open").await.is_empty());

    let (status, body) = call(&s, "POST", "/ops/reconcile/runs", &t, Some(json!({"day": today}))).await;
    assert_eq!((status, body["fields"][0]["field"].as_str()), (422, Some("day")), "today is not over: {body}");
    let yesterday = today.pred_opt().expect("yesterday");
    let ran = ok(&s, "POST", "/ops/reconcile/runs", &t, Some(json!({"day": yesterday, "only": "bills"}))).await;
    let statuses: Vec<(&str, &str)> = ran["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| (r["job"].as_str().unwrap_or("?"), r["status"].as_str().unwrap_or("?")))
        .collect();
    assert_eq!(statuses, [("bills_wechat", "done"), ("bills_alipay", "done")], "{ran}");
    let runs = ok(&s, "GET", &format!("/ops/reconcile/runs?since={yesterday}"), &t, None).await;
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(3), "yesterday's two and today's alipay: {runs}");
    let todays = &runs["runs"][2];
    assert_eq!(
        (todays["job"].as_str(), todays["summary"]["bills"]["cases"].as_i64()),
        (Some("bills_alipay"), Some(1)),
        "{runs}"
    );
    cab.stop().await;
}
both_profiles!(bill_cases_resolved, operators_resolve_cases_and_run_days);

/// The scheduler runs every night it missed, once: a second look finds nothing due. A bill not
/// out yet waits and is counted as waiting.
async fn the_scheduler_catches_up_once(profile: Profile) {
    let env = [("HEFT__RECONCILE__CATCH_UP_DAYS", "3")];
    let Some(s) = TestServer::start(profile, &env).await else { return };
    let first = s.heft.run_due_reconciliation().await.expect("a round");
    let heft::actors::scheduler::Round::Ran(ran) = first else { panic!("the only node leads: {first:?}") };
    let today = business_day(chrono::Utc::now());
    let days: Vec<chrono::NaiveDate> = ran.iter().map(|o| o.day).collect();
    assert!(days.len() >= 4, "two nights back at least, both platforms: {ran:?}");
    assert!(days.iter().all(|d| *d < today && *d >= today - chrono::Duration::days(3)), "{days:?}");
    assert!(ran.iter().all(|o| o.status == RunStatus::Done), "{ran:?}");
    let again = s.heft.run_due_reconciliation().await.expect("a round");
    assert_eq!(again, heft::actors::scheduler::Round::Ran(Vec::new()), "nothing is run twice");
    let done = s.metric("heft_reconcile_runs_total{job=\"bills_wechat\",status=\"done\"}").await;
    assert_eq!(done as usize, ran.iter().filter(|o| o.job == Job::BillsWechat).count());

    // The platforms' clock back a day: yesterday's bills are not out, and the run waits.
    let clock = json!({ "offset_s": -24 * 3600 });
    s.http.post(format!("{}/sim/clock", s.sim_base())).json(&clock).send().await.expect("clock");
    let yesterday = today.pred_opt().expect("yesterday");
    let o = reconcile(&s, Job::BillsWechat, yesterday).await;
    assert_eq!(o.status, RunStatus::Waiting, "{o:?}");
    let o = reconcile(&s, Job::BillsAlipay, yesterday).await;
    assert_eq!(o.status, RunStatus::Waiting, "{o:?}");
}
both_profiles!(scheduler, the_scheduler_catches_up_once);

/// Two nodes on the same database and Redis: whichever takes the `reconcile` lease runs the
/// missed nights, the other runs nothing, and every job of every day is on record once.
async fn one_node_runs_the_night() {
    let env = [("HEFT__RECONCILE__CATCH_UP_DAYS", "2"), ("HEFT__NODE__ID", "node-a")];
    let Some(a) = TestServer::start(Profile::Production, &env).await else { return };
    let shared = a.storage.shared();
    let config = common::config(
        &shared,
        common::free_port(),
        &[("HEFT__RECONCILE__CATCH_UP_DAYS", "2"), ("HEFT__NODE__ID", "node-b")],
    );
    let b = TestServer::start_with(shared, config).await;
    let (ra, rb) = tokio::join!(a.heft.run_due_reconciliation(), b.heft.run_due_reconciliation());
    let rounds = [ra.expect("a round on a"), rb.expect("a round on b")];
    let ran: Vec<&Vec<RunOutcome>> = rounds
        .iter()
        .filter_map(|r| match r {
            heft::actors::scheduler::Round::Ran(runs) => Some(runs),
            _ => None,
        })
        .collect();
    assert_eq!(ran.len(), 1, "one node leads: {rounds:?}");
    assert!(rounds.contains(&heft::actors::scheduler::Round::NotLeader), "{rounds:?}");
    // The night before yesterday is wholly due whatever the hour; yesterday's stock job from 03:00.
    assert!(ran[0].len() >= Job::ALL.len(), "the missed nights: {:?}", ran[0]);
    // The follower, asked again, still runs nothing; every run on record is the leader's, once.
    // Either may have taken the lease first.
    let follower = if rounds[0] == heft::actors::scheduler::Round::NotLeader { &a } else { &b };
    assert_eq!(follower.heft.run_due_reconciliation().await.ok(), Some(heft::actors::scheduler::Round::NotLeader));
    let t = a.ops_login(Role::Operator).await;
    let runs = ok(&a, "GET", "/ops/reconcile/runs", &t, None).await;
    let runs = runs["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), ran[0].len(), "{runs:?}");
    let mut nodes: Vec<&str> = runs.iter().filter_map(|r| r["node"].as_str()).collect();
    nodes.dedup();
    assert_eq!(nodes.len(), 1, "one node ran them all: {nodes:?}");
    b.stop().await;
}

#[actix_rt::test]
async fn one_node_runs_the_night_production() {
    one_node_runs_the_night().await;
}

/// The day's settlement per cabinet and product: what was sold as it was charged, the refund on
/// the product a correction took back, the fees the bills show, and the net; the same again when
/// the day runs again; as JSON with the fleet's totals and as CSV.
async fn the_day_settles_per_cabinet_and_product(profile: Profile) {
    let Some(s) = TestServer::start(profile, &FAST).await else { return };
    let cab = shop::ready_cabinet_with(&s, "BIL-3", shop::quiet(43), Some((10, 12))).await;
    for channel in CHANNELS {
        shop_day(&s, &cab, channel).await;
    }
    let today = business_day(chrono::Utc::now());
    s.platforms_next_morning().await;
    for job in Job::ALL.iter().copied() {
        assert_eq!(reconcile(&s, job, today).await.status, RunStatus::Done, "{job}");
    }
    let t = s.ops_login(Role::Operator).await;
    let daily = ok(&s, "GET", &format!("/ops/reports/daily?from={today}&to={today}&sn=BIL-3"), &t, None).await;
    let row = |name: &str| {
        daily["rows"].as_array().and_then(|r| r.iter().find(|r| r["product_name"] == name).cloned()).expect("row")
    };
    let figures = |r: &Value| -> Vec<i64> {
        ["orders", "units_sold", "gross_fen", "refunds_fen", "fees_fen", "net_fen", "reviews"]
            .iter()
            .map(|k| r[k].as_i64().unwrap_or(-1))
            .collect()
    };
    // Six orders of a cola (350) and chips (600); two corrected to chips only, 350 back each.
    // Fees 6 fen an order (0.6 % of 9.50), shared 2:4; 2 fen back with each refund.
    assert_eq!(figures(&row("Cola 330 ml")), [6, 6, 2100, 700, 8, 1392, 0], "{daily}");
    assert_eq!(figures(&row("Chips 70 g")), [6, 6, 3600, 0, 24, 3576, 2], "{daily}");
    let total = &daily["totals"][0];
    let fleet: Vec<i64> = ["orders", "gross_fen", "refunds_fen", "fees_fen", "net_fen", "reviews"]
        .iter()
        .map(|k| total[k].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(fleet, [6, 5700, 700, 32, 4968, 2], "{total}");

    // Again: the same figures.
    let again = reconcile(&s, Job::Settlement, today).await;
    let Some(heft::flows::reconcile::JobReport::Settlement(r)) = again.report else { panic!("{again:?}") };
    assert_eq!((r.orders, r.fees_from_bills, r.net_fen.0), (6, 6, 4968), "{r:?}");
    let rerun = ok(&s, "GET", &format!("/ops/reports/daily?from={today}&to={today}&sn=BIL-3"), &t, None).await;
    assert_eq!(figures(&rerun["rows"][0]), figures(&daily["rows"][0]));

    let res = s
        .http
        .get(format!("{}/ops/reports/daily?from={today}&to={today}&format=csv", s.base))
        .bearer_auth(&t)
        .send()
        .await
        .expect("csv");
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().is_ok_and(|c| c.starts_with("text/csv")));
    let csv = res.text().await.expect("text");
    assert!(csv.starts_with("\u{feff}day,sn,product_id,product,"), "{csv}");
    assert!(
        csv.contains(&format!("{today},BIL-3,")) && csv.contains("\"Cola 330 ml\",6,6,21.00,7.00,0.08,13.92,"),
        "{csv}"
    );
    // The same as a workbook: the rows and the totals, money as numbers in yuan.
    let res = s
        .http
        .get(format!("{}/ops/reports/daily?from={today}&to={today}&format=xlsx", s.base))
        .bearer_auth(&t)
        .send()
        .await
        .expect("xlsx");
    assert_eq!(res.status(), 200);
    let bytes = res.bytes().await.expect("bytes");
    let mut book = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).expect("an xlsx is a zip");
    let part = |book: &mut zip::ZipArchive<std::io::Cursor<Vec<u8>>>, name: &str| {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut book.by_name(name).expect(name), &mut text).expect("utf-8");
        text
    };
    let workbook = part(&mut book, "xl/workbook.xml");
    assert!(workbook.contains("name=\"daily\"") && workbook.contains("name=\"totals\""), "{workbook}");
    let strings = part(&mut book, "xl/sharedStrings.xml");
    assert!(strings.contains("Cola 330 ml") && strings.contains("BIL-3"), "{strings}");
    let rows = part(&mut book, "xl/worksheets/sheet1.xml");
    assert!(rows.contains("<v>21</v>") && rows.contains("<v>13.92</v>"), "the cola's gross and net in yuan: {rows}");
    let backwards = ok(&s, "GET", &format!("/ops/reports/daily?from={today}&to=2020-01-01"), &t, None).await;
    assert_eq!(backwards["rows"].as_array().map(Vec::len), Some(0), "a range that ends before it starts: {backwards}");
    cab.stop().await;
}
both_profiles!(daily_settlement, the_day_settles_per_cabinet_and_product);
