//! Reconciliation benchmark: one business day of a large fleet on PostgreSQL, reconciled by the
//! real jobs (`flows::stocktake::take_day`, `flows::bills::reconcile_file`,
//! `flows::report::settle_day`).
//!
//! ```sh
//! cargo bench --bench reconcile -- --cabinets 10000 --orders 300000     # what BENCHMARKS.md reports
//! ```
//!
//! A fresh database is seeded in the server (`generate_series`): 16 products, the cabinets with
//! 16 lanes each, shoppers, and the day's orders (one or two lines), paid half on WeChat Pay and
//! half on Alipay, with 1 % refunded one unit, 0.5 % appealed into review, and 0.5 % leaving
//! debt; plus a week of earlier orders, so the day is not the whole table. Every order has its
//! purchase session with the door's weights before and after, and every cabinet 20 closed-door
//! readings before midnight, one lane in a hundred cabinets a unit short: the stocktake reads
//! 160,000 lanes, traces each through its week of sessions and charges the 100 shoppers. Each platform's bill is
//! then built in its real format (WeChat's CSV, Alipay's GBK ZIP) from those payments, with a few
//! differences put in, parsed as a download is, and reconciled; then the day's settlement is
//! written. Reported per job: wall time, this process's peak resident memory during the job
//! (`VmHWM`, reset before each), and the database's load (PostgreSQL backends' CPU, and
//! `pg_stat_database`: transactions, rows read and written, blocks read).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, NaiveDateTime};
use diesel::{Connection, PgConnection, RunQueryDsl};
use heft::config::Config;
use heft::db::Db;
use heft::domain::payment::Channel;
use heft::pay::BillFile;

#[derive(Debug, Clone)]
struct Args {
    cabinets: i64,
    orders: i64,
    pg: String,
}

fn parse_args() -> Args {
    let mut a = Args { cabinets: 10_000, orders: 300_000, pg: "postgres://postgres@127.0.0.1:5432".into() };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--cabinets" => a.cabinets = value.parse().expect("--cabinets N"),
            "--orders" => a.orders = value.parse().expect("--orders N"),
            "--pg" => a.pg = value,
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

/// The day reconciled.
fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 3).expect("day")
}

fn main() {
    let args = parse_args();
    let name = format!("heft_bench_reconcile_{}", std::process::id());
    let admin_url = format!("{}/postgres", args.pg);
    let mut admin = PgConnection::establish(&admin_url).expect("connect to PostgreSQL");
    diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut admin).expect("create database");
    let url = format!("{}/{name}", args.pg);
    let result = std::panic::catch_unwind(|| actix_rt::System::new().block_on(bench(&args, &url)));
    let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

async fn bench(args: &Args, url: &str) {
    let mut config = Config::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"))).expect("config");
    config.database.url = url.to_string();
    let db = Db::open(url, config.database.pool_size, Duration::from_secs(10)).expect("open database");
    db.migrate().expect("migrate");
    let mut conn = PgConnection::establish(url).expect("connect");
    let started = Instant::now();
    seed(&mut conn, args);
    println!(
        "seeded {} cabinets × 16 lanes, {} orders of the day (+{} earlier) in {:.0} s",
        args.cabinets,
        args.orders,
        args.orders / 2,
        started.elapsed().as_secs_f64()
    );
    let bills = [Channel::Wechat, Channel::Alipay].map(|c| (c, bill(&mut conn, c)));
    let ctx = heft::flows::Ctx {
        db,
        cache: Arc::new(heft::cache::MemoryCache::new()),
        payments: heft::pay::Gateways::from_config(&config, "http://127.0.0.1:9").expect("gateways"),
        config: Arc::new(config),
    };
    println!(
        "| job | wall | peak RSS (+ over the job's start) | PostgreSQL CPU | transactions | rows read | rows written | blocks read |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut total = Duration::ZERO;
    let (took, report) =
        measure(&mut conn, "stock", || async { heft::flows::stocktake::take_day(&ctx, day()).await.expect("stock") })
            .await;
    println!("<!-- stock: {report:?} -->");
    total += took;
    for (channel, (raw, build)) in bills {
        let job = format!("bills_{channel}");
        let (took, report) = measure(&mut conn, &job, || async {
            let parsed = Instant::now();
            let file = parse(channel, raw);
            let report = heft::flows::bills::reconcile_file(&ctx, channel, day(), file).await.expect("bills");
            (report, parsed.elapsed())
        })
        .await;
        println!("<!-- {job}: built the file in {build:?}; {report:?} -->");
        total += took;
    }
    let (took, report) = measure(&mut conn, "settlement", || async {
        heft::flows::report::settle_day(&ctx, day()).await.expect("settle")
    })
    .await;
    println!("<!-- settlement: {report:?} -->");
    total += took;
    println!("\nwhole night: {:.1} s", total.as_secs_f64());
}

/// Run `job`, printing its row of the table.
async fn measure<T, F, Fut>(conn: &mut PgConnection, job: &str, f: F) -> (Duration, T)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = rss_kib("VmRSS:");
    let (cpu0, stats0) = (postgres_cpu_s(), db_stats(conn));
    let started = Instant::now();
    let out = f().await;
    let took = started.elapsed();
    let (cpu1, stats1) = (postgres_cpu_s(), db_stats(conn));
    let d = |k: &str| stats1.get(k).copied().unwrap_or(0) - stats0.get(k).copied().unwrap_or(0);
    println!(
        "| {job} | {:.1} s | {} MiB (+{} MiB) | {:.1} s | {} | {} | {} | {} |",
        took.as_secs_f64(),
        rss_kib("VmHWM:") / 1024,
        rss_kib("VmHWM:").saturating_sub(before) / 1024,
        cpu1 - cpu0,
        d("xact_commit"),
        d("tup_returned") + d("tup_fetched"),
        d("tup_inserted") + d("tup_updated") + d("tup_deleted"),
        d("blks_read"),
    );
    (took, out)
}

