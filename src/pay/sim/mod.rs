//! A local WeChat Pay + Alipay: the two platforms as Heft sees them, on one HTTP listener.
//!
//! It speaks the real wire protocols (`../shared/reference/payment-protocols.md`): it checks every
//! request signature the way the platform does, keeps each order's state machine, signs its
//! responses, sends signed (WeChat: also encrypted) callbacks on the platforms' retry schedules,
//! and serves bills in the real file formats. Knobs inject the failures real platforms have.
//!
//! Besides the platform paths it serves what a phone would do, for tests and demos:
//! `POST /sim/wechat/login` and `/sim/alipay/login` (a mini-program login code),
//! `POST /sim/wechat/confirm` and `/sim/alipay/confirm` (the shopper confirms on the platform's
//! page), `GET|POST /sim/knobs`, `GET /sim/callbacks` (every callback attempt), `GET /sim/holds`
//! (every pre-authorisation: what is frozen, what was charged, how many times), and
//! `GET|POST /sim/clock` (the platforms' clock, which decides which days' bills are published).
//!
//! With `pay_sim.state_file` set, what the platforms know (orders, holds, trades, refunds, hence
//! bills) is kept in a SQLite file of its own and survives a restart, as on the real platforms.

pub mod alipay;
pub mod callbacks;
pub mod store;
pub mod wechat;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use serde::{Deserialize, Serialize};

use crate::config::{AlipayConfig, PaySimConfig, WechatConfig};
use crate::pay::keys::{self, KeyError};

pub use callbacks::{Callback, CallbackAttempt, Callbacks};

/// Failure injection. Counters apply to the next N matching requests and count down.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Knobs {
    /// Create, capture and refund calls refused with the platform's business error (WeChat 403
    /// `RULE_LIMIT`, `NOT_ENOUGH` for a refund / Alipay 40004), nothing applied.
    pub decline: u32,
    /// API calls answered 500 `SYSTEM_ERROR` (Alipay 20000 `isp.unknow-error`), nothing applied.
    pub server_error: u32,
    /// API calls refused as if their signature did not verify (WeChat 401 `SIGN_ERROR`, Alipay
    /// 40002 `isv.invalid-signature`), nothing applied: our side broken, as after a key rotated
    /// on the platform but not in Heft.
    pub reject_signature: u32,
    /// API calls applied but answered only after `hang_ms`: the client times out not knowing.
    pub timeout: u32,
    pub hang_ms: u64,
    /// Every callback is sent this many extra times (after the first is acknowledged).
    pub duplicate_callbacks: u32,
    /// Callbacks start this late.
    pub callback_delay_ms: u64,
    /// Callbacks are not sent at all (the client must query).
    pub drop_callbacks: bool,
    /// Captures whose collection first fails and then succeeds `recover_ms` later (WeChat keeps
    /// deducting and calls back USER_PAID; Alipay refuses the trade.pay and accepts its retry).
    pub fail_then_succeed: u32,
    pub recover_ms: u64,
    /// Releases refused for good: WeChat cancel 400 `INVALID_ORDER_STATE`, Alipay unfreeze 40004
    /// `REQUEST_AMOUNT_EXCEED`, nothing applied.
    pub refuse_release: u32,
    /// Differences every bill served has, for reconciliation to find.
    pub bill: BillFaults,
}

/// Differences put into every bill the simulator serves (both platforms). They pick the day's
/// trades in the bill's order, so downloading a day again gives the same file, as a published
/// bill does not change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BillFaults {
    /// The day's first N payments are left out.
    pub missing_trade: u32,
    /// N payments that no merchant order stands behind are added (长款); needs a payment that
    /// day to model them on.
    pub unknown_trade: u32,
    /// The next N payments show one yuan more than was charged.
    pub wrong_amount: u32,
    /// The next N payments show a fee one fen above the rate.
    pub wrong_fee: u32,
    /// The day's first N refunds are left out.
    pub missing_refund: u32,
}

/// A bill line the faults can change.
pub trait FaultyLine: Clone {
    fn is_refund(&self) -> bool;
    fn add_amount(&mut self, fen: i64);
    fn add_fee(&mut self, fen: i64);
    /// A payment like this one that no merchant order stands behind, the `n`th of the day.
    fn unknown(&self, n: u32) -> Self;
}

