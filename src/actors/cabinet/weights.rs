//! The weight stream of one cabinet: raw counts → grams with each lane's calibration, a window
//! of recent readings per lane, the weight log, closed-door drift, doors, and temperature.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::CabinetActor;
use super::lanes::{LaneState, LaneWeight, Setup};
use crate::db;
use crate::db::lane_health::LaneHealth;
use crate::db::weight_log::NewWeightRow;
use crate::device::messages::{DoorUp, WeightUp};
use crate::domain::alert::{self, AlertCode, AlertSpec, LaneDrift, LaneNoise};
use crate::domain::baseline::{self, LaneProduct, Tracked};
use crate::domain::calendar::business_day;
use crate::domain::count;
use crate::domain::live::{Change, LaneGrams};
use crate::domain::rest::{self, Rest, Unrest};
use crate::domain::temperature::TempEvent;
use crate::domain::units::Grams;
use crate::domain::weight::ReadingKind;
use crate::flows;

fn round1(Grams(g): Grams) -> Grams {
    Grams((g * 10.0).round() / 10.0)
}

impl CabinetActor {
    /// Rebuild lane states from a fresh setup, keeping each lane's window while its channel and
    /// calibration stay the same.
    pub(super) fn apply_setup(&mut self, setup: Setup) {
        let (window, noise) = (self.svc.config.weights.window, self.svc.config.weights.noise_readings);
        let mut old: HashMap<String, LaneState> = self.lanes.drain(..).map(|l| (l.setup.code.clone(), l)).collect();
        self.lanes = setup
            .lanes
            .iter()
            .map(|s| match old.remove(&s.code) {
                Some(prev) if prev.setup.channel == s.channel && prev.setup.cal == s.cal => {
                    LaneState { setup: s.clone(), ..prev }
                }
                _ => LaneState::new(s.clone(), window, noise),
            })
            .collect();
        if let Some(rule) = setup.temp_rule {
            self.temp_rule = Some(rule);
        }
        self.setup = setup;
    }

    /// Someone may be at the lanes: the baselines start afresh once the doors are closed and the
    /// cabinet is free, and the noise is judged on readings taken from then on.
    pub(super) fn reset_baselines(&mut self) {
        for l in &mut self.lanes {
            l.baseline = None;
            l.noise.break_run();
        }
    }

    /// The noise σ lane `l` is judged with: its closed-door stream's, or the configured default.
    pub(super) fn noise_of(&self, l: &LaneState) -> f64 {
        l.noise.sigma().map_or(self.svc.config.weights.default_noise_g, |g| g.0)
    }

    /// How precisely lane `l`'s rest must be known for its counts to be told apart.
    pub(super) fn need_sem(&self, l: &LaneState) -> f64 {
        let w = &self.svc.config.weights;
        count::needed_sem(l.setup.unit_g, self.tolerance(l), &w.count_rule(), w.rest_sem_max_g)
    }

    /// Lane `l` at rest, known as precisely as its counts need.
    pub(super) fn rest_of(&self, l: &LaneState) -> Result<Rest, Unrest> {
        self.rest_within(l, self.need_sem(l))
    }

    /// Lane `l` at rest, its mean known to within `need_sem_g`.
    pub(super) fn rest_within(&self, l: &LaneState, need_sem_g: f64) -> Result<Rest, Unrest> {
        let readings: Vec<f64> = l.window.recent().iter().map(|g| g.0).collect();
        rest::at_rest(&readings, Some(self.noise_of(l)), need_sem_g, &self.svc.config.weights.rest_rule())
    }

    fn reading_kind(&self) -> ReadingKind {
        if !self.doors.open.is_empty() {
            ReadingKind::Open
        } else if self.doors.after_close_until.is_some_and(|t| Instant::now() < t) {
            ReadingKind::AfterClose
        } else {
            ReadingKind::Closed
        }
    }

    /// Grams per calibrated lane for a reading; lanes whose channel is missing are left out.
    fn grams_of(&mut self, counts: &[i64], push: bool) -> Vec<(String, Grams)> {
        let mut out = Vec::with_capacity(self.lanes.len());
        for l in &mut self.lanes {
            let Some(&c) = counts.get(l.setup.channel) else { continue };
            if push {
                l.latest_counts = Some(c);
            }
            let Some(cal) = l.setup.cal else { continue };
            let g = cal.grams(c);
            if push {
                l.window.push(g);
            }
            out.push((l.setup.code.clone(), round1(g)));
        }
        out
    }

