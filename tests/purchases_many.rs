//! A thousand purchases by simulated shoppers across several cabinets with noisy load cells
//! (σ = 2 g), in both profiles, compared with the ground truth of every visit: each order ends
//! (paid, no purchase, or review), every settled order is charged exactly what was taken, at most
//! 1 % go to review, the platforms' bills show no order paid twice, and after the reviews are
//! decided from the truth, book stock equals what the cabinets really hold.

mod common;
mod purchase {
    pub mod shop;
}

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::{Profile, TestServer};
use heft::domain::operator::Role;
use heft::pay::Channel;
use heft::sim::handle::SimCabinetOptions;
use heft::sim::shopper::{ShopperClient, ShopperOptions, Truth};
use purchase::shop::{self, FAST, ok};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

const CABINETS: usize = 10;
const VISITS_PER_CABINET: usize = 100;

async fn thousand_purchases(profile: Profile) {
    let Some(s) = TestServer::start(profile, &FAST).await else { return };
    let mut cabs = Vec::new();
    for i in 0..CABINETS {
        let opts = SimCabinetOptions { noise_g: 2.0, seed: Some(1000 + i as u64), ..Default::default() };
        cabs.push(shop::ready_cabinet_with(&s, &format!("MNY-{i:02}"), opts, Some((100, 120))).await);
    }
    let client = ShopperClient::new(&s.base, &s.sim_base()).expect("shopper client");
    let opts = ShopperOptions { open_period: Duration::from_millis(100), ..Default::default() };
    let started = Instant::now();
    let visits = cabs.iter().enumerate().map(|(i, cab)| {
        let (client, opts) = (&client, &opts);
        async move {
            let channel = if i % 2 == 0 { Channel::Wechat } else { Channel::Alipay };
            let uid = match channel {
                Channel::Wechat => format!("o-many-{i}"),
                Channel::Alipay => format!("20880000000010{i:02}"),
            };
            let token = client.sign_in(channel, &uid).await.expect("sign in");
            let mut rng = StdRng::seed_from_u64(7 + i as u64);
            let mut out = Vec::with_capacity(VISITS_PER_CABINET);
            for _ in 0..VISITS_PER_CABINET {
                out.push(client.shop(&token, cab, 1, opts, &mut rng).await.expect("a visit"));
            }
            out
        }
    });
    let truths: Vec<Truth> = futures_util::future::join_all(visits).await.into_iter().flatten().collect();
    let elapsed = started.elapsed();
    let n = truths.len();
    assert_eq!(n, CABINETS * VISITS_PER_CABINET);

    // Every order ended; every settled one charged exactly the truth; few reviews.
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &truths {
        *by_status.entry(t.final_status.as_str()).or_default() += 1;
        assert!(t.finished, "order {} did not end: {}", t.order_id, t.final_status);
        assert!(
            matches!(t.final_status.as_str(), "paid" | "no_purchase" | "review"),
            "order {} ended {}: {t:?}",
            t.order_id,
            t.final_status
        );
        if t.final_status != "review" {
            assert_eq!(
                t.matches(),
                Some(true),
                "order {} charged {:?} for {}: {t:?}",
                t.order_id,
                t.charged_fen,
                t.expected_fen
            );
        }
    }
    let reviews: Vec<&Truth> = truths.iter().filter(|t| t.final_status == "review").collect();
    eprintln!(
        "{profile:?}: {n} visits in {:.1} s ({:.1}/s): {by_status:?}; moves {}, nothing taken {}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        truths.iter().filter(|t| !t.moved.is_empty()).count(),
        truths.iter().filter(|t| t.expected_fen == 0).count(),
    );
    assert!(reviews.len() * 100 <= n, "review rate {} of {n} is over 1 %", reviews.len());

    // No order paid twice: each platform's bill has one payment per paid order, of its amount.
    let today = chrono::Utc::now().with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8")).date_naive();
    let db = s.heft.services.db.clone();
    let mut paid_by_channel: HashMap<Channel, BTreeMap<String, i64>> = HashMap::new();
    for t in truths.iter().filter(|t| t.final_status == "paid") {
        let id = t.order_id;
        let o = db.run(move |c| heft::db::orders::find(c, id)).await.expect("order").expect("exists");
        let key = match t.channel {
            Channel::Wechat => o.out_order_no.clone(),
            Channel::Alipay => heft::domain::payment::out_trade_no(&o.out_order_no),
        };
        paid_by_channel.entry(t.channel).or_default().insert(key, t.expected_fen);
    }
    // Today's bills are out tomorrow morning.
    s.platforms_next_morning().await;
    for (channel, paid) in &paid_by_channel {
        let bill = s.heft.services.payments.get(*channel).download_bill(today).await.expect("bill");
        let mut billed: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for row in bill.rows.iter().filter(|r| r.amount_fen > 0) {
            billed.entry(row.out_order_no.clone()).or_default().push(row.amount_fen);
        }
        for (key, amount) in paid {
            assert_eq!(billed.get(key), Some(&vec![*amount]), "{channel}: {key} in the bill once, for {amount}");
        }
        assert_eq!(billed.len(), paid.len(), "{channel}: nothing else was charged");
    }

    // Reviews decided as a person with the video would: the lines of the truth.
    let t = s.ops_login(Role::Operator).await;
    for r in &reviews {
        let cases = ok(&s, "GET", "/ops/reviews?limit=500", &t, None).await;
        let case = cases["cases"].as_array().and_then(|c| c.iter().find(|c| c["order_id"] == r.order_id).cloned());
        let case_id = case.expect("a case for the review")["id"].as_i64().expect("case id");
        let lines: Vec<_> = r.taken.iter().map(|l| json!({"lane": l.lane, "qty": l.qty})).collect();
        ok(
            &s,
            "POST",
            &format!("/ops/reviews/{case_id}/resolve"),
            &t,
            Some(json!({"decision": "charge", "lines": lines})),
        )
        .await;
    }

    // Book stock equals the truth: each lane's own units, plus units others moved onto it
    // (stock follows an item put back on another lane). Moves resolved by review are not
    // counted by Heft's book, and there the truth is taken as the units alone.
    let reviewed: std::collections::HashSet<i64> = reviews.iter().map(|r| r.order_id).collect();
    for cab in &cabs {
        let mut want: BTreeMap<String, i64> = BTreeMap::new();
        let config = cab.last_config().expect("config");
        for lane in config.doors.iter().flat_map(|d| &d.lanes) {
            let units = cab.truth()[lane.channel as usize].units;
            want.insert(lane.code.clone(), i64::from(units));
        }
        for tr in truths.iter().filter(|tr| tr.sn == cab.sn() && !reviewed.contains(&tr.order_id)) {
            for m in &tr.moved {
                *want.entry(m.to_lane.clone()).or_default() += i64::from(m.qty);
            }
        }
        // The reviewed orders' charges were written just now: give them a moment.
        let mut book: BTreeMap<String, i64> = BTreeMap::new();
        for _ in 0..50 {
            book = shop::book_stock(&s, cab.sn()).await.into_iter().collect();
            if book == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(book, want, "{}", cab.sn());
    }
    // Every door that opened was held by a purchase or a restock.
    assert_eq!(s.alerts("code=door_open_unheld").await, Vec::<serde_json::Value>::new());
}
both_profiles!(thousand, thousand_purchases);
