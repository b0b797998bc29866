//! What a cabinet's actor holds: the one session that may hold the cabinet (a delivery, a
//! calibration, or a session at an open door) and the commands it is waiting on. Data only; the
//! behaviour is in the files beside this one.

use std::collections::BTreeMap;
use std::time::Instant;

use actix::SpawnHandle;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::db::DbError;
use crate::db::models::Session;
use crate::device::messages::CalibrationStep;
use crate::device::topic::DownKind;
use crate::domain::cabinet::CabinetStatus;
use crate::domain::calibration::CalibrationError;
use crate::domain::command::CommandStatus;
use crate::domain::door::Course;
use crate::domain::session::SessionKind;
use crate::domain::units::Grams;
use crate::domain::validation::FieldError;

/// A session as operators see it (also the detail of a 409).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct SessionInfo {
    pub id: i64,
    pub kind: SessionKind,
    pub door: Option<u32>,
    pub started_by: String,
    pub since: DateTime<Utc>,
}

impl From<&Session> for SessionInfo {
    fn from(s: &Session) -> Self {
        SessionInfo {
            id: s.id,
            kind: s.kind,
            door: s.door.and_then(|d| u32::try_from(d).ok()),
            started_by: s.started_by.clone(),
            since: s.started_at.and_utc(),
        }
    }
}

/// Why a session could not be started, stepped or ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the cabinet is in a {} session since {} (started by {})", .0.kind, .0.since.to_rfc3339(), .0.started_by)]
    Busy(SessionInfo),
    #[error("a session is being opened on the cabinet")]
    Opening,
    #[error("cabinet not found")]
    NotFound,
    /// The actor is still reading the cabinet's state: ask again in a moment.
    #[error("the cabinet's state is loading")]
    Loading,
    /// The actor stopped before it could answer.
    #[error("the cabinet's actor stopped")]
    Stopped,
    #[error("the cabinet is not connected to this node")]
    NotConnected,
    #[error("{0}")]
    NotConfigured(String),
    #[error("the cabinet has no {0} session")]
    NoSession(&'static str),
    /// A purchase holds the cabinet: it ends with its order, not on request.
    #[error("a shopper's purchase holds the cabinet; it ends with its order")]
    PurchaseHeld,
    #[error("{0}")]
    StepOrder(String),
    #[error("configuration is invalid")]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    Calibration(#[from] CalibrationError),
    #[error("the cabinet did not carry out the command: {0}")]
    Command(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    #[error("stored frame key cannot be unsealed: {0}")]
    Key(#[from] crate::secrets::SecretError),
}

/// The session the actor holds.
pub enum Held {
    /// A configuration or label delivery: its command is out.
    Delivery(SessionInfo),
    /// An operator calibrating a door.
    Calibration(SessionInfo, Calib),
    /// A purchase, restock or maintenance at an open door.
    Door(SessionInfo, DoorRun),
}

impl Held {
    pub fn info(&self) -> &SessionInfo {
        match self {
            Held::Delivery(info) | Held::Calibration(info, _) | Held::Door(info, _) => info,
        }
    }

    pub fn id(&self) -> i64 {
        self.info().id
    }

    pub fn kind(&self) -> SessionKind {
        self.info().kind
    }

    pub fn door(&self) -> Option<&DoorRun> {
        match self {
            Held::Door(_, run) => Some(run),
            _ => None,
        }
    }

    pub fn door_mut(&mut self) -> Option<&mut DoorRun> {
        match self {
            Held::Door(_, run) => Some(run),
            _ => None,
        }
    }

    pub fn calibration_mut(&mut self) -> Option<&mut Calib> {
        match self {
            Held::Calibration(_, calib) => Some(calib),
            _ => None,
        }
    }
}

/// A session at one door: its course (`domain::door`) and what the actor keeps beside it.
pub struct DoorRun {
    pub course: Course,
    /// Per lane of the door, the weight before the door opened (grams).
    pub before: Vec<(String, Grams)>,
    /// Standard uncertainty of each `before` weight this actor took itself; a lane not in it
    /// (taken up from the database, or filled from the door-open frame) counts as one reading.
    pub before_sem: BTreeMap<String, Grams>,
    pub closed_at: Option<Instant>,
}

/// What a door session looks like to operators (`/ops/cabinets/{sn}`).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct DoorView {
    pub door: u32,
    pub phase: &'static str,
    pub order_id: Option<i64>,
}

impl DoorRun {
    pub fn view(&self) -> DoorView {
        DoorView { door: self.course.door, phase: self.course.phase.as_str(), order_id: self.course.purpose.order_id() }
    }
}

/// Progress of a door's calibration.
pub struct Calib {
    pub door: u32,
    pub lanes: Vec<String>,
    pub channels: Vec<u32>,
    pub zero: Option<Vec<i64>>,
    pub counts_per_g: Option<Vec<f64>>,
    pub standard_g: Option<f64>,
    /// Standard uncertainty of each lane's zero and span reading, counts (0: one steady reading).
    pub zero_sem: Vec<f64>,
    pub span_sem: Vec<f64>,
    /// The current step's samples so far: a cell that needs more than one answer can carry (the
    /// frame limit) is asked again, and its answers are pooled.
    pub pooled: Vec<Vec<i64>>,
    /// Each lane's noise per reading as the verify step's samples showed it, grams.
    pub noise_g: Vec<Option<f64>>,
    /// When the operator last took a step (the session ends after `calibration.idle_timeout_s`).
    pub last_step: Instant,
    /// The operator's request waiting for the current step's reading.
    pub waiting: Option<oneshot::Sender<Result<StepReport, SessionError>>>,
}

impl Calib {
    pub fn new(door: u32, lanes: Vec<String>, channels: Vec<u32>) -> Calib {
        Calib {
            door,
            lanes,
            channels,
            zero: None,
            counts_per_g: None,
            standard_g: None,
            zero_sem: Vec::new(),
            span_sem: Vec::new(),
            pooled: Vec::new(),
            noise_g: Vec::new(),
            last_step: Instant::now(),
            waiting: None,
        }
    }
}

/// What a calibration step found, per lane.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StepReport {
    pub session_id: i64,
    pub door: u32,
    pub step: String,
    pub lanes: Vec<LaneStep>,
    /// The door is calibrated and the session has ended.
    pub done: bool,
    /// The cabinet's status after the step.
    pub status: Option<CabinetStatus>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LaneStep {
    pub code: String,
    pub counts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zero_counts: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counts_per_g: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grams: Option<f64>,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandOutcome {
    Acked(Option<serde_json::Value>),
    Failed(String),
    TimedOut,
}

impl CommandOutcome {
    pub fn status(&self) -> CommandStatus {
        match self {
            CommandOutcome::Acked(_) => CommandStatus::Acked,
            CommandOutcome::Failed(_) => CommandStatus::Failed,
            CommandOutcome::TimedOut => CommandStatus::TimedOut,
        }
    }
}

/// What the actor does with a command's outcome.
#[derive(Debug)]
pub enum Purpose {
    Config {
        version: i64,
    },
    Tags {
        version: i64,
    },
    Calibrate {
        step: CalibrationStep,
        standard_g: Option<f64>,
        lanes: Vec<String>,
    },
    Open {
        door: u32,
    },
    /// Weights asked for now (`weigh`) for a session taken up after a crash.
    Weigh,
}

/// A command sent and not yet answered.
pub struct Pending {
    pub kind: DownKind,
    pub body: serde_json::Value,
    pub attempts: u32,
    pub session_id: Option<i64>,
    pub purpose: Option<Purpose>,
    pub timer: Option<SpawnHandle>,
}