    /// A reading with more or fewer channels than the cabinet type has: the extra channels are
    /// ignored and lanes on missing ones go unweighed, so maintenance hears of it once a login.
    fn check_channels(&mut self, counts: &[i64], ctx: &mut Context<Self>) {
        let expected = self.setup.channels as usize;
        if expected == 0 || counts.len() == expected || self.channels_alerted {
            return;
        }
        self.channels_alerted = true;
        let unweighed: Vec<String> =
            self.lanes.iter().filter(|l| l.setup.channel >= counts.len()).map(|l| l.setup.code.clone()).collect();
        tracing::warn!(sn = %self.sn, sent = counts.len(), expected, "reading with the wrong number of channels");
        self.raise(alert::channel_count(self.sn.as_str(), counts.len(), expected, &unweighed), ctx);
    }

    pub(super) fn on_weight(&mut self, w: WeightUp, ctx: &mut Context<Self>) {
        self.check_channels(&w.counts, ctx);
        let kind = self.reading_kind();
        let grams = self.grams_of(&w.counts, true);
        self.log_reading(kind, &w.counts, &grams, w.h.ts);
        if kind != ReadingKind::Closed {
            self.live_weights();
        }
        self.door_reading(kind, ctx);
        if kind != ReadingKind::Open && self.held.is_none() {
            // At rest with nothing holding the cabinet: what the readings vary by is the noise.
            for (code, g) in &grams {
                if let Some(l) = self.lanes.iter_mut().find(|l| &l.setup.code == code) {
                    l.noise.push(*g);
                }
            }
        }
        if kind == ReadingKind::Closed {
            if self.held.is_none() {
                self.track_baselines(ctx);
            }
            let facts = vec![
                (
                    "weights",
                    serde_json::to_string(&grams.iter().cloned().collect::<HashMap<_, _>>()).unwrap_or_default(),
                ),
                ("last_weight_ms", super::now_ms().to_string()),
            ];
            let (cache, sn) = (self.svc.cache.clone(), self.sn.to_string());
            ctx.spawn(
                async move {
                    let fields: Vec<(&str, String)> = facts;
                    if let Err(e) = cache.cabinet_set(&sn, &fields).await {
                        tracing::debug!(%sn, error = %e, "weights not cached");
                    }
                }
                .into_actor(self),
            );
        }
    }

    pub(super) fn on_door(&mut self, d: DoorUp, ctx: &mut Context<Self>) {
        if !self.lanes.is_empty() && !self.lanes.iter().any(|l| l.setup.door == d.door) {
            // Not a door of this configuration: a state nothing would ever clear.
            tracing::warn!(sn = %self.sn, door = d.door, "door event for a door that is not configured");
            return;
        }
        if d.open {
            self.doors.open.insert(d.door);
            // Someone is at the lanes: drift is judged afresh once the door is closed again.
            self.reset_baselines();
        } else {
            self.doors.open.remove(&d.door);
            if self.doors.open.is_empty() {
                let p = &self.svc.config.protocol;
                self.doors.after_close_until = Some(Instant::now() + Duration::from_secs(p.after_close_s));
                // Stability after a close must be judged on readings taken after it.
                for l in &mut self.lanes {
                    l.window.clear();
                }
            }
        }
        if let Some(counts) = &d.counts {
            self.check_channels(counts, ctx);
            let grams = self.grams_of(counts, false);
            self.log_reading(ReadingKind::Snapshot, counts, &grams, d.h.ts);
        }
        tracing::info!(sn = %self.sn, door = d.door, open = d.open, "door");
        self.svc.live.publish(Change::Door {
            sn: self.sn.to_string(),
            door: d.door,
            opened: d.open,
            open: self.doors.open.iter().copied().collect(),
            at_ms: super::now_ms(),
        });
        self.door_event(&d, ctx);
    }

    /// Into the weight log (batched; see `actors::weight_log`), with the session it belongs to.
    fn log_reading(&self, kind: ReadingKind, counts: &[i64], grams: &[(String, Grams)], device_ts: Option<i64>) {
        let grams = (!grams.is_empty())
            .then(|| serde_json::to_string(&grams.iter().cloned().collect::<BTreeMap<_, _>>()).unwrap_or_default());
        self.svc.weight_log.record(NewWeightRow {
            sn: self.sn.to_string(),
            session_id: self.held.as_ref().map(|h| h.id()),
            kind,
            recorded_at: db::now(),
            device_ts,
            counts: serde_json::to_string(counts).unwrap_or_default(),
            grams,
        });
    }

