//! Simulated shoppers: a person with the mini-program buying from a simulated cabinet. A shopper
//! signs in through the platform simulator's phone side and Heft, scans a door, confirms the
//! pre-authorisation on the platform's page, waits for Heft's `open` to unlock the door, opens it,
//! takes products (sometimes none, sometimes putting one back on another lane), closes it, and
//! follows the order to its end. What it really did is its [`Truth`], to compare with what Heft
//! charged. Used by integration tests, benchmarks (door closed → order paying) and
//! `heft simulate --shoppers`.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::handle::{CabinetRemote, SimCabinet};
use crate::pay::Channel;

#[derive(Debug, thiserror::Error)]
pub enum ShopperError {
    #[error("HTTP request to {what} failed: {source}")]
    Http { what: &'static str, source: reqwest::Error },
    #[error("{what} answered {status}: {body}")]
    Status { what: &'static str, status: u16, body: String },
    /// Heft refused the scan (`shopper_blocked`, `unpaid_debt`, `cabinet_busy` after the retries…).
    #[error("scan refused, {status} {code}: {message}")]
    Refused { status: u16, code: String, message: String },
    #[error("{what}: the answer has no {field}")]
    Missing { what: &'static str, field: &'static str },
    #[error("door {door} of {sn} is not in the configuration the cabinet holds")]
    NoSuchDoor { sn: String, door: u32 },
    #[error("simulated cabinet {sn}: {message}")]
    Cabinet { sn: String, message: String },
}

impl ShopperError {
    /// The refusal code of a refused scan.
    pub fn refusal(&self) -> Option<&str> {
        match self {
            ShopperError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// What a shopper does, apart from what it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct ShopperOptions {
    pub plan: PlanOptions,
    /// The open-door weight period of the cadence (`protocol.open_weight_ms`).
    pub open_period: Duration,
    /// The door stays open this many periods (drawn between the two, inclusive), so open-door
    /// weights stream.
    pub open_periods: (u32, u32),
    /// How long the shopper looks at the payment page before confirming (drawn between the two):
    /// a person takes a second or a few; zero is a shopper who confirms at once.
    pub confirm_pause: (Duration, Duration),
    /// `cabinet_busy` is retried this many times after a random pause in `busy_pause`.
    pub busy_retries: u32,
    pub busy_pause: (Duration, Duration),
    /// How long the shopper stands at the door waiting for it to unlock.
    pub unlock_timeout: Duration,
    /// The order is polled this often until it leaves `settling`, then four times slower.
    pub poll: Duration,
    /// Longest wait for the order to end once the door closed (or did not open).
    pub order_timeout: Duration,
}

impl Default for ShopperOptions {
    fn default() -> Self {
        ShopperOptions {
            plan: PlanOptions::default(),
            open_period: Duration::from_millis(300),
            open_periods: (2, 4),
            confirm_pause: (Duration::ZERO, Duration::ZERO),
            busy_retries: 20,
            busy_pause: (Duration::from_millis(100), Duration::from_millis(500)),
            unlock_timeout: Duration::from_secs(30),
            poll: Duration::from_millis(50),
            order_timeout: Duration::from_secs(90),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanOptions {
    /// Probability that the shopper takes nothing.
    pub p_nothing: f64,
    /// Probability that one unit taken from a lane is put back on another lane of the door.
    pub p_move: f64,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions { p_nothing: 0.1, p_move: 0.1 }
    }
}

/// One lane of the opened door as the shopper sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ShelfLane {
    pub lane: String,
    pub channel: u32,
    pub units: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Taken {
    pub lane: String,
    pub channel: u32,
    pub qty: u32,
}

/// Units taken from one lane and put down on another: not a sale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Moved {
    pub from_lane: String,
    pub from_channel: u32,
    pub to_lane: String,
    pub to_channel: u32,
    pub qty: u32,
}

/// What a shopper will do with the open door.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub take: Vec<Taken>,
    pub moves: Vec<Moved>,
}

/// Decide what to take from a door's lanes: usually 1–3 units from 1–2 lanes; with `p_nothing`
/// nothing; with `p_move` also one unit carried from a lane to another lane not taken from (so
/// the move shows as one loss and one gain). Never more than a lane holds.
pub fn plan(rng: &mut impl Rng, lanes: &[ShelfLane], opts: &PlanOptions) -> Plan {
    let stocked: Vec<&ShelfLane> = lanes.iter().filter(|l| l.units > 0).collect();
    if stocked.is_empty() || rng.gen_bool(opts.p_nothing.clamp(0.0, 1.0)) {
        return Plan::default();
    }
    let k = rng.gen_range(1..=2).min(stocked.len());
    let chosen: Vec<&ShelfLane> = stocked.choose_multiple(rng, k).copied().collect();
    let mut qty = vec![1u32; k];
    // The rest of 1–3 units, on chosen lanes that still hold some.
    let extra = rng.gen_range(k..=3) - k;
    for _ in 0..extra {
        let room: Vec<usize> = (0..k).filter(|&i| qty[i] < chosen[i].units).collect();
        let Some(&i) = room.choose(rng) else { break };
        qty[i] += 1;
    }
    let take: Vec<Taken> =
        chosen.iter().zip(&qty).map(|(l, &qty)| Taken { lane: l.lane.clone(), channel: l.channel, qty }).collect();
    let mut moves = Vec::new();
    if rng.gen_bool(opts.p_move.clamp(0.0, 1.0)) {
        let left = |l: &ShelfLane| l.units - take.iter().find(|t| t.channel == l.channel).map_or(0, |t| t.qty);
        let from: Vec<&ShelfLane> = lanes.iter().filter(|l| left(l) > 0).collect();
        if let Some(from) = from.choose(rng) {
            let to: Vec<&ShelfLane> = lanes
                .iter()
                .filter(|l| l.channel != from.channel && !take.iter().any(|t| t.channel == l.channel))
                .collect();
            if let Some(to) = to.choose(rng) {
                moves.push(Moved {
                    from_lane: from.lane.clone(),
                    from_channel: from.channel,
                    to_lane: to.lane.clone(),
                    to_channel: to.channel,
                    qty: 1,
                });
            }
        }
    }
    Plan { take, moves }
}

/// The lanes of `door` in the configuration the cabinet holds, with what each holds now.
pub fn shelf(cabinet: &CabinetRemote, door: u32) -> Option<Vec<ShelfLane>> {
    cabinet.physical(|p| {
        let config = p.last_config()?;
        let lanes = &config.doors.iter().find(|d| d.door == door)?.lanes;
        let truth = p.truth();
        Some(
            lanes
                .iter()
                .map(|l| ShelfLane {
                    lane: l.code.clone(),
                    channel: l.channel,
                    units: truth.get(l.channel as usize).map_or(0, |t| t.units),
                })
                .collect(),
        )
    })
}

/// A signed-in shopper.
#[derive(Debug, Clone)]
pub struct Token {
    pub token: String,
    pub channel: Channel,
    /// The platform user: WeChat openid or Alipay user_id.
    pub uid: String,
}

/// Heft's order as the shopper polls it.
#[derive(Debug, Clone, Deserialize)]
struct OrderAnswer {
    status: String,
    #[serde(default)]
    total_fen: Option<i64>,
    #[serde(default)]
    lines: Vec<ChargedLine>,
}

/// A line of the order as Heft settled it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChargedLine {
    pub lane: String,
    pub qty: i64,
    #[serde(default)]
    pub amount_fen: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// The scan's answer (busy retries included).
    pub scan_ms: f64,
    /// Scan to door unlocked: the pre-authorisation, its callback and `open`.
    pub scan_to_unlocked_ms: Option<f64>,
    /// Door closed to the order leaving `door_open`/`settling` (reaching `paying` or later).
    pub closed_to_settled_ms: Option<f64>,
    /// Door closed to the order's last status.
    pub closed_to_final_ms: Option<f64>,
}

/// What one shopper really did, and what Heft made of it.
#[derive(Debug, Clone, Serialize)]
pub struct Truth {
    pub sn: String,
    pub door: u32,
    pub order_id: i64,
    pub uid: String,
    pub channel: Channel,
    pub taken: Vec<Taken>,
    pub moved: Vec<Moved>,
    /// What the taken units cost by the cabinet's shelf labels.
    pub expected_fen: i64,
    /// The last status seen: final (`paid`, `cancelled`, `no_purchase`), one that needs someone
    /// (`review`, `payment_failed`), or any other when `finished` is false (the wait ran out).
    pub final_status: String,
    pub finished: bool,
    /// The first status after `settling` (usually `paying`).
    pub settled_status: Option<String>,
    /// The order's total when paid.
    pub charged_fen: Option<i64>,
    pub lines: Vec<ChargedLine>,
    pub timings: Timings,
    #[serde(skip)]
    pub closed_at: Option<Instant>,
    #[serde(skip)]
    pub settled_at: Option<Instant>,
}

impl Truth {
    /// Whether Heft charged what was taken: `Some(false)` for a paid order of another amount or
    /// a `no_purchase` when something was taken; `None` when the order did not end in either.
    pub fn matches(&self) -> Option<bool> {
        match self.final_status.as_str() {
            "paid" => Some(self.charged_fen == Some(self.expected_fen)),
            "no_purchase" => Some(self.expected_fen == 0),
            _ => None,
        }
    }
}

/// Statuses where the shopper stops waiting: final, or waiting for a person or a retry.
fn stop_waiting(status: &str) -> bool {
    matches!(status, "paid" | "cancelled" | "no_purchase" | "review" | "payment_failed")
}

/// Statuses before the settlement is written.
fn unsettled(status: &str) -> bool {
    matches!(status, "created" | "authorized" | "door_open" | "settling")
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// Anything a shopper can stand in front of.
impl AsRef<CabinetRemote> for SimCabinet {
    fn as_ref(&self) -> &CabinetRemote {
        self.remote()
    }
}

impl AsRef<CabinetRemote> for CabinetRemote {
    fn as_ref(&self) -> &CabinetRemote {
        self
    }
}

/// The mini-program's side of the API, and the phone's side of the platform simulator.
#[derive(Debug, Clone)]
pub struct ShopperClient {
    http: reqwest::Client,
    heft_base: String,
    sim_base: String,
}

impl ShopperClient {
    /// `heft_base` e.g. `http://127.0.0.1:8080`, `sim_base` the payment simulator,
    /// e.g. `http://127.0.0.1:8090`.
    pub fn new(heft_base: &str, sim_base: &str) -> Result<ShopperClient, ShopperError> {
        // Idle connections dropped before Heft's keep-alive (5 s) closes them under a request.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .pool_idle_timeout(Duration::from_secs(4))
            .build()
            .map_err(|source| ShopperError::Http { what: "client", source })?;
        Ok(ShopperClient {
            http,
            heft_base: heft_base.trim_end_matches('/').to_string(),
            sim_base: sim_base.trim_end_matches('/').to_string(),
        })
    }

    /// Send and read the answer as JSON (`null` when it is not JSON).
    async fn call(&self, what: &'static str, req: reqwest::RequestBuilder) -> Result<(u16, Value), ShopperError> {
        let res = req.send().await.map_err(|source| ShopperError::Http { what, source })?;
        let status = res.status().as_u16();
        let body = res.bytes().await.map_err(|source| ShopperError::Http { what, source })?;
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// As [`ShopperClient::call`], requiring a 2xx.
    async fn ok(&self, what: &'static str, req: reqwest::RequestBuilder) -> Result<Value, ShopperError> {
        match self.call(what, req).await? {
            (status, v) if (200..300).contains(&status) => Ok(v),
            (status, v) => Err(ShopperError::Status { what, status, body: v.to_string() }),
        }
    }

    /// The phone logs in to the platform (`wx.login` / `my.getAuthCode` on the simulator) and
    /// the mini-program exchanges the code with Heft.
    pub async fn sign_in(&self, channel: Channel, uid: &str) -> Result<Token, ShopperError> {
        let (path, body, field) = match channel {
            Channel::Wechat => ("/sim/wechat/login", json!({"openid": uid}), "code"),
            Channel::Alipay => ("/sim/alipay/login", json!({"user_id": uid}), "auth_code"),
        };
        let what = "platform login";
        let v = self.ok(what, self.http.post(format!("{}{path}", self.sim_base)).json(&body)).await?;
        let code = v[field].as_str().ok_or(ShopperError::Missing { what, field })?;
        let what = "Heft sign-in";
        let url = format!("{}/api/v1/auth/{}", self.heft_base, channel.as_str());
        let v = self.ok(what, self.http.post(url).json(&json!({"code": code}))).await?;
        let token = v["token"].as_str().ok_or(ShopperError::Missing { what, field: "token" })?.to_string();
        Ok(Token { token, channel, uid: uid.to_string() })
    }

    /// Scan `door`: `(order id, confirm parameters)`. `cabinet_busy` is retried after a random
    /// pause, at most `busy_retries` times; any other refusal is returned.
    async fn scan(
        &self,
        token: &Token,
        sn: &str,
        door: u32,
        opts: &ShopperOptions,
        rng: &mut StdRng,
    ) -> Result<(i64, Value), ShopperError> {
        let what = "scan";
        let body = json!({"sn": sn, "door": door, "channel": token.channel.as_str()});
        let mut tries = 0;
        loop {
            let req = self.http.post(format!("{}/api/v1/orders", self.heft_base)).bearer_auth(&token.token).json(&body);
            let (status, v) = self.call(what, req).await?;
            if (200..300).contains(&status) {
                let id = v["order"]["id"].as_i64().ok_or(ShopperError::Missing { what, field: "order.id" })?;
                return Ok((id, v["confirm"].clone()));
            }
            // An answer without a code (a proxy, a missing route) is named by its status.
            let code = v["error"].as_str().map_or_else(|| format!("http_{status}"), str::to_string);
            if code == "cabinet_busy" && tries < opts.busy_retries {
                tries += 1;
                let (low, high) = opts.busy_pause;
                tokio::time::sleep(if high > low { rng.gen_range(low..high) } else { low }).await;
                continue;
            }
            let message = v["message"].as_str().map_or_else(|| v.to_string(), str::to_string);
            return Err(ShopperError::Refused { status, code, message });
        }
    }

    /// The shopper confirms on the platform's page, as the simulator lets a test do.
    async fn confirm(&self, token: &Token, confirm: &Value) -> Result<(), ShopperError> {
        let (what, path, body) = match token.channel {
            Channel::Wechat => {
                let what = "WeChat confirm";
                let package = confirm["extraData"]["package"]
                    .as_str()
                    .ok_or(ShopperError::Missing { what, field: "confirm.extraData.package" })?;
                (what, "/sim/wechat/confirm", json!({"package": package, "openid": token.uid}))
            }
            Channel::Alipay => {
                let what = "Alipay confirm";
                let order_str =
                    confirm["orderStr"].as_str().ok_or(ShopperError::Missing { what, field: "confirm.orderStr" })?;
                (what, "/sim/alipay/confirm", json!({"orderStr": order_str, "user_id": token.uid}))
            }
        };
        self.ok(what, self.http.post(format!("{}{path}", self.sim_base)).json(&body)).await.map(|_| ())
    }

    async fn order(&self, token: &Token, id: i64) -> Result<OrderAnswer, ShopperError> {
        let what = "order";
        let url = format!("{}/api/v1/orders/{id}", self.heft_base);
        let v = self.ok(what, self.http.get(url).bearer_auth(&token.token)).await?;
        serde_json::from_value(v.clone()).map_err(|_| ShopperError::Status { what, status: 200, body: v.to_string() })
    }

    /// Plan from the door's shelf as it is now, then [`ShopperClient::purchase`].
    pub async fn shop(
        &self,
        token: &Token,
        cabinet: &impl AsRef<CabinetRemote>,
        door: u32,
        opts: &ShopperOptions,
        rng: &mut StdRng,
    ) -> Result<Truth, ShopperError> {
        let cab = cabinet.as_ref();
        let lanes = shelf(cab, door).ok_or_else(|| ShopperError::NoSuchDoor { sn: cab.sn().to_string(), door })?;
        let plan = plan(rng, &lanes, &opts.plan);
        self.purchase(token, cab, door, &plan, opts, rng).await
    }

    /// One visit: [`ShopperClient::enter`], then [`ShopperClient::follow`] the order until it
    /// stops moving (or `order_timeout`).
    pub async fn purchase(
        &self,
        token: &Token,
        cabinet: &impl AsRef<CabinetRemote>,
        door: u32,
        plan: &Plan,
        opts: &ShopperOptions,
        rng: &mut StdRng,
    ) -> Result<Truth, ShopperError> {
        let mut truth = self.enter(token, cabinet, door, plan, opts, rng).await?;
        self.follow(token, &mut truth, opts).await;
        Ok(truth)
    }

    /// The visit up to the door closing behind the shopper: scan, confirm, wait for the unlock,
    /// open, carry out `plan`, close. A door that never unlocks is not an error: the truth says
    /// nothing was taken, and following the order says what became of it (Heft cancels it).
    /// Nor is a cabinet that lost its connection: the door moves all the same (the cabinet
    /// reports it after its next login), so the truth is what the hands did.
    pub async fn enter(
        &self,
        token: &Token,
        cabinet: &impl AsRef<CabinetRemote>,
        door: u32,
        plan: &Plan,
        opts: &ShopperOptions,
        rng: &mut StdRng,
    ) -> Result<Truth, ShopperError> {
        let cab = cabinet.as_ref();
        let sn = cab.sn().to_string();
        let prices: BTreeMap<String, i64> =
            cab.physical(|p| p.price_tags().into_iter().map(|t| (t.lane, t.price_fen.0)).collect());
        let scanned = Instant::now();
        let (order_id, confirm) = self.scan(token, &sn, door, opts, rng).await?;
        let mut truth = Truth {
            sn: sn.clone(),
            door,
            order_id,
            uid: token.uid.clone(),
            channel: token.channel,
            taken: Vec::new(),
            moved: Vec::new(),
            expected_fen: 0,
            final_status: "created".into(),
            finished: false,
            settled_status: None,
            charged_fen: None,
            lines: Vec::new(),
            timings: Timings { scan_ms: ms(scanned.elapsed()), ..Timings::default() },
            closed_at: None,
            settled_at: None,
        };
        let (low, high) = opts.confirm_pause;
        tokio::time::sleep(if high > low { rng.gen_range(low..high) } else { low }).await;
        self.confirm(token, &confirm).await?;
        if !cab.wait_unlocked(door, opts.unlock_timeout).await {
            return Ok(truth);
        }
        truth.timings.scan_to_unlocked_ms = Some(ms(scanned.elapsed()));
        if let Err(e) = cab.open_door(door).await {
            // Unheard: the shopper takes nothing and lets the door fall shut again.
            tracing::debug!(%sn, door, error = %e, "door opened while the cabinet is offline");
            let _ = cab.close_door(door).await;
            return Ok(truth);
        }
        let (low, high) = opts.open_periods;
        let periods = rng.gen_range(low.min(high)..=high.max(low)).max(1);
        // A moment to choose, then the hands go in; the rest of the time the door just stands
        // open and the weights stream.
        tokio::time::sleep(opts.open_period).await;
        let done = cab.physical(|p| carry_out(p, plan));
        tokio::time::sleep(opts.open_period * (periods - 1)).await;
        // Closed even when the hands failed, so the cabinet is not left open; heard or not.
        if let Err(e) = cab.close_door(door).await {
            tracing::debug!(%sn, door, error = %e, "door closed while the cabinet is offline");
        }
        done.map_err(|e| ShopperError::Cabinet { sn: sn.clone(), message: e.to_string() })?;
        truth.closed_at = Some(Instant::now());
        truth.taken = plan.take.clone();
        truth.moved = plan.moves.clone();
        truth.expected_fen =
            plan.take.iter().map(|t| i64::from(t.qty) * prices.get(&t.lane).copied().unwrap_or(0)).sum();
        Ok(truth)
    }

    /// Poll the order until it stops moving or `order_timeout` passes. A failed poll is tried
    /// again (Heft may be briefly overloaded); the truth keeps the last status seen.
    pub async fn follow(&self, token: &Token, truth: &mut Truth, opts: &ShopperOptions) {
        let since = truth.closed_at.unwrap_or_else(Instant::now);
        let deadline = since + opts.order_timeout;
        loop {
            if let Ok(o) = self.order(token, truth.order_id).await {
                let now = Instant::now();
                if truth.closed_at.is_some() && truth.settled_at.is_none() && !unsettled(&o.status) {
                    truth.settled_at = Some(now);
                    truth.settled_status = Some(o.status.clone());
                    truth.timings.closed_to_settled_ms = Some(ms(now - since));
                }
                truth.final_status = o.status;
                truth.lines = o.lines;
                truth.charged_fen = if truth.final_status == "paid" { o.total_fen } else { None };
                if truth.closed_at.is_some() {
                    truth.timings.closed_to_final_ms = Some(ms(now - since));
                }
                if stop_waiting(&truth.final_status) {
                    truth.finished = true;
                    return;
                }
            }
            if Instant::now() >= deadline {
                return;
            }
            let fast = truth.settled_at.is_none() && truth.closed_at.is_some();
            tokio::time::sleep(if fast { opts.poll } else { opts.poll * 4 }).await;
        }
    }
}

/// The hands in the cabinet: take the units, and carry the moved ones to their new lane (where
/// they weigh what they weighed on the old one).
fn carry_out(p: &mut super::cabinet::Physical, plan: &Plan) -> Result<(), super::cabinet::CabinetError> {
    // All or nothing, so the truth is never half done: check every lane holds what leaves it.
    let mut leaving: BTreeMap<u32, u32> = BTreeMap::new();
    for (channel, qty) in
        plan.take.iter().map(|t| (t.channel, t.qty)).chain(plan.moves.iter().map(|m| (m.from_channel, m.qty)))
    {
        *leaving.entry(channel).or_default() += qty;
    }
    let truth = p.truth();
    for (&channel, &want) in &leaving {
        let have = truth
            .get(channel as usize)
            .map(|t| t.units)
            .ok_or(super::cabinet::CabinetError::NoSuchChannel { channel, channels: p.channels() })?;
        if have < want {
            return Err(super::cabinet::CabinetError::NotEnoughUnits { channel, have, want });
        }
    }
    if let Some(m) = plan.moves.iter().find(|m| m.to_channel >= p.channels()) {
        return Err(super::cabinet::CabinetError::NoSuchChannel { channel: m.to_channel, channels: p.channels() });
    }
    for t in &plan.take {
        p.take(t.channel, t.qty)?;
    }
    for m in &plan.moves {
        let unit_g = p.truth().get(m.from_channel as usize).map_or(0.0, |t| t.unit_g);
        p.take(m.from_channel, m.qty)?;
        p.place_grams(m.to_channel, unit_g * f64::from(m.qty))?;
    }
    Ok(())
}

/// How `heft simulate --shoppers` runs its shoppers.
#[derive(Debug, Clone)]
pub struct ShopperRun {
    /// Shoppers at once; each buys from one cabinet at a time, never one another shopper holds.
    pub shoppers: usize,
    /// Stop after this many visits (scans, refused ones included); `None`: until stopped.
    pub visits: Option<usize>,
    pub heft_url: String,
    pub pay_sim_url: String,
    pub opts: ShopperOptions,
    /// Print each truth as a JSON line.
    pub json: bool,
    /// Seed of shopper `i` is `seed + i`; `None` draws one.
    pub seed: Option<u64>,
}

/// What a run of shoppers came to.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    pub visits: u64,
    /// Visits that got an order.
    pub purchases: u64,
    /// Orders by the last status seen.
    pub by_status: BTreeMap<String, u64>,
    /// Refused scans by code.
    pub refused: BTreeMap<String, u64>,
    /// Sign-ins, platform pages or cabinets that failed.
    pub errors: u64,
    /// Orders still moving when the shopper stopped waiting.
    pub unfinished: u64,
    /// Share of purchases that went to review.
    pub review_rate: f64,
    /// Paid orders whose total is not what was taken, and `no_purchase` for a visit that took
    /// something.
    pub mismatches: u64,
    pub closed_to_settled_ms_p50: Option<f64>,
    pub closed_to_settled_ms_p95: Option<f64>,
    pub closed_to_settled_ms_max: Option<f64>,
    #[serde(skip)]
    settled_ms: Vec<f64>,
}

impl Summary {
    pub fn add(&mut self, t: &Truth) {
        self.visits += 1;
        self.purchases += 1;
        *self.by_status.entry(t.final_status.clone()).or_default() += 1;
        self.unfinished += u64::from(!t.finished);
        self.mismatches += u64::from(t.matches() == Some(false));
        if let Some(ms) = t.timings.closed_to_settled_ms {
            self.settled_ms.push(ms);
        }
        self.update();
    }

    pub fn add_failure(&mut self, e: &ShopperError) {
        match e.refusal() {
            Some(code) => {
                self.visits += 1;
                *self.refused.entry(code.to_string()).or_default() += 1;
            }
            None => self.errors += 1,
        }
    }

    fn update(&mut self) {
        let review = self.by_status.get("review").copied().unwrap_or(0);
        self.review_rate = if self.purchases == 0 { 0.0 } else { review as f64 / self.purchases as f64 };
        let mut sorted = self.settled_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| sorted.get(((sorted.len() as f64 - 1.0) * q).round() as usize).copied();
        self.closed_to_settled_ms_p50 = at(0.5);
        self.closed_to_settled_ms_p95 = at(0.95);
        self.closed_to_settled_ms_max = sorted.last().copied();
    }

    /// One line for people.
    pub fn text(&self) -> String {
        let counts =
            |m: &BTreeMap<String, u64>| m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
        let mut line = format!(
            "shoppers: visits={} purchases={} [{}] refused=[{}] errors={} unfinished={} review_rate={:.3} mismatches={}",
            self.visits,
            self.purchases,
            counts(&self.by_status),
            counts(&self.refused),
            self.errors,
            self.unfinished,
            self.review_rate,
            self.mismatches
        );
        if let (Some(p50), Some(p95), Some(max)) =
            (self.closed_to_settled_ms_p50, self.closed_to_settled_ms_p95, self.closed_to_settled_ms_max)
        {
            let _ = write!(line, " closed→settled ms p50={p50:.0} p95={p95:.0} max={max:.0}");
        }
        line
    }
}

/// Running shoppers (`heft simulate --shoppers`).
pub struct Shoppers {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    summary: Arc<Mutex<Summary>>,
}

impl Shoppers {
    /// Start `run.shoppers` shoppers buying from `cabinets` (those with a configuration from Heft
    /// and stock behind a door).
    pub fn start(cabinets: Vec<CabinetRemote>, run: ShopperRun) -> Result<Shoppers, ShopperError> {
        let client = ShopperClient::new(&run.heft_url, &run.pay_sim_url)?;
        let shared = Arc::new(Shared {
            cabinets,
            in_use: Mutex::new(HashSet::new()),
            visits: AtomicUsize::new(0),
            // Shopper ids of this run: a later run's shoppers have no open orders or debts.
            tag: format!("{:x}", chrono::Utc::now().timestamp_millis()),
            warned_nothing: std::sync::atomic::AtomicBool::new(false),
            run,
        });
        let summary = Arc::new(Mutex::new(Summary::default()));
        let tasks = (0..shared.run.shoppers)
            .map(|i| tokio::spawn(shopper(i, client.clone(), shared.clone(), summary.clone())))
            .collect();
        Ok(Shoppers { tasks, summary })
    }

    /// Wait until every shopper has stopped (the visits are done, or each gave up).
    pub async fn finished(&mut self) {
        for t in &mut self.tasks {
            let _ = t.await;
        }
    }

    pub fn summary(&self) -> Summary {
        self.summary.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stop every shopper (a visit under way is abandoned) and return the summary.
    pub fn stop(self) -> Summary {
        for t in &self.tasks {
            t.abort();
        }
        self.summary()
    }
}

struct Shared {
    cabinets: Vec<CabinetRemote>,
    /// Cabinets a shopper stands at.
    in_use: Mutex<HashSet<usize>>,
    visits: AtomicUsize,
    tag: String,
    warned_nothing: std::sync::atomic::AtomicBool,
    run: ShopperRun,
}

impl Shared {
    /// A cabinet nobody stands at and one of its doors with stock; the cabinet is marked in use.
    fn pick(&self, rng: &mut StdRng) -> Option<(usize, u32)> {
        let mut order: Vec<usize> = (0..self.cabinets.len()).collect();
        order.shuffle(rng);
        let mut in_use = self.in_use.lock().ok()?;
        for i in order {
            if in_use.contains(&i) {
                continue;
            }
            let doors = stocked_doors(&self.cabinets[i]);
            if let Some(&door) = doors.choose(rng) {
                in_use.insert(i);
                return Some((i, door));
            }
        }
        None
    }

    fn release(&self, i: usize) {
        if let Ok(mut in_use) = self.in_use.lock() {
            in_use.remove(&i);
        }
    }
}

/// Doors of the cabinet's configuration with at least one unit behind them.
fn stocked_doors(cabinet: &CabinetRemote) -> Vec<u32> {
    let doors: Vec<u32> =
        cabinet.physical(|p| p.last_config().map(|c| c.doors.iter().map(|d| d.door).collect())).unwrap_or_default();
    doors.into_iter().filter(|&d| shelf(cabinet, d).is_some_and(|l| l.iter().any(|l| l.units > 0))).collect()
}

/// Refusals that stay with the shopper's account: a new shopper takes its place.
pub fn account_bound(code: &str) -> bool {
    matches!(code, "unpaid_debt" | "order_open" | "shopper_blocked" | "channel_not_bound")
}

/// Failures in a row after which a shopper gives up.
const GIVE_UP_AFTER: u32 = 20;

/// One shopper of a run: who it is now and how it has been going.
struct Person {
    i: usize,
    channel: Channel,
    /// Bumped when the account is stuck (debt, an open order): the next sign-in is a new user.
    identity: u32,
    token: Option<Token>,
    rng: StdRng,
}

async fn shopper(i: usize, client: ShopperClient, shared: Arc<Shared>, summary: Arc<Mutex<Summary>>) {
    use rand::SeedableRng;
    let run = &shared.run;
    let mut me = Person {
        i,
        // Half the shoppers pay with WeChat, half with Alipay.
        channel: if i.is_multiple_of(2) { Channel::Wechat } else { Channel::Alipay },
        identity: 0,
        token: None,
        rng: match run.seed {
            Some(s) => StdRng::seed_from_u64(s.wrapping_add(i as u64)),
            None => StdRng::from_entropy(),
        },
    };
    let mut failures = 0u32;
    loop {
        let Some((cab, door)) = shared.pick(&mut me.rng) else {
            if !shared.warned_nothing.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "shoppers: no simulated cabinet has a configuration from Heft and stock; waiting \
                     (set the fleet up in Heft: `heft simulate --setup --ops-user …`)"
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let outcome = visit(&client, &shared, cab, door, &mut me).await;
        shared.release(cab);
        let Some(outcome) = outcome else { return };
        if let Ok(mut s) = summary.lock() {
            match &outcome {
                Ok(truth) => s.add(truth),
                Err(e) => s.add_failure(e),
            }
        }
        match outcome {
            Ok(truth) => {
                failures = 0;
                if run.json {
                    println!("{}", serde_json::to_string(&truth).unwrap_or_default());
                }
            }
            Err(e) => {
                tracing::debug!(shopper = i, error = %e, "visit failed");
                if e.refusal().is_some_and(account_bound) {
                    me.identity += 1;
                    me.token = None;
                }
                failures += 1;
                if failures >= GIVE_UP_AFTER {
                    eprintln!("shopper {i} gives up after {failures} failures in a row; the last: {e}");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200) * failures.min(10)).await;
            }
        }
    }
}

/// One visit, signing in first when needed; `None` when the run's visits are used up.
async fn visit(
    client: &ShopperClient,
    shared: &Shared,
    cab: usize,
    door: u32,
    me: &mut Person,
) -> Option<Result<Truth, ShopperError>> {
    let token = match &me.token {
        Some(t) => t.clone(),
        None => {
            let uid = format!("sim-{}-{}-{}", shared.tag, me.i, me.identity);
            match client.sign_in(me.channel, &uid).await {
                Ok(t) => me.token.insert(t).clone(),
                Err(e) => return Some(Err(e)),
            }
        }
    };
    if shared.run.visits.is_some_and(|limit| shared.visits.fetch_add(1, Ordering::Relaxed) >= limit) {
        return None;
    }
    Some(client.shop(&token, &shared.cabinets[cab], door, &shared.run.opts, &mut me.rng).await)
}

/// The products simulated cabinets are stocked with by [`FleetSetup`]: name, barcode, unit
/// grams, price in fen.
const SIM_PRODUCTS: [(&str, &str, f64, i64); 8] = [
    ("Cola 330 ml", "SIM-0001", 355.0, 350),
    ("Chips 70 g", "SIM-0002", 78.0, 600),
    ("Water 550 ml", "SIM-0003", 570.0, 200),
    ("Chocolate bar", "SIM-0004", 52.0, 550),
    ("Iced tea 500 ml", "SIM-0005", 520.0, 400),
    ("Yogurt 200 g", "SIM-0006", 215.0, 650),
    ("Sandwich", "SIM-0007", 180.0, 1200),
    ("Instant noodles", "SIM-0008", 120.0, 500),
];

/// Grams of the standard weight the simulated operator calibrates with.
const STANDARD_G: f64 = 500.0;
const LANE_CAPACITY: u32 = 12;

/// A product of the simulated catalogue, as Heft stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct SimProduct {
    pub id: i64,
    pub unit_g: f64,
}

/// An operator making simulated cabinets sellable through Heft's ops API (`heft simulate
/// --setup`): the simulated catalogue, then per cabinet two doors of lanes (one product per
/// lane), the configuration delivered, every door calibrated, the lanes stocked. What a person
/// would do at the console and at the cabinet.
pub struct FleetSetup {
    http: reqwest::Client,
    heft_base: String,
    token: String,
}

impl FleetSetup {
    /// Sign in as an operator (role admin or operator).
    pub async fn sign_in(heft_base: &str, username: &str, password: &str) -> Result<FleetSetup, ShopperError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|source| ShopperError::Http { what: "client", source })?;
        let heft_base = heft_base.trim_end_matches('/').to_string();
        let mut setup = FleetSetup { http, heft_base, token: String::new() };
        let what = "ops login";
        let body = json!({"username": username, "password": password});
        let v = setup.call(what, reqwest::Method::POST, "/ops/auth/login", Some(body)).await?;
        setup.token = v["token"].as_str().ok_or(ShopperError::Missing { what, field: "token" })?.to_string();
        Ok(setup)
    }

    /// An ops call that must succeed; `cabinet_busy` (a delivery session still ending) is waited
    /// out, a few seconds at most.
    async fn call(
        &self,
        what: &'static str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ShopperError> {
        let mut tries = 0;
        loop {
            let mut req =
                self.http.request(method.clone(), format!("{}{path}", self.heft_base)).bearer_auth(&self.token);
            if let Some(b) = &body {
                req = req.json(b);
            }
            let res = req.send().await.map_err(|source| ShopperError::Http { what, source })?;
            let status = res.status().as_u16();
            let v: Value = res.json().await.unwrap_or(Value::Null);
            if (200..300).contains(&status) {
                return Ok(v);
            }
            if v["error"] == "cabinet_busy" && tries < 50 {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            return Err(ShopperError::Status { what, status, body: v.to_string() });
        }
    }

    /// Describe the cabinet type `name` as simulated cabinets are: `channels` load cells, kept
    /// like a fridge (they report about 4 °C). Before they log in, so none is flagged for a
    /// channel count its type does not have.
    pub async fn describe_type(&self, name: &str, channels: u32) -> Result<(), ShopperError> {
        let kind =
            json!({"sensor_channels": channels, "temp_min_c": 2.0, "temp_max_c": 10.0, "temp_alert_after_s": 900});
        self.call("cabinet type", reqwest::Method::PUT, &format!("/ops/cabinet-types/{name}"), Some(kind)).await?;
        Ok(())
    }

    /// The simulated products, created where missing (found by barcode).
    pub async fn catalogue(&self) -> Result<Vec<SimProduct>, ShopperError> {
        let what = "products";
        let found = self.call(what, reqwest::Method::GET, "/ops/products?q=SIM-000&limit=100", None).await?;
        let mut out = Vec::new();
        for (name, barcode, unit_g, price_fen) in SIM_PRODUCTS {
            let existing = found["products"].as_array().into_iter().flatten().find(|p| p["barcode"] == barcode);
            let id = match existing {
                Some(p) => p["id"].as_i64(),
                None => {
                    let body = json!({"name": name, "barcode": barcode, "unit_g": unit_g, "tolerance_g": 8.0,
                        "price_fen": price_fen});
                    self.call(what, reqwest::Method::POST, "/ops/products", Some(body)).await?["id"].as_i64()
                }
            };
            let id = id.ok_or(ShopperError::Missing { what, field: "id" })?;
            out.push(SimProduct { id, unit_g });
        }
        Ok(out)
    }

    /// Make one connected cabinet sellable: lanes emptied (while it is not in service), the
    /// layout, calibration, then each door stocked in a restock session, which Heft counts by
    /// weight; the setup fails when the book does not say what was placed.
    pub async fn set_up(
        &self,
        cab: &CabinetRemote,
        catalogue: &[SimProduct],
        rng: &mut StdRng,
    ) -> Result<(), ShopperError> {
        let sn = cab.sn().to_string();
        let cabinet_error =
            |e: &dyn std::fmt::Display| ShopperError::Cabinet { sn: sn.clone(), message: e.to_string() };
        if catalogue.is_empty() {
            return Err(cabinet_error(&"no products to stock"));
        }
        self.wait_logged_in(cab).await?;
        let channels = cab.physical(|p| p.channels());
        // Two doors, half the channels each (one door when there is a single channel).
        let door_of = |ch: u32| if ch < channels.div_ceil(2) { 1 } else { 2 };
        let stock: Vec<(u32, &SimProduct, u32)> =
            (0..channels).map(|ch| (ch, &catalogue[ch as usize % catalogue.len()], rng.gen_range(4..=10))).collect();
        let doors: Vec<u32> = if channels > 1 { vec![1, 2] } else { vec![1] };

        self.with_doors_open(cab, &doors, |p| {
            for &(ch, product, _) in &stock {
                p.stock(ch, product.unit_g, 0)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| cabinet_error(&e))?;
        let layout = json!({
            "address": format!("Simulated cabinet {sn}"),
            // Around People's Square, Shanghai (GCJ-02).
            "lat": 31.2304 + rng.gen_range(-0.05..0.05),
            "lng": 121.4737 + rng.gen_range(-0.05..0.05),
            "doors": doors.iter().map(|&door| json!({"door": door, "lanes": stock.iter()
                .filter(|(ch, _, _)| door_of(*ch) == door)
                .map(|(ch, product, _)| json!({
                    "code": format!("{}{}", if door == 1 { 'A' } else { 'B' }, ch + 1),
                    "name": format!("lane {}", ch + 1),
                    "channel": ch,
                    "capacity": LANE_CAPACITY,
                    "threshold": 2,
                    "product_id": product.id,
                    // Counted in by the restock below.
                    "stock": 0,
                }))
                .collect::<Vec<_>>()}))
                .collect::<Vec<_>>(),
        });
        let path = format!("/ops/cabinets/{sn}/config");
        self.call("configuration", reqwest::Method::PUT, &path, Some(layout)).await?;
        self.wait_delivered(&sn).await?;
        for &door in &doors {
            let base = format!("/ops/cabinets/{sn}/calibration");
            let standard = json!({"standard_g": STANDARD_G});
            self.call("calibration", reqwest::Method::POST, &base, Some(json!({"door": door}))).await?;
            self.call("tare", reqwest::Method::POST, &format!("{base}/tare"), None).await?;
            self.call("span", reqwest::Method::POST, &format!("{base}/span"), Some(standard.clone())).await?;
            self.call("verify", reqwest::Method::POST, &format!("{base}/verify"), Some(standard)).await?;
        }
        // A cabinet at rest reports its weights every few seconds, and a restocker comes long
        // after the calibration; this one is stocked at once. A few frames now give Heft the
        // resting weights it counts the restock from (with one reading, a noisy one leaves a lane
        // uncounted, as it should).
        for _ in 0..5 {
            cab.send_weights_now().await.map_err(|e| cabinet_error(&e.to_string()))?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Stocked as a restocker would: a restock session per door, Heft counting by weight what
        // goes in; then the book must say what was placed.
        let mut counted = Vec::new();
        for &door in &doors {
            let fill = |p: &mut super::cabinet::Physical| {
                for &(ch, product, units) in stock.iter().filter(|(ch, _, _)| door_of(*ch) == door) {
                    p.stock(ch, product.unit_g, units)?;
                }
                Ok(())
            };
            counted.push(self.restock_with(cab, door, fill).await?);
        }
        let book =
            self.call("configuration", reqwest::Method::GET, &format!("/ops/cabinets/{sn}/config"), None).await?;
        for d in book["doors"].as_array().into_iter().flatten() {
            for l in d["lanes"].as_array().into_iter().flatten() {
                let placed = stock.iter().find(|(ch, _, _)| l["channel"] == *ch).map(|s| i64::from(s.2));
                if placed.is_some() && l["stock"].as_i64() != placed {
                    return Err(cabinet_error(&format!(
                        "the restock counted {} on lane {}, {} were placed ({})",
                        l["stock"],
                        l["code"],
                        placed.unwrap_or_default(),
                        counted.join("; ")
                    )));
                }
            }
        }
        Ok(())
    }

    /// A restocker opens `door` in a restock session, `fill`s it, and closes it; Heft counts by
    /// weight what went in. What it recorded.
    pub async fn restock_with(
        &self,
        cab: &CabinetRemote,
        door: u32,
        fill: impl FnOnce(&mut super::cabinet::Physical) -> Result<(), super::cabinet::CabinetError>,
    ) -> Result<String, ShopperError> {
        let sn = cab.sn();
        let cabinet_error = |message: String| ShopperError::Cabinet { sn: sn.to_string(), message };
        let path = format!("/ops/cabinets/{sn}/restock");
        let started = self.call("restock", reqwest::Method::POST, &path, Some(json!({"door": door}))).await?;
        let session =
            started["session"]["id"].as_i64().ok_or(ShopperError::Missing { what: "restock", field: "session.id" })?;
        if !cab.wait_unlocked(door, Duration::from_secs(30)).await {
            return Err(cabinet_error(format!("door {door} was not unlocked for the restock")));
        }
        self.with_doors_open(cab, &[door], fill).await.map_err(cabinet_error)?;
        self.wait_session_ended(sn, session).await
    }

    /// [`FleetSetup::restock_with`]: every lane of `door` filled to its capacity with the product
    /// it holds.
    pub async fn refill(&self, cab: &CabinetRemote, door: u32) -> Result<String, ShopperError> {
        let channels: Vec<u32> = shelf(cab, door).unwrap_or_default().iter().map(|l| l.channel).collect();
        let fill = |p: &mut super::cabinet::Physical| {
            for ch in channels {
                let unit_g = p.truth().get(ch as usize).map_or(0.0, |t| t.unit_g);
                p.stock(ch, unit_g, LANE_CAPACITY)?;
            }
            Ok(())
        };
        self.restock_with(cab, door, fill).await
    }

    /// Until Heft has ended the session (a restock: counted and stored); what it recorded.
    async fn wait_session_ended(&self, sn: &str, session: i64) -> Result<String, ShopperError> {
        let path = format!("/ops/cabinets/{sn}/sessions");
        for _ in 0..300 {
            let v = self.call("sessions", reqwest::Method::GET, &path, None).await?;
            let ended =
                v["recent"].as_array().into_iter().flatten().find(|s| s["id"] == session && !s["ended_at"].is_null());
            if let Some(s) = ended {
                return match s["outcome"].as_str() {
                    Some("done") => Ok(s["detail"].as_str().unwrap_or_default().to_string()),
                    other => Err(ShopperError::Cabinet {
                        sn: sn.to_string(),
                        message: format!("restock session {session} ended {other:?}"),
                    }),
                };
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(ShopperError::Cabinet {
            sn: sn.to_string(),
            message: format!("restock session {session} not ended after 60 s"),
        })
    }

    async fn with_doors_open(
        &self,
        cab: &CabinetRemote,
        doors: &[u32],
        f: impl FnOnce(&mut super::cabinet::Physical) -> Result<(), super::cabinet::CabinetError>,
    ) -> Result<(), String> {
        let mut done = Ok(());
        for &d in doors {
            if let Err(e) = cab.open_door(d).await {
                done = Err(e.to_string());
                break;
            }
        }
        if done.is_ok() {
            done = cab.physical(f).map_err(|e| e.to_string());
        }
        // Whatever happened, the doors are shut again (a door that moved while the connection
        // was down is reported after the next login).
        for &d in doors {
            let closed = cab.close_door(d).await.map_err(|e| e.to_string());
            done = done.and(closed);
        }
        done
    }

    /// Until Heft holds this cabinet's current login (after a re-provisioning the first login
    /// goes unanswered, and Heft still shows the previous run's).
    async fn wait_logged_in(&self, cab: &CabinetRemote) -> Result<(), ShopperError> {
        let path = format!("/ops/cabinets/{}", cab.sn());
        for _ in 0..450 {
            let boot = cab.physical(|p| p.boot());
            if let Ok(v) = self.call("cabinet", reqwest::Method::GET, &path, None).await
                && v["connection"]["logged_in"] == true
                && boot > 0
                && v["connection"]["boot"] == boot
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(ShopperError::Cabinet { sn: cab.sn().to_string(), message: "not logged in to Heft after 90 s".into() })
    }

    async fn wait_delivered(&self, sn: &str) -> Result<(), ShopperError> {
        let path = format!("/ops/cabinets/{sn}/config");
        for _ in 0..300 {
            let c = self.call("configuration", reqwest::Method::GET, &path, None).await?;
            if c["config_version"] == c["config_acked_version"] && c["tags_version"] == c["tags_acked_version"] {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(ShopperError::Cabinet { sn: sn.to_string(), message: "configuration not acknowledged after 60 s".into() })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
    use rand::SeedableRng;

    use super::*;
    use crate::sim::handle::fake_heft::{Commander, FakeHeft};
    use crate::sim::handle::{SimCabinet, SimCabinetOptions};

    fn lanes(units: &[u32]) -> Vec<ShelfLane> {
        units
            .iter()
            .enumerate()
            .map(|(i, &units)| ShelfLane { lane: format!("A{}", i + 1), channel: i as u32, units })
            .collect()
    }

    fn rng(seed: u64) -> StdRng {
        StdRng::seed_from_u64(seed)
    }

    #[test]
    fn a_plan_never_takes_more_than_a_lane_holds() {
        let shelf = lanes(&[0, 1, 2, 5, 1]);
        let opts = PlanOptions { p_nothing: 0.1, p_move: 0.5 };
        let (mut nothing, mut moves) = (0, 0);
        for seed in 0..2000 {
            let p = plan(&mut rng(seed), &shelf, &opts);
            let units: u32 = p.take.iter().map(|t| t.qty).sum();
            if p.take.is_empty() {
                nothing += 1;
                assert!(p.moves.is_empty(), "nothing means nothing: {p:?}");
                continue;
            }
            assert!((1..=3).contains(&units) && (1..=2).contains(&p.take.len()), "{p:?}");
            for l in &shelf {
                let taken: u32 = p.take.iter().filter(|t| t.channel == l.channel).map(|t| t.qty).sum();
                let carried: u32 = p.moves.iter().filter(|m| m.from_channel == l.channel).map(|m| m.qty).sum();
                assert!(taken + carried <= l.units, "lane {} holds {}: {p:?}", l.lane, l.units);
                assert!(p.take.iter().filter(|t| t.channel == l.channel).count() <= 1, "one entry a lane: {p:?}");
            }
            moves += p.moves.len();
        }
        // About 10 % nothing, about half the rest with a move.
        assert!((100..300).contains(&nothing), "{nothing} of 2000 took nothing");
        assert!((600..1200).contains(&moves), "{moves} moves");
    }

    #[test]
    fn a_move_goes_to_another_lane_not_taken_from() {
        let shelf = lanes(&[3, 3, 0, 2]);
        let opts = PlanOptions { p_nothing: 0.0, p_move: 1.0 };
        let mut seen = 0;
        for seed in 0..500 {
            let p = plan(&mut rng(seed), &shelf, &opts);
            let Some(m) = p.moves.first() else { continue };
            seen += 1;
            assert_eq!(p.moves.len(), 1);
            assert_eq!(m.qty, 1);
            assert_ne!(m.from_channel, m.to_channel);
            assert!(!p.take.iter().any(|t| t.channel == m.to_channel), "{p:?}");
            assert_eq!(shelf[m.to_channel as usize].lane, m.to_lane);
        }
        assert!(seen > 400, "a move whenever one fits: {seen} of 500");
        // One lane only: nowhere to put it down.
        let p = plan(&mut rng(1), &lanes(&[4]), &opts);
        assert_eq!((p.take.len(), p.moves.len()), (1, 0));
    }

    #[test]
    fn nothing_to_take_or_nothing_wanted() {
        let always = PlanOptions { p_nothing: 1.0, p_move: 1.0 };
        assert_eq!(plan(&mut rng(1), &lanes(&[5, 5]), &always), Plan::default());
        let never = PlanOptions { p_nothing: 0.0, p_move: 1.0 };
        assert_eq!(plan(&mut rng(1), &lanes(&[0, 0]), &never), Plan::default(), "empty shelf");
        assert_eq!(plan(&mut rng(1), &[], &never), Plan::default());
        // The same seed, the same plan.
        let shelf = lanes(&[4, 4, 4]);
        assert_eq!(plan(&mut rng(9), &shelf, &never), plan(&mut rng(9), &shelf, &never));
    }

    #[test]
    fn the_hands_carry_out_a_plan_whole_or_not_at_all() {
        let mut p = crate::sim::cabinet::Physical::new(&crate::sim::cabinet::PhysicalOptions {
            channels: 3,
            seed: Some(1),
            ..Default::default()
        });
        p.stock(0, 330.0, 3).expect("stock");
        p.stock(1, 78.0, 2).expect("stock");
        let plan = Plan {
            take: vec![Taken { lane: "A1".into(), channel: 0, qty: 2 }],
            moves: vec![Moved { from_lane: "A2".into(), from_channel: 1, to_lane: "A3".into(), to_channel: 2, qty: 1 }],
        };
        carry_out(&mut p, &plan).expect("carried out");
        let t = p.truth();
        assert_eq!((t[0].units, t[1].units), (1, 1));
        assert_eq!(t[2].grams, 78.0, "the moved unit weighs on its new lane what it weighed on the old");
        // Lane 1 now holds 1: taking 1 and moving 1 is too much; nothing changes.
        let greedy = Plan {
            take: vec![
                Taken { lane: "A2".into(), channel: 1, qty: 1 },
                Taken { lane: "A1".into(), channel: 0, qty: 1 },
            ],
            moves: vec![Moved { from_lane: "A2".into(), from_channel: 1, to_lane: "A3".into(), to_channel: 2, qty: 1 }],
        };
        assert!(carry_out(&mut p, &greedy).is_err());
        assert_eq!(p.truth(), t);
    }

    fn truth(status: &str, expected: i64, charged: Option<i64>) -> Truth {
        Truth {
            sn: "S".into(),
            door: 1,
            order_id: 1,
            uid: "u".into(),
            channel: Channel::Wechat,
            taken: Vec::new(),
            moved: Vec::new(),
            expected_fen: expected,
            final_status: status.into(),
            finished: true,
            settled_status: None,
            charged_fen: charged,
            lines: Vec::new(),
            timings: Timings { closed_to_settled_ms: Some(expected as f64), ..Timings::default() },
            closed_at: None,
            settled_at: None,
        }
    }

    #[test]
    fn the_summary_counts_statuses_refusals_and_mismatches() {
        let mut s = Summary::default();
        s.add(&truth("paid", 700, Some(700)));
        s.add(&truth("paid", 700, Some(350)));
        s.add(&truth("no_purchase", 0, None));
        s.add(&truth("no_purchase", 200, None));
        s.add(&truth("review", 300, None));
        s.add_failure(&ShopperError::Refused { status: 409, code: "cabinet_busy".into(), message: String::new() });
        s.add_failure(&ShopperError::Missing { what: "x", field: "y" });
        assert_eq!((s.visits, s.purchases, s.errors, s.mismatches), (6, 5, 1, 2));
        assert_eq!(s.by_status.get("paid"), Some(&2));
        assert_eq!(s.refused.get("cabinet_busy"), Some(&1));
        assert!((s.review_rate - 0.2).abs() < 1e-9);
        assert_eq!(s.closed_to_settled_ms_p50, Some(300.0));
        assert_eq!(s.closed_to_settled_ms_max, Some(700.0));
        assert!(s.text().contains("mismatches=2"), "{}", s.text());
    }

    // ---- A purchase against a stand-in for Heft's shopper API and the payment simulator ----

    /// Lanes of door 1 in the test cabinet: code, channel, unit grams, price.
    const LANES: [(&str, u32, f64, i64); 3] = [("A1", 0, 330.0, 350), ("A2", 1, 78.0, 600), ("A3", 2, 500.0, 200)];

    /// Heft as far as a shopper can tell: orders move on as the door frames arrive, and are
    /// settled from the counts of the door frames (no noise in the test cabinet, so exactly).
    #[derive(Default)]
    struct Mock {
        commander: Option<Commander>,
        /// Answer the scan with `cabinet_busy` this many times first.
        busy: u32,
        refuse: Option<(u16, &'static str)>,
        /// Confirm without opening the door: the order ends cancelled.
        never_open: bool,
        scans: u32,
        next_id: i64,
        /// id → (status, total, lines)
        orders: BTreeMap<i64, (String, Option<i64>, Vec<Value>)>,
        current: Option<i64>,
        before: Option<Vec<i64>>,
        /// channel → (zero, counts per gram)
        cells: Vec<(i64, f64)>,
    }

    type Shared = web::Data<Mutex<Mock>>;

    fn field<'a>(v: &'a Value, k: &str) -> &'a str {
        v[k].as_str().unwrap_or_default()
    }

    async fn wechat_login(body: web::Json<Value>) -> HttpResponse {
        HttpResponse::Ok().json(json!({"code": format!("code-{}", field(&body, "openid"))}))
    }

    async fn alipay_login(body: web::Json<Value>) -> HttpResponse {
        HttpResponse::Ok().json(json!({"auth_code": format!("code-{}", field(&body, "user_id"))}))
    }

    async fn auth(body: web::Json<Value>) -> HttpResponse {
        HttpResponse::Ok().json(json!({"token": format!("tok-{}", field(&body, "code")), "created": true}))
    }

    async fn scan(mock: Shared, req: HttpRequest, body: web::Json<Value>) -> HttpResponse {
        let bearer = req.headers().get("authorization").and_then(|h| h.to_str().ok()).unwrap_or_default();
        assert!(bearer.starts_with("Bearer tok-code-"), "{bearer}");
        assert_eq!(field(&body, "sn"), "SIM-SHOP");
        let mut m = mock.lock().expect("mock");
        m.scans += 1;
        if m.busy > 0 {
            m.busy -= 1;
            return HttpResponse::Conflict().json(json!({"error": "cabinet_busy", "message": "busy"}));
        }
        if let Some((status, code)) = m.refuse {
            let status = actix_web::http::StatusCode::from_u16(status).expect("status");
            return HttpResponse::build(status).json(json!({"error": code, "message": "no"}));
        }
        m.next_id += 1;
        let id = m.next_id;
        m.orders.insert(id, ("created".into(), None, Vec::new()));
        m.current = Some(id);
        let confirm = match field(&body, "channel") {
            "wechat" => json!({"businessType": "wxpayScoreUse", "extraData": {"package": format!("pkg-{id}")}}),
            _ => json!({"orderStr": format!("os-{id}")}),
        };
        HttpResponse::Created().json(json!({"order": {"id": id, "status": "created", "out_order_no": format!("O{id}")},
            "confirm": confirm}))
    }

    async fn confirm(mock: Shared, body: web::Json<Value>) -> HttpResponse {
        let token = [field(&body, "package"), field(&body, "orderStr")].concat();
        assert!(!field(&body, "openid").is_empty() || !field(&body, "user_id").is_empty(), "{body:?}");
        let mut m = mock.lock().expect("mock");
        let Some(id) = m.current.filter(|id| token.ends_with(&format!("-{id}"))) else {
            return HttpResponse::BadRequest().json(json!({"code": "ORDER_NOT_EXIST"}));
        };
        if m.never_open {
            m.orders.insert(id, ("cancelled".into(), None, Vec::new()));
        } else {
            m.orders.insert(id, ("authorized".into(), None, Vec::new()));
            let body = json!({"door": 1, "session_id": id, "unlock_s": 20});
            m.commander.as_ref().expect("commander").command("open", &format!("open-{id}"), body);
        }
        HttpResponse::Ok().json(json!({}))
    }

    async fn order(mock: Shared, path: web::Path<i64>) -> HttpResponse {
        let m = mock.lock().expect("mock");
        match m.orders.get(&path.into_inner()) {
            Some((status, total, lines)) => {
                HttpResponse::Ok().json(json!({"status": status, "total_fen": total, "lines": lines}))
            }
            None => HttpResponse::NotFound().json(json!({"error": "not_found"})),
        }
    }

    /// The order the door frame settles, if it is a close: (id, final status, total, lines).
    type Settled = (i64, &'static str, i64, Vec<Value>);

    /// What the mock makes of a door frame.
    fn on_door(mock: &Mutex<Mock>, m: &Value) -> Option<Settled> {
        let mut mock = mock.lock().expect("mock");
        let id = mock.current?;
        let counts: Vec<i64> = serde_json::from_value(m["counts"].clone()).expect("counts");
        if m["open"] == true {
            mock.before = Some(counts);
            mock.orders.insert(id, ("door_open".into(), None, Vec::new()));
            return None;
        }
        let before = mock.before.take().expect("opened first");
        let mut lines = Vec::new();
        let mut total = 0;
        for (lane, ch, unit_g, price) in LANES {
            let (_, gain) = mock.cells[ch as usize];
            let lost_g = (before[ch as usize] - counts[ch as usize]) as f64 / gain;
            let qty = (lost_g / unit_g).round() as i64;
            if qty > 0 {
                total += qty * price;
                lines.push(json!({"lane": lane, "qty": qty, "amount_fen": qty * price, "product_id": 1,
                    "product_name": lane, "unit_fen": price}));
            }
        }
        mock.orders.insert(id, ("settling".into(), None, Vec::new()));
        mock.current = None;
        Some((id, if total == 0 { "no_purchase" } else { "paid" }, total, lines))
    }

    struct Rig {
        heft: FakeHeft,
        cab: SimCabinet,
        mock: Shared,
        client: ShopperClient,
        base: String,
        _server: actix_web::dev::ServerHandle,
    }

    async fn rig(mock: Mock) -> Rig {
        let mut heft = FakeHeft::start("SIM-SHOP").await;
        let opts =
            SimCabinetOptions { channels: 4, noise_g: 0.0, creep_g_per_h: 0.0, seed: Some(5), ..Default::default() };
        let cab = SimCabinet::start(heft.creds.clone(), &heft.broker, opts).await.expect("logs in");
        heft.skip_to_login(Duration::from_secs(10)).await.expect("login");
        let lanes: Vec<Value> = LANES.iter().map(|(code, ch, _, _)| json!({"code": code, "channel": ch})).collect();
        heft.command("config", "cfg", json!({"version": 1, "doors": [{"door": 1, "lanes": lanes}]}));
        let tags: Vec<Value> =
            LANES.iter().map(|(code, _, _, price)| json!({"lane": code, "name": code, "price_fen": price})).collect();
        heft.command("price_tags", "tags", json!({"version": 1, "tags": tags}));
        for _ in 0..2 {
            heft.next_of("ack", Duration::from_secs(10)).await.expect("ack");
        }
        cab.stock(0, 330.0, 8).expect("stock");
        cab.stock(1, 78.0, 6).expect("stock");
        cab.stock(2, 500.0, 0).expect("stock");
        let cells =
            cab.physical(|p| (0..4).map(|ch| p.cell(ch).map(|c| (c.zero(), c.gain())).expect("cell")).collect());
        let mock = web::Data::new(Mutex::new(Mock { commander: Some(heft.commands.clone()), cells, ..mock }));
        let data = mock.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/sim/wechat/login", web::post().to(wechat_login))
                .route("/sim/alipay/login", web::post().to(alipay_login))
                .route("/sim/wechat/confirm", web::post().to(confirm))
                .route("/sim/alipay/confirm", web::post().to(confirm))
                .route("/api/v1/auth/{channel}", web::post().to(auth))
                .route("/api/v1/orders", web::post().to(scan))
                .route("/api/v1/orders/{id}", web::get().to(order))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .expect("bind");
        let base = format!("http://{}", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        let client = ShopperClient::new(&base, &base).expect("client");
        Rig { heft, cab, mock, client, base, _server: handle }
    }

    /// Feed the cabinet's door frames to the mock, as Heft's actor would get them.
    fn follow_doors(mut heft: FakeHeft, mock: Shared) -> tokio::task::JoinHandle<()> {
        actix_rt::spawn(async move {
            while let Some((kind, m)) = heft.next(Duration::from_secs(60)).await {
                let Some((id, status, total, lines)) = (kind == "door").then(|| on_door(&mock, &m)).flatten() else {
                    continue;
                };
                // Settled a moment later, as Heft waits for stable lanes; paid a moment after.
                tokio::time::sleep(Duration::from_millis(150)).await;
                let paying = if status == "paid" { "paying" } else { status };
                mock.lock().expect("mock").orders.insert(id, (paying.into(), Some(total), lines.clone()));
                tokio::time::sleep(Duration::from_millis(100)).await;
                mock.lock().expect("mock").orders.insert(id, (status.into(), Some(total), lines));
            }
        })
    }

    fn fast() -> ShopperOptions {
        ShopperOptions {
            open_period: Duration::from_millis(100),
            busy_pause: (Duration::from_millis(10), Duration::from_millis(20)),
            unlock_timeout: Duration::from_secs(5),
            order_timeout: Duration::from_secs(10),
            ..ShopperOptions::default()
        }
    }

    #[actix_rt::test]
    async fn a_shopper_buys_and_the_truth_matches_the_charge() {
        let Rig { heft, cab, mock, client, _server, .. } = rig(Mock { busy: 1, ..Mock::default() }).await;
        let doors = follow_doors(heft, mock.clone());
        let token = client.sign_in(Channel::Wechat, "o-shopper-1").await.expect("signed in");
        assert_eq!((token.token.as_str(), token.uid.as_str()), ("tok-code-o-shopper-1", "o-shopper-1"));
        let plan = Plan {
            take: vec![
                Taken { lane: "A1".into(), channel: 0, qty: 2 },
                Taken { lane: "A2".into(), channel: 1, qty: 1 },
            ],
            moves: Vec::new(),
        };
        let truth = client.purchase(&token, &cab, 1, &plan, &fast(), &mut rng(1)).await.expect("bought");
        assert_eq!(mock.lock().expect("mock").scans, 2, "cabinet_busy was retried");
        assert_eq!((truth.final_status.as_str(), truth.finished), ("paid", true), "{truth:?}");
        assert_eq!((truth.expected_fen, truth.charged_fen), (2 * 350 + 600, Some(1300)));
        assert_eq!(truth.matches(), Some(true));
        assert_eq!(truth.settled_status.as_deref(), Some("paying"));
        assert_eq!(truth.lines.iter().map(|l| (l.lane.as_str(), l.qty)).collect::<Vec<_>>(), [("A1", 2), ("A2", 1)]);
        let t = &truth.timings;
        assert!(t.scan_to_unlocked_ms.is_some() && t.closed_to_final_ms >= t.closed_to_settled_ms, "{t:?}");
        assert!(t.closed_to_settled_ms.is_some_and(|ms| ms >= 100.0), "{t:?}");
        assert_eq!((cab.truth()[0].units, cab.truth()[1].units), (6, 5));
        assert!(!cab.is_unlocked(1) && !cab.physical(|p| p.is_open(1)), "closed and locked behind the shopper");
        let json = serde_json::to_value(&truth).expect("json");
        assert_eq!(json["channel"], "wechat");
        assert_eq!(json["taken"][0], json!({"lane": "A1", "channel": 0, "qty": 2}));

        // The same shopper by the drawn plan: whatever it takes, Heft's charge agrees.
        let again = client.shop(&token, &cab, 1, &fast(), &mut rng(3)).await.expect("bought");
        assert_eq!(again.matches(), Some(true), "{again:?}");
        doors.abort();
        cab.stop().await;
    }

    #[actix_rt::test]
    async fn a_door_that_never_unlocks_leaves_the_cabinet_alone() {
        let Rig { heft, cab, client, _server, .. } = rig(Mock { never_open: true, ..Mock::default() }).await;
        drop(heft);
        let token = client.sign_in(Channel::Alipay, "2088-shopper").await.expect("signed in");
        let opts = ShopperOptions { unlock_timeout: Duration::from_millis(300), ..fast() };
        let plan = Plan { take: vec![Taken { lane: "A1".into(), channel: 0, qty: 1 }], moves: Vec::new() };
        let truth = client.purchase(&token, &cab, 1, &plan, &opts, &mut rng(1)).await.expect("visit");
        assert_eq!((truth.final_status.as_str(), truth.finished, truth.expected_fen), ("cancelled", true, 0));
        assert!(truth.taken.is_empty() && truth.timings.scan_to_unlocked_ms.is_none(), "{truth:?}");
        assert_eq!(cab.truth()[0].units, 8, "nothing taken");
        assert_eq!(truth.matches(), None);
        cab.stop().await;
    }

    #[actix_rt::test]
    async fn a_refused_scan_is_an_error_with_its_code() {
        let Rig { cab, client, _server, mock, .. } =
            rig(Mock { refuse: Some((402, "unpaid_debt")), ..Mock::default() }).await;
        let token = client.sign_in(Channel::Wechat, "o-debtor").await.expect("signed in");
        let err = client.shop(&token, &cab, 1, &fast(), &mut rng(1)).await.expect_err("refused");
        assert_eq!(err.refusal(), Some("unpaid_debt"), "{err}");
        assert!(account_bound("unpaid_debt"));
        // cabinet_busy for longer than the retries: refused too.
        {
            let mut m = mock.lock().expect("mock");
            m.refuse = None;
            m.busy = 100;
        }
        let opts = ShopperOptions { busy_retries: 2, ..fast() };
        let err = client.shop(&token, &cab, 1, &opts, &mut rng(1)).await.expect_err("busy");
        assert_eq!(err.refusal(), Some("cabinet_busy"));
        assert!(matches!(client.shop(&token, &cab, 7, &opts, &mut rng(1)).await, Err(ShopperError::NoSuchDoor { .. })));
        cab.stop().await;
    }

    #[actix_rt::test]
    async fn shoppers_run_their_visits_and_sum_them_up() {
        let Rig { heft, cab, mock, base, _server, .. } = rig(Mock::default()).await;
        let doors = follow_doors(heft, mock.clone());
        let run = ShopperRun {
            // Two shoppers, one cabinet: they take turns.
            shoppers: 2,
            visits: Some(4),
            heft_url: base.clone(),
            pay_sim_url: base,
            opts: ShopperOptions { plan: PlanOptions { p_nothing: 0.3, p_move: 0.0 }, ..fast() },
            json: false,
            seed: Some(4),
        };
        let mut shoppers = Shoppers::start(vec![cab.remote().clone()], run).expect("shoppers");
        tokio::time::timeout(Duration::from_secs(60), shoppers.finished()).await.expect("done in time");
        let s = shoppers.stop();
        assert_eq!((s.visits, s.purchases, s.errors, s.unfinished, s.mismatches), (4, 4, 0, 0, 0), "{}", s.text());
        let ended: u64 = ["paid", "no_purchase"].iter().filter_map(|k| s.by_status.get(*k)).sum();
        assert_eq!(ended, 4, "{}", s.text());
        assert_eq!(mock.lock().expect("mock").scans, 4);
        doors.abort();
        cab.stop().await;
    }
}