impl BillFaults {
    pub fn apply<L: FaultyLine>(&self, lines: &mut Vec<L>) {
        let payments: Vec<usize> = (0..lines.len()).filter(|&i| !lines[i].is_refund()).collect();
        let refunds: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].is_refund()).collect();
        let (missing, amount, fee) = (self.missing_trade as usize, self.wrong_amount as usize, self.wrong_fee as usize);
        for &i in payments.iter().skip(missing).take(amount) {
            lines[i].add_amount(100);
        }
        for &i in payments.iter().skip(missing + amount).take(fee) {
            lines[i].add_fee(1);
        }
        let model = payments.first().map(|&i| lines[i].clone());
        let mut gone: Vec<usize> = payments.iter().take(missing).copied().collect();
        gone.extend(refunds.iter().take(self.missing_refund as usize));
        gone.sort_unstable();
        for i in gone.into_iter().rev() {
            lines.remove(i);
        }
        if let Some(model) = model {
            lines.extend((0..self.unknown_trade).map(|n| model.unknown(n)));
        }
    }
}

/// A pre-authorisation as the platform holds it (`GET /sim/holds`): the platform's own account of
/// what is frozen and what was charged, to check a client against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// `wechat` or `alipay`.
    pub channel: String,
    pub out_order_no: String,
    /// The platform's state: WeChat `CREATED`, `USER_CONFIRM`, `MCH_COMPLETE`, `DONE`, `REVOKED`,
    /// `EXPIRED`; Alipay `AUTHORIZED`, `FINISH`, `CLOSED`.
    pub state: String,
    /// The shopper's money frozen for it now: confirmed, and neither charged nor released.
    pub held_fen: i64,
    /// Charged against it (collected or being collected), net of refunds.
    pub charged_fen: i64,
    /// Charges made against it: more than one is a double charge.
    pub charges: u32,
}

/// The hour (Beijing time) of the next day from which both platforms serve a day's bill:
/// WeChat builds it from 09:00 (and asks merchants to fetch after 10:00), Alipay early in the
/// morning; neither serves the current day.
pub const BILL_READY_HOUR: u32 = 9;

/// Whether the bill of `date` is out at `now` (Beijing time).
pub fn bill_published(date: chrono::NaiveDate, now: chrono::NaiveDateTime) -> bool {
    let ready = date.succ_opt().and_then(|d| d.and_hms_opt(BILL_READY_HOUR, 0, 0));
    ready.is_some_and(|ready| now >= ready)
}

/// Take one from a knob counter; true when it fired.
pub fn take(counter: &mut u32) -> bool {
    if *counter > 0 {
        *counter -= 1;
        true
    } else {
        false
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("simulator listener {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("simulator HTTP client: {0}")]
    Client(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// Everything the simulator's handlers share.
pub struct SimState {
    pub knobs: Mutex<Knobs>,
    /// How far the platforms' clock runs ahead of the real one (a test moves to tomorrow).
    clock_offset_s: AtomicI64,
    pub callbacks: Callbacks,
    pub wechat: wechat::WechatSim,
    pub alipay: alipay::AlipaySim,
}

impl SimState {
    pub fn new(sim: &PaySimConfig, wechat: &WechatConfig, alipay: &AlipayConfig) -> Result<SimState, SimError> {
        let store = match sim.state_file.trim() {
            "" => None,
            path => Some(Arc::new(store::Store::open(path)?)),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(sim.callback_timeout_ms))
            .build()
            .map_err(|e| SimError::Client(e.to_string()))?;
        Ok(SimState {
            knobs: Mutex::new(Knobs::default()),
            clock_offset_s: AtomicI64::new(0),
            callbacks: Callbacks::new(http, sim.time_scale),
            wechat: wechat::WechatSim::new(wechat, store.clone())?,
            alipay: alipay::AlipaySim::new(alipay, store)?,
        })
    }

    /// The platforms' time now: the real clock plus the test offset.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + chrono::Duration::seconds(self.clock_offset_s.load(Ordering::Relaxed))
    }

    /// Whether a day's bill is published yet.
    pub fn bill_published(&self, date: chrono::NaiveDate) -> bool {
        bill_published(date, (self.now() + chrono::Duration::hours(8)).naive_utc())
    }

    /// Read-modify the knobs.
    pub fn knob<T>(&self, f: impl FnOnce(&mut Knobs) -> T) -> T {
        let mut k = self.knobs.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut k)
    }
}

/// The simulator's merchant-side public key: the one matching the configured merchant private key.
pub fn merchant_public(spec: &str, sim_pem: &str) -> Result<keys::PublicKey, KeyError> {
    Ok(keys::load_private(spec, sim_pem)?.to_public_key())
}

/// A running simulator.
pub struct RunningSim {
    pub addr: SocketAddr,
    pub state: Arc<SimState>,
    server: actix_web::dev::ServerHandle,
}

impl RunningSim {
    pub async fn stop(self) {
        self.server.stop(true).await;
    }
}

/// Serve the simulator. Must run inside an actix `System`.
pub async fn start(sim: &PaySimConfig, wechat: &WechatConfig, alipay: &AlipayConfig) -> Result<RunningSim, SimError> {
    let state = Arc::new(SimState::new(sim, wechat, alipay)?);
    let data = web::Data::from(state.clone());
    let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(routes))
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(sim.listen)
        .map_err(|source| SimError::Bind { addr: sim.listen, source })?;
    let addr = server.addrs().first().copied().unwrap_or(sim.listen);
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    tracing::info!(%addr, "payment simulator is serving");
    Ok(RunningSim { addr, state, server: handle })
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/sim/knobs", web::get().to(get_knobs))
        .route("/sim/knobs", web::post().to(set_knobs))
        .route("/sim/callbacks", web::get().to(list_callbacks))
        .route("/sim/holds", web::get().to(list_holds))
        .route("/sim/orders/{out_order_no}/forget", web::post().to(forget))
        .route("/sim/clock", web::get().to(get_clock))
        .route("/sim/clock", web::post().to(set_clock))
        .configure(wechat::routes)
        .configure(alipay::routes);
}

/// `POST /sim/clock {"offset_s": N}`: the platforms' clock runs N seconds ahead of the real one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockSet {
    offset_s: i64,
}