    /// Closed door, no session: each lane at rest follows slow drift in its baseline; a move too
    /// fast or too large for drift (whole units taken or added behind a locked door, or a jump),
    /// and drift accumulated far, raise `lane_drift`; a lane too noisy to count its product
    /// raises `lane_unreliable`, once per actor.
    fn track_baselines(&mut self, ctx: &mut Context<Self>) {
        let w = &self.svc.config.weights;
        let (rule, count_rule, now) = (w.drift_rule(), w.count_rule(), super::now_ms());
        let (mut drifted, mut unreliable) = (Vec::new(), Vec::new());
        for i in 0..self.lanes.len() {
            let l = &self.lanes[i];
            if let Some(u) = self.unreliable(l) {
                unreliable.push(u);
            }
            let Ok(rest) = self.rest_of(l) else { continue };
            let tolerance = self.tolerance(l);
            let product = l.setup.unit_g.map(|unit_g| LaneProduct { unit_g, tolerance_g: tolerance });
            let (b, t) = baseline::track(l.baseline, &rest, now, product, tolerance, &rule, &count_rule);
            let code = l.setup.code.clone();
            self.lanes[i].baseline = Some(b);
            let d = |from_g: Grams, delta_g: Grams, units| LaneDrift {
                lane: code.clone(),
                from_g: round1(from_g),
                to_g: round1(rest.mean_g),
                delta_g: round1(delta_g),
                units,
            };
            let health = &mut self.lanes[i].health;
            match t {
                Tracked::Moved { from_g, delta_g, units, .. } => {
                    health.moves += 1;
                    drifted.push(d(from_g, delta_g, units));
                }
                Tracked::DriftedFar { by_g, total_g } => {
                    health.drift_g += by_g.0;
                    drifted.push(d(rest.mean_g - total_g, total_g, None));
                }
                Tracked::Followed { by_g } => health.drift_g += by_g.0,
                Tracked::Started | Tracked::Kept => {}
            }
        }
        self.write_health(ctx);
        for u in &unreliable {
            if let Some(l) = self.lanes.iter_mut().find(|l| l.setup.code == u.lane) {
                l.unreliable_told = true;
            }
        }
        if !unreliable.is_empty() {
            self.raise(alert::lane_unreliable(self.sn.as_str(), &unreliable), ctx);
        }
        if drifted.is_empty() {
            return;
        }
        let spec = alert::lane_drift(self.sn.as_str(), &drifted);
        let lanes: Vec<&str> = drifted.iter().map(|d| d.lane.as_str()).collect();
        tracing::warn!(sn = %self.sn, lanes = %lanes.join(", "), "closed-door drift");
        self.raise(spec, ctx);
    }

    /// Every `weights.health_every_s`, add what each lane's cell did to its day in `lane_health`.
    fn write_health(&mut self, ctx: &mut Context<Self>) {
        let every = Duration::from_secs(self.svc.config.weights.health_every_s);
        if self.health_written_at.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.health_written_at = Some(Instant::now());
        let (now, day) = (db::now(), business_day(chrono::Utc::now()).to_string());
        let rows: Vec<LaneHealth> = self
            .lanes
            .iter_mut()
            .filter(|l| l.setup.cal.is_some())
            .map(|l| {
                let h = std::mem::take(&mut l.health);
                LaneHealth {
                    sn: self.sn.to_string(),
                    lane: l.setup.code.clone(),
                    day: day.clone(),
                    noise_g: l.noise.sigma().map(|g| g.0),
                    drift_g: h.drift_g,
                    moves: h.moves,
                    baseline_g: l.baseline.map(|b| b.g.0),
                    updated_at: now,
                }
            })
            .collect();
        let (db, sn) = (self.db.clone(), self.sn.to_string());
        ctx.spawn(
            async move {
                if let Err(e) = flows::cabinet::record_lane_health(&db, rows).await {
                    tracing::warn!(%sn, error = %e, "lane health not written; its drift is lost for the day");
                }
            }
            .into_actor(self),
        );
    }

