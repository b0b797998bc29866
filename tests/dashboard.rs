//! The dashboard in a real browser: headless Debian Chromium, driven by playwright-core
//! (`tests/browser/dashboard.mjs`), against a node this test starts with a simulated cabinet. The
//! test buys on the cabinet while the page watches it, and leaves an appeal for the page to
//! resolve. Screenshots go to `target/dashboard-screenshots/` (and, with
//! `HEFT_SCREENSHOTS_TO=docs/screenshots`, there too).
//!
//! Needs `node`, Chromium (`CHROMIUM`, default `/usr/bin/chromium`) and
//! `npm ci --prefix tests/browser`; without them the test is skipped loudly, and under `CI=true`
//! it fails.

mod common;
mod purchase {
    pub mod shop;
}

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{ADMIN_USERNAME, Profile, TEST_PASSWORD, TestServer};
use purchase::shop::{self, FAST};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// What the browser test needs, or why it cannot run.
fn browser() -> Result<PathBuf, String> {
    let chromium = PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    if !chromium.exists() {
        return Err(format!("no Chromium at {} (apt-get install chromium)", chromium.display()));
    }
    if !Path::new(ROOT).join("tests/browser/node_modules/playwright-core").exists() {
        return Err("playwright-core is not installed (npm ci --prefix tests/browser)".into());
    }
    match std::process::Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(chromium),
        _ => Err("no node".into()),
    }
}

/// `n` more cabinets (never connected, so offline) placed around Shanghai, for the map and the
/// table to hold a fleet of the size they are built for. One transaction.
async fn spread_fleet(s: &TestServer, n: u32) {
    use diesel::prelude::*;
    use heft::db::schema::cabinets;
    let seal = s.heft.services.seal.clone();
    s.heft
        .services
        .db
        .write(move |c| {
            let mut seed = 0x2545_f491_4f6c_dd1d_u64;
            let mut next = move || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed % 10_000) as f64 / 10_000.0
            };
            for i in 2..n + 2 {
                let sn = format!("SZ-{i:05}");
                heft::provision::provision(c, &seal, &sn, "fridge", false).expect("provision");
                let (lat, lng) = (30.9 + 0.6 * next(), 121.1 + 0.8 * next());
                diesel::update(cabinets::table.find(&sn))
                    .set((cabinets::lat.eq(Some(lat)), cabinets::lng.eq(Some(lng))))
                    .execute(c)?;
            }
            Ok::<_, heft::db::DbError>(())
        })
        .await
        .expect("the fleet placed");
}

/// The day's night, run now: the platforms' bills (WeChat's with one fee off, a case for the
/// page to resolve), the stocktake and the settlement.
async fn night(s: &TestServer) {
    use heft::domain::reconcile::{Job, RunStatus};
    s.platforms_next_morning().await;
    shop::knobs(s, json!({"bill": {"wrong_fee": 1}})).await;
    let today = heft::domain::calendar::business_day(chrono::Utc::now());
    let svc = &s.heft.services;
    for job in [Job::Stock, Job::BillsWechat, Job::Settlement] {
        let o = heft::flows::reconcile::run(&svc.flows(), svc.effects.as_ref(), job, today, "test").await.expect("run");
        assert_eq!(o.status, RunStatus::Done, "{o:?}");
    }
}

#[actix_rt::test]
async fn an_operator_watches_a_purchase_and_resolves_a_review() {
    let chromium = match browser() {
        Ok(c) => c,
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("browser test cannot run: {why}"),
        Err(why) => {
            let _ = writeln!(std::io::stderr(), "SKIPPED: the dashboard's browser test: {why}");
            return;
        }
    };
    let Some(s) = TestServer::start(Profile::Embedded, &FAST).await else { return };
    let sn = "SH-0001";
    let cab = shop::ready_cabinet(&s, sn, shop::quiet(21)).await;
    spread_fleet(&s, 10_000).await;
    // A paid order the shopper appeals: a case for the review queue.
    let token = shop::shopper(&s, "wechat", "dash-appeal").await;
    let id = shop::open_visit(&s, &cab, &token, "wechat", "dash-appeal").await;
    cab.take(0, 1).expect("a cola");
    tokio::time::sleep(Duration::from_millis(300)).await;
    cab.close_door(1).await.expect("door closes");
    shop::order_in(&s, &token, id, "paid").await;
    let appeal = json!({"reason": "我只拿了一瓶"});
    let case = shop::ok(&s, "POST", &format!("/api/v1/orders/{id}/appeal"), &token, Some(appeal)).await;
    let case_id = case["case_id"].as_i64().expect("case id").to_string();

    let shots = Path::new(ROOT).join("target/dashboard-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot folder");
    let mut node = tokio::process::Command::new("node")
        .arg(Path::new(ROOT).join("tests/browser/dashboard.mjs"))
        .args([&s.base, ADMIN_USERNAME, TEST_PASSWORD, sn, &case_id])
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOTS", &shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let mut stdin = node.stdin.take().expect("stdin");
    let mut out = BufReader::new(node.stdout.take().expect("stdout")).lines();
    let mut steps = Vec::new();
    let buyer = shop::shopper(&s, "alipay", "dash-buyer").await;
    let mut order = None;
    while let Some(line) = tokio::time::timeout(Duration::from_secs(90), out.next_line())
        .await
        .expect("the page answers in time")
        .expect("stdout")
    {
        println!("browser: {line}");
        match line.strip_prefix("STEP ") {
            Some("watching") => {
                order = Some(shop::open_visit(&s, &cab, &buyer, "alipay", "dash-buyer").await);
                cab.take(1, 2).expect("two bags of chips");
                stdin.write_all(b"door open\n").await.expect("tell the page");
            }
            Some("chart-moved") => {
                cab.close_door(1).await.expect("door closes");
                shop::order_in(&s, &buyer, order.expect("the purchase"), "paid").await;
                stdin.write_all(b"door closed\n").await.expect("tell the page");
            }
            Some("money") => {
                night(&s).await;
                stdin.write_all(b"night done\n").await.expect("tell the page");
            }
            _ => {}
        }
        if let Some(step) = line.strip_prefix("STEP ") {
            steps.push(step.to_string());
        }
    }
    let status = node.wait().await.expect("node ends");
    assert!(status.success(), "the browser test failed after {steps:?}");
    assert_eq!(
        steps,
        [
            "signed-in",
            "fleet",
            "found-on-map",
            "watching",
            "chart-moved",
            "paid-seen",
            "review-resolved",
            "money",
            "case-resolved",
            "english"
        ]
    );
    // The case is resolved, as the page said.
    let case = s.get_ok(&format!("/ops/reviews/{case_id}")).await;
    assert_eq!(case["case"]["status"], "resolved", "{case}");
    let bill_cases = s.get_ok("/ops/bill-cases?status=resolved").await;
    let resolved = &bill_cases["cases"][0];
    assert_eq!(
        (resolved["resolution"].as_str(), resolved["note"].as_str()),
        (Some("write_off"), Some("手续费差 1 分，核销")),
        "{bill_cases}"
    );
    if let Ok(to) = std::env::var("HEFT_SCREENSHOTS_TO") {
        let to = Path::new(ROOT).join(to);
        std::fs::create_dir_all(&to).expect("screenshot destination");
        for name in ["fleet.png", "cabinet-purchase.png", "review.png", "money.png"] {
            std::fs::copy(shots.join(name), to.join(name)).expect("copy a screenshot");
        }
    }
}