async fn get_clock(state: web::Data<SimState>) -> HttpResponse {
    let offset_s = state.clock_offset_s.load(Ordering::Relaxed);
    HttpResponse::Ok().json(serde_json::json!({ "now": state.now(), "offset_s": offset_s }))
}

async fn set_clock(state: web::Data<SimState>, body: web::Json<ClockSet>) -> HttpResponse {
    state.clock_offset_s.store(body.offset_s, Ordering::Relaxed);
    get_clock(state).await
}

async fn get_knobs(state: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(state.knob(|k| k.clone()))
}

async fn set_knobs(state: web::Data<SimState>, body: web::Json<Knobs>) -> HttpResponse {
    let knobs = body.into_inner();
    state.knob(|k| *k = knobs.clone());
    HttpResponse::Ok().json(knobs)
}

/// Fault injection: the platform loses an order (and, on Alipay, its trades) and from then on
/// answers that it does not exist. 404 when neither platform had it.
async fn forget(state: web::Data<SimState>, path: web::Path<String>) -> HttpResponse {
    let no = path.into_inner();
    let wechat = state.wechat.forget(&no);
    let alipay = state.alipay.forget(&no);
    match wechat || alipay {
        true => HttpResponse::Ok().json(serde_json::json!({ "forgotten": no })),
        false => HttpResponse::NotFound().json(serde_json::json!({ "error": "not_found", "out_order_no": no })),
    }
}

/// `GET /sim/holds`: every pre-authorisation of both platforms, by order number.
async fn list_holds(state: web::Data<SimState>) -> HttpResponse {
    let mut holds = state.wechat.holds();
    holds.extend(state.alipay.holds());
    holds.sort_by(|a, b| a.out_order_no.cmp(&b.out_order_no));
    HttpResponse::Ok().json(serde_json::json!({ "holds": holds }))
}

async fn list_callbacks(state: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "attempts": state.callbacks.attempts() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_days_bill_is_out_from_nine_the_next_morning() {
        let day = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("date");
        let at = |d: u32, h: u32, m: u32| {
            chrono::NaiveDate::from_ymd_opt(2026, 1, d).and_then(|x| x.and_hms_opt(h, m, 0)).expect("time")
        };
        assert!(!bill_published(day, at(1, 23, 59)), "never the current day");
        assert!(!bill_published(day, at(2, 8, 59)));
        assert!(bill_published(day, at(2, 9, 0)));
        assert!(bill_published(day, at(5, 0, 0)));
    }
}