    /// Lane `l`'s noise, once known, is too high for its counts to be told apart within the
    /// readings a settlement can wait for (`orders.settle_max_ms` at the after-close cadence).
    fn unreliable(&self, l: &LaneState) -> Option<LaneNoise> {
        let (sigma, unit_g) = (l.noise.sigma()?, l.setup.unit_g?);
        if l.unreliable_told {
            return None;
        }
        let p = &self.svc.config.protocol;
        let readings = (self.svc.config.orders.settle_max_ms / p.after_close_weight_ms.max(1)).max(1);
        let readings_needed = count::readings_short(sigma.0, self.need_sem(l), readings)?;
        Some(LaneNoise { lane: l.setup.code.clone(), noise_g: round1(sigma), unit_g, readings_needed })
    }

    /// Temperature against the cabinet type's range: one alert per excursion, cleared once.
    pub(super) fn check_temperature(&mut self, temp_c: f64, ctx: &mut Context<Self>) {
        let Some(rule) = self.temp_rule else { return };
        match self.temp_watch.observe(&rule, temp_c, super::now_ms()) {
            Some(TempEvent::Raise { temp_c, since_ms }) => {
                let spec =
                    alert::temperature(self.sn.as_str(), temp_c, (rule.min_c, rule.max_c), since_ms, super::now_ms());
                tracing::warn!(sn = %self.sn, temp_c, "temperature out of range");
                self.raise(spec, ctx);
            }
            Some(TempEvent::Clear { temp_c }) => {
                tracing::info!(sn = %self.sn, temp_c, "temperature back in range");
                let (db, sn, live) = (self.db.clone(), self.sn.to_string(), self.svc.live.clone());
                ctx.spawn(
                    async move {
                        match flows::alerts::resolve(&db, AlertCode::TemperatureOutOfRange, Some(sn.clone())).await {
                            Ok(()) => live.publish(Change::Cabinet { sn }),
                            Err(e) => tracing::error!(%sn, error = %e, "temperature alert not resolved"),
                        }
                    }
                    .into_actor(self),
                );
            }
            None => {}
        }
    }

    /// Raise an alert about this cabinet; one that cannot be stored is logged with it.
    pub(super) fn raise(&self, spec: AlertSpec, ctx: &mut Context<Self>) {
        self.raise_counted(spec, 1, ctx);
    }

    /// [`Self::raise`], counting `occurrences` at once.
    pub(super) fn raise_counted(&self, spec: AlertSpec, occurrences: i64, ctx: &mut Context<Self>) {
        let (db, sn, live) = (self.db.clone(), self.sn.to_string(), self.svc.live.clone());
        ctx.spawn(
            async move {
                let (code, message) = (spec.code, spec.message.clone());
                match flows::alerts::raise(&db, spec, occurrences).await {
                    Ok(()) => live.publish(Change::Cabinet { sn }),
                    Err(e) => tracing::error!(%sn, %code, %message, error = %e, "alert not stored"),
                }
            }
            .into_actor(self),
        );
    }

    /// The lanes' grams for the live view, at most once per `live.weights_interval_ms` (the
    /// hub holds back faster ones anyway; this keeps them off the bus).
    fn live_weights(&mut self) {
        let every = Duration::from_millis(self.svc.config.live.weights_interval_ms);
        if self.live_weights_at.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.live_weights_at = Some(Instant::now());
        let lanes = self
            .lane_weights()
            .into_iter()
            .map(|l| LaneGrams { code: l.code, grams: l.grams, stable_g: l.stable_g, noise_g: l.noise_g })
            .collect();
        self.svc.live.publish(Change::Weights { sn: self.sn.to_string(), at_ms: super::now_ms(), lanes });
    }

    /// Per lane: latest and stable grams.
    pub(super) fn lane_weights(&self) -> Vec<LaneWeight> {
        self.lanes
            .iter()
            .map(|l| (l, self.rest_of(l).ok()))
            .map(|(l, rest)| LaneWeight {
                code: l.setup.code.clone(),
                door: l.setup.door,
                channel: u32::try_from(l.setup.channel).unwrap_or(u32::MAX),
                calibrated: l.setup.cal.is_some(),
                counts: l.latest_counts,
                grams: l.window.latest().map(round1),
                stable_g: rest.map(|r| round1(r.mean_g)),
                stable_sem_g: rest.map(|r| Grams((r.sem_g.0 * 100.0).round() / 100.0)),
                noise_g: l.noise.sigma().map(|g| Grams((g.0 * 100.0).round() / 100.0)),
                product_id: l.setup.product_id,
                unit_g: l.setup.unit_g,
                stock: l.setup.stock,
            })
            .collect()
    }
}
