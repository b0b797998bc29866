//! What a cabinet's actor knows of its setup and its lanes: the configuration facts loaded from
//! the database, each lane's recent weights, and the doors. Data only; `weights.rs` works them.

use std::collections::BTreeSet;
use std::time::Instant;

use serde::Serialize;

use crate::domain::baseline::Baseline;
use crate::domain::cabinet::CabinetStatus;
use crate::domain::rest::NoiseEstimate;
use crate::domain::temperature::TempRule;
use crate::domain::units::{Fen, Grams};
use crate::domain::weight::{LaneCalibration, LaneWindow};

/// Configuration facts the actor works from, loaded from the database.
#[derive(Debug, Clone)]
pub struct Setup {
    pub status: CabinetStatus,
    pub versions: Versions,
    pub lanes: Vec<LaneSetup>,
    pub temp_rule: Option<TempRule>,
    /// GCJ-02 (lat, lng), when known.
    pub position: Option<(f64, f64)>,
    /// Load-cell channels of the cabinet's type: the length of every `counts` (0: not loaded).
    pub channels: u32,
}

impl Default for Setup {
    /// A cabinet with nothing set up yet.
    fn default() -> Setup {
        Setup {
            status: CabinetStatus::Initializing,
            versions: Versions::default(),
            lanes: Vec::new(),
            temp_rule: None,
            channels: 0,
            position: None,
        }
    }
}

/// The configuration and label versions saved, and those the cabinet acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Versions {
    pub config: i64,
    pub config_acked: i64,
    pub tags: i64,
    pub tags_acked: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LaneSetup {
    pub code: String,
    pub door: u32,
    pub channel: usize,
    pub cal: Option<LaneCalibration>,
    pub product_id: Option<i64>,
    pub unit_g: Option<Grams>,
    pub tolerance_g: Option<Grams>,
    pub price_fen: Option<Fen>,
    pub product_name: Option<String>,
    pub stock: i32,
    /// The cell's noise as last known (its calibration, its history), grams.
    pub noise_g: Option<f64>,
}

/// One lane as the actor weighs it.
pub struct LaneState {
    pub setup: LaneSetup,
    pub window: LaneWindow,
    pub latest_counts: Option<i64>,
    /// The tracked closed-door weight with no session since: drift is followed from it.
    pub baseline: Option<Baseline>,
    /// The lane's noise, from its readings at rest with the doors closed.
    pub noise: NoiseEstimate,
    /// Whether this actor already said the lane's noise is too high to count its product.
    pub unreliable_told: bool,
    /// Drift followed and moves seen since the lane's health was last written.
    pub health: HealthSince,
}

/// What a lane's cell did since its `lane_health` row was last added to.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HealthSince {
    pub drift_g: f64,
    pub moves: i32,
}

impl LaneState {
    pub fn new(setup: LaneSetup, window: usize, noise_readings: usize) -> LaneState {
        LaneState {
            noise: NoiseEstimate::new(noise_readings).with_prior(setup.noise_g),
            setup,
            window: LaneWindow::new(window),
            latest_counts: None,
            baseline: None,
            unreliable_told: false,
            health: HealthSince::default(),
        }
    }
}

/// A lane's weights as operators see them.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct LaneWeight {
    pub code: String,
    pub door: u32,
    pub channel: u32,
    pub calibrated: bool,
    pub counts: Option<i64>,
    /// Latest reading, grams (tray excluded: the tare took it out).
    pub grams: Option<Grams>,
    /// The lane's weight at rest (outliers left out, no trend), when it is at rest.
    pub stable_g: Option<Grams>,
    /// Standard uncertainty of `stable_g`.
    pub stable_sem_g: Option<Grams>,
    /// The lane's noise σ per reading, once its closed-door stream has shown it.
    pub noise_g: Option<Grams>,
    pub product_id: Option<i64>,
    pub unit_g: Option<Grams>,
    pub stock: i32,
}

/// The doors' state.
#[derive(Debug, Default)]
pub struct Doors {
    pub open: BTreeSet<u32>,
    pub after_close_until: Option<Instant>,
}