/// The day's payments of `channel` as the platform's bill file, with a few differences: its
/// bytes, and how long building them took.
fn bill(conn: &mut PgConnection, channel: Channel) -> (Vec<u8>, Duration) {
    #[derive(diesel::QueryableByName)]
    struct Paid {
        #[diesel(sql_type = diesel::sql_types::Text)]
        out_order_no: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        transaction_id: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        out_trade_no: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        amount_fen: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        refund_fen: i64,
        #[diesel(sql_type = diesel::sql_types::Timestamp)]
        at: NaiveDateTime,
    }
    let started = Instant::now();
    let paid: Vec<Paid> = diesel::sql_query(format!(
        "SELECT p.out_order_no, p.transaction_id, COALESCE(p.out_trade_no, '') AS out_trade_no, p.amount_fen,
                COALESCE((SELECT SUM(r.amount_fen) FROM refunds r WHERE r.out_order_no = p.out_order_no), 0)::BIGINT AS refund_fen,
                p.updated_at + INTERVAL '8 hours' AS at
         FROM payments p JOIN orders o ON o.out_order_no = p.out_order_no
         WHERE p.channel = '{channel}' AND o.finished_at >= '2026-12-02 16:00' AND o.finished_at < '2026-12-03 16:00'
         ORDER BY p.updated_at, p.out_order_no"
    ))
    .load(conn)
    .expect("the day's payments");
    // Differences for the reconciliation to find: one fee off in every 10,000, one amount off in
    // every 20,000, one payment missing in every 30,000.
    let fee =
        |a: i64, i: usize| heft::domain::bills::fee(heft::domain::units::Fen(a), 60).0 + i64::from(i % 10_000 == 7);
    let amount = |a: i64, i: usize| a + if i % 20_000 == 11 { 100 } else { 0 };
    let kept: Vec<(usize, &Paid)> = paid.iter().enumerate().filter(|(i, _)| i % 30_000 != 13).collect();
    let bytes = match channel {
        Channel::Wechat => {
            use heft::pay::wechat::bill::{BillLine, BillRefund, build};
            let mut lines = Vec::new();
            for (i, p) in &kept {
                let line = BillLine {
                    time: p.at,
                    appid: "wxd678efh567hg6787".into(),
                    mchid: "1230000109".into(),
                    transaction_id: p.transaction_id.clone(),
                    trade_no: format!("PS{}", p.out_order_no),
                    openid: "o-bench".into(),
                    trade_type: "AUTH".into(),
                    amount_fen: amount(p.amount_fen, *i),
                    fee_fen: fee(p.amount_fen, *i),
                    product: "智能售货柜购物".into(),
                    attach: format!("wxzff|{i}|{}", p.out_order_no),
                    refund: None,
                };
                if p.refund_fen > 0 {
                    lines.push(BillLine {
                        amount_fen: 0,
                        fee_fen: -heft::domain::bills::fee(heft::domain::units::Fen(p.refund_fen), 60).0,
                        refund: Some(BillRefund {
                            refund_id: format!("R{i}"),
                            out_refund_no: format!("RF{}", p.out_order_no),
                            amount_fen: p.refund_fen,
                        }),
                        ..line.clone()
                    });
                }
                lines.push(line);
            }
            build(&lines).into_bytes()
        }
        Channel::Alipay => {
            use heft::pay::alipay::bill::{BillLine, build_zip};
            let mut lines = Vec::new();
            for (i, p) in &kept {
                let line = BillLine {
                    trade_no: p.transaction_id.clone(),
                    out_trade_no: p.out_trade_no.clone(),
                    kind: "交易".into(),
                    subject: "智能售货柜购物".into(),
                    created: p.at,
                    finished: p.at,
                    buyer: "158****7723".into(),
                    amount_fen: amount(p.amount_fen, *i),
                    fee_fen: fee(p.amount_fen, *i),
                    refund_no: String::new(),
                };
                if p.refund_fen > 0 {
                    lines.push(BillLine {
                        kind: "退款".into(),
                        amount_fen: -p.refund_fen,
                        fee_fen: -heft::domain::bills::fee(heft::domain::units::Fen(p.refund_fen), 60).0,
                        refund_no: format!("RF{}", p.out_order_no),
                        ..line.clone()
                    });
                }
                lines.push(line);
            }
            let exported = day().succ_opt().and_then(|d| d.and_hms_opt(6, 0, 0)).expect("time");
            build_zip("20881020002757950156", day(), &lines, exported).expect("zip")
        }
    };
    (bytes, started.elapsed())
}

/// The file as a download hands it over: parsed rows and stated totals.
fn parse(channel: Channel, raw: Vec<u8>) -> BillFile {
    let (rows, totals) = match channel {
        Channel::Wechat => (
            heft::pay::wechat::bill::parse(&raw).expect("parse"),
            heft::pay::wechat::bill::totals(&raw).expect("totals"),
        ),
        Channel::Alipay => (
            heft::pay::alipay::bill::parse_zip(&raw).expect("parse"),
            heft::pay::alipay::bill::totals_zip(&raw).expect("totals"),
        ),
    };
    BillFile { raw, rows, totals }
}

/// The fleet and the day, made in the server.
fn seed(conn: &mut PgConnection, a: &Args) {
    let (cabinets, orders, earlier) = (a.cabinets, a.orders, a.orders / 2);
    let users = (orders / 3).max(1);
    let statements = [
        "INSERT INTO products (id, name, barcode, unit_g, tolerance_g, price_fen, active, created_at, updated_at)
         SELECT g, 'Product ' || g, '69000000' || lpad(g::text, 5, '0'), 50 + g * 25, 5, 250 + g * 50, true, now(), now()
         FROM generate_series(1, 16) g"
            .to_string(),
        format!(
            "INSERT INTO cabinets (sn, cabinet_type, token_hash, frame_key_sealed, status, liveness, last_boot, created_at, updated_at)
             SELECT 'CAB-' || lpad(g::text, 5, '0'), 'standard', 'x', 'x', 'ready', 'online', 1, now(), now()
             FROM generate_series(1, {cabinets}) g"
        ),
        format!(
            "INSERT INTO lanes (sn, code, door, position, name, channel, capacity, threshold, product_id, stock)
             SELECT 'CAB-' || lpad(c::text, 5, '0'), 'A' || l, 1, l, 'A' || l, l, 12, 2, l + 1, 8
             FROM generate_series(1, {cabinets}) c, generate_series(0, 15) l"
        ),
        format!(
            "INSERT INTO users (id, channel, platform_uid, created_at, last_login_at)
             SELECT g, CASE WHEN g % 2 = 0 THEN 'wechat' ELSE 'alipay' END, 'u' || g, now(), now()
             FROM generate_series(1, {users}) g"
        ),
        // Orders 1..earlier are of the week before; the rest of the day, spread over its 24 h.
        format!(
            "CREATE TEMP TABLE o AS
             SELECT g AS id, 1 + (g % {users}) AS user_id, 'CAB-' || lpad((1 + g % {cabinets})::text, 5, '0') AS sn,
                    CASE WHEN (1 + g % {users}) % 2 = 0 THEN 'wechat' ELSE 'alipay' END AS channel,
                    'HO' || lpad(g::text, 9, '0') AS no, g % 16 AS lane, (g / 16) % 16 AS lane2, g % 3 = 0 AS two,
                    CASE WHEN g <= {earlier} THEN TIMESTAMP '2026-11-25 16:00' + (g * INTERVAL '1 second' * 604800 / {earlier})
                         ELSE TIMESTAMP '2026-12-02 16:00' + ((g - {earlier}) * INTERVAL '1 second' * 86399 / {orders}) END AS at
             FROM generate_series(1, {earlier} + {orders}) g"
        ),
        "ALTER TABLE o ADD COLUMN total BIGINT".into(),
        "UPDATE o SET total = (250 + (lane + 1) * 50) + CASE WHEN two AND lane2 <> lane THEN 250 + (lane2 + 1) * 50 ELSE 0 END".into(),
        "INSERT INTO payments (out_order_no, channel, user_id, state, cap_fen, amount_fen, transaction_id, out_trade_no, created_at, updated_at)
         SELECT no, channel, user_id, 'paid', 20000, total,
                CASE WHEN channel = 'wechat' THEN '4200' || lpad(id::text, 24, '0') ELSE '2026' || lpad(id::text, 24, '0') END,
                CASE WHEN channel = 'alipay' THEN 'AT' || no END, at, at
         FROM o"
            .into(),
        // Each order's purchase session, with the door's 16 lanes weighed before and after: the
        // shelves hold 8 units a lane all week (the bench books no sales), so the walk is even.
        "INSERT INTO sessions (id, sn, kind, door, started_by, node_id, started_at, ended_at, outcome)
         SELECT id, sn, 'purchase', 1, 'u' || user_id, 'bench', at - INTERVAL '1 minute', at, 'done' FROM o"
            .into(),
        "CREATE TEMP TABLE shelf AS
         SELECT '{' || string_agg('\"A' || l || '\": ' || (8 * (50 + (l + 1) * 25)), ', ' ORDER BY l) || '}' AS grams
         FROM generate_series(0, 15) l"
            .into(),
        "INSERT INTO orders (id, user_id, sn, door, channel, status, out_order_no, session_id, cap_fen, total_fen, paid_fen, debt_fen, before_g, after_g, notices, created_at, updated_at, finished_at)
         SELECT id, user_id, sn, 1, channel, 'paid', no, id, 20000, total, total, 0, shelf.grams, shelf.grams, '[]', at, at, at FROM o, shelf"
            .into(),
        "UPDATE lanes SET calibrated_at = TIMESTAMP '2026-11-01', zero_counts = 0, counts_per_g = 1.0".into(),
        // The night's readings: 20 closed-door ones a cabinet before midnight (Beijing), ±0.3 g.
        // In 1 % of the cabinets lane A3 holds a unit fewer than the book: a settlement missed it.
        format!(
            "CREATE TEMP TABLE night AS
             SELECT 'CAB-' || lpad(c::text, 5, '0') AS sn, p AS parity,
                    '{{' || string_agg('\"A' || l || '\": ' || (8 * (50 + (l + 1) * 25) + p * 0.3
                        - CASE WHEN c % 100 = 0 AND l = 3 THEN 150 ELSE 0 END), ', ' ORDER BY l) || '}}' AS grams,
                    '[' || string_agg((8 * (50 + (l + 1) * 25) + p)::text, ',' ORDER BY l) || ']' AS counts
             FROM generate_series(1, {cabinets}) c, generate_series(0, 1) p, generate_series(0, 15) l
             GROUP BY c, p"
        ),
        "INSERT INTO weight_log (sn, session_id, kind, recorded_at, device_ts, counts, grams)
         SELECT sn, NULL, 'closed', TIMESTAMP '2026-12-03 15:40' + r * INTERVAL '1 minute', NULL, counts, grams
         FROM night, generate_series(0, 19) r WHERE parity = r % 2"
            .into(),
        "INSERT INTO order_lines (order_id, lane, product_id, product_name, qty, unit_fen, amount_fen)
         SELECT id, 'A' || lane, lane + 1, 'Product ' || (lane + 1), 1, 250 + (lane + 1) * 50, 250 + (lane + 1) * 50 FROM o
         UNION ALL
         SELECT id, 'A' || lane2, lane2 + 1, 'Product ' || (lane2 + 1), 1, 250 + (lane2 + 1) * 50, 250 + (lane2 + 1) * 50
         FROM o WHERE two AND lane2 <> lane"
            .into(),
        "INSERT INTO charged_lines SELECT * FROM order_lines".into(),
        // 1 % of the day's orders (on both platforms) refunded their first line, an hour after.
        format!(
            "INSERT INTO refunds (out_refund_no, order_id, out_order_no, amount_fen, reason, status, refund_id, requested_by, created_at, updated_at, finished_at)
             SELECT 'RF' || no, id, no, 250 + (lane + 1) * 50, 'appeal', 'succeeded', 'R' || id, 'bench', at, at, LEAST(at + INTERVAL '1 hour', TIMESTAMP '2026-12-03 15:59')
             FROM o WHERE id > {earlier} AND id % 200 IN (0, 101)"
        ),
        format!(
            "INSERT INTO review_cases (order_id, kind, status, reasons, opened_by, created_at)
             SELECT id, 'appeal', 'resolved', '[]', 'shopper', at FROM o WHERE id > {earlier} AND id % 200 = 1"
        ),
        format!(
            "INSERT INTO debt_ledger (user_id, order_id, delta_fen, at)
             SELECT user_id, id, 100, at FROM o WHERE id > {earlier} AND id % 200 = 2"
        ),
        // Earlier nights were reconciled: their bills showed the earlier orders.
        "INSERT INTO bill_files (id, channel, day, sha256, size_bytes, row_count, raw, fetched_at)
         VALUES (1000, 'wechat', '2026-12-02', 'earlier', 0, 0, '', now()), (1001, 'alipay', '2026-12-02', 'earlier', 0, 0, '', now())"
            .into(),
        format!(
            "INSERT INTO bill_rows (file_id, channel, day, kind, transaction_id, out_order_no, amount_fen, fee_fen, status, at)
             SELECT CASE WHEN channel = 'wechat' THEN 1000 ELSE 1001 END, channel, '2026-12-02', 'payment', 'T' || id, no, total, 0, 'SUCCESS', at
             FROM o WHERE id <= {earlier}"
        ),
        "ANALYZE".into(),
    ];
    for sql in statements {
        diesel::sql_query(&sql).execute(conn).unwrap_or_else(|e| panic!("{e}: {sql}"));
    }
}

/// This process's resident memory (`VmRSS:`) or its peak since last reset (`VmHWM:`), KiB.
fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds of every PostgreSQL process so far.
fn postgres_cpu_s() -> f64 {
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        if !head.split_once('(').is_some_and(|(_, comm)| comm.starts_with("postgres")) {
            continue;
        }
        let f: Vec<&str> = rest.split_whitespace().collect();
        ticks += f.get(11..13).map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    }
    // SAFETY: sysconf only reads a constant.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// This database's counters (`pg_stat_database`).
fn db_stats(conn: &mut PgConnection) -> HashMap<String, i64> {
    #[derive(diesel::QueryableByName)]
    struct Stats {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        xact_commit: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        tup_returned: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        tup_fetched: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        tup_inserted: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        tup_updated: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        tup_deleted: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        blks_read: i64,
    }
    // The counters are sent to the collector at a transaction's end: give them a moment.
    std::thread::sleep(Duration::from_millis(600));
    let _ = diesel::sql_query("SELECT pg_stat_clear_snapshot()").execute(conn);
    let s: Stats = diesel::sql_query(
        "SELECT xact_commit, tup_returned, tup_fetched, tup_inserted, tup_updated, tup_deleted, blks_read
         FROM pg_stat_database WHERE datname = current_database()",
    )
    .get_result(conn)
    .expect("pg_stat_database");
    HashMap::from([
        ("xact_commit".into(), s.xact_commit),
        ("tup_returned".into(), s.tup_returned),
        ("tup_fetched".into(), s.tup_fetched),
        ("tup_inserted".into(), s.tup_inserted),
        ("tup_updated".into(), s.tup_updated),
        ("tup_deleted".into(), s.tup_deleted),
        ("blks_read".into(), s.blks_read),
    ])
}
