//! Callback delivery the way the platforms do it: POST, and when the answer is not an
//! acknowledgement, again on the platform's retry schedule (divided by `time_scale`), until the
//! schedule runs out. Each attempt is built afresh (WeChat signs with the attempt's timestamp)
//! and recorded, so tests can see what the platform saw.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

/// WeChat Pay Score callbacks: 15 s, 15 s, 30 s, 3 min, 30 min × 4, 60 min (reference §2.4).
pub const WECHAT_SCHEDULE_S: &[u64] = &[15, 15, 30, 180, 1800, 1800, 1800, 1800, 3600];
/// Alipay notifies: 4 min, 10 min, 10 min, 1 h, 2 h, 6 h, 15 h (reference §5.4).
pub const ALIPAY_SCHEDULE_S: &[u64] = &[240, 600, 600, 3600, 7200, 21600, 54000];

/// Builds one attempt of a callback: its headers and body.
pub type BuildAttempt = Box<dyn Fn() -> (Vec<(String, String)>, Vec<u8>) + Send + Sync>;

/// One callback to deliver.
pub struct Callback {
    /// What it is, for the log: `wechat PAYSCORE.USER_CONFIRM VC2025…`.
    pub label: String,
    pub url: String,
    /// Pauses between attempts, seconds (real time; divided by the time scale).
    pub schedule: &'static [u64],
    /// Builds one attempt: headers and body.
    pub build: BuildAttempt,
    /// Whether the answer acknowledges the callback (WeChat: 200/204; Alipay: body `success`).
    pub acked: fn(u16, &[u8]) -> bool,
    /// Extra copies sent after the acknowledged one (duplicate-callback knob).
    pub duplicates: u32,
    /// Wait before the first attempt (late-callback knob).
    pub delay: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct CallbackAttempt {
    pub label: String,
    pub url: String,
    pub attempt: u32,
    /// HTTP status, or 0 when the request failed (refused, timed out).
    pub status: u16,
    pub acked: bool,
    pub at: chrono::DateTime<chrono::Utc>,
}

#[derive(Clone)]
pub struct Callbacks {
    http: reqwest::Client,
    time_scale: f64,
    log: Arc<Mutex<Vec<CallbackAttempt>>>,
}

impl Callbacks {
    pub fn new(http: reqwest::Client, time_scale: f64) -> Callbacks {
        Callbacks { http, time_scale: time_scale.max(1.0), log: Arc::default() }
    }

    /// Every attempt so far, oldest first.
    pub fn attempts(&self) -> Vec<CallbackAttempt> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn scaled(&self, secs: u64) -> Duration {
        Duration::from_secs_f64(secs as f64 / self.time_scale)
    }

    /// Deliver in the background.
    pub fn send(&self, cb: Callback) {
        let this = self.clone();
        actix_rt::spawn(async move { this.deliver(cb).await });
    }

    async fn deliver(&self, cb: Callback) {
        if !cb.delay.is_zero() {
            tokio::time::sleep(cb.delay).await;
        }
        let mut attempt = 0u32;
        let mut acked = false;
        // First try, then one more after each pause of the schedule.
        for pause in std::iter::once(None).chain(cb.schedule.iter().map(Some)) {
            if let Some(&secs) = pause {
                tokio::time::sleep(self.scaled(secs)).await;
            }
            attempt += 1;
            if self.attempt(&cb, attempt).await {
                acked = true;
                break;
            }
        }
        if !acked {
            tracing::warn!(label = %cb.label, attempts = attempt, "simulator gave up on a callback");
            return;
        }
        for _ in 0..cb.duplicates {
            attempt += 1;
            self.attempt(&cb, attempt).await;
        }
    }

    async fn attempt(&self, cb: &Callback, attempt: u32) -> bool {
        let (headers, body) = (cb.build)();
        let mut req = self.http.post(&cb.url).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let (status, acked) = match req.send().await {
            Ok(res) => {
                let status = res.status().as_u16();
                let body = res.bytes().await.unwrap_or_default();
                (status, (cb.acked)(status, &body))
            }
            Err(e) => {
                tracing::debug!(label = %cb.label, error = %e, "callback attempt failed");
                (0, false)
            }
        };
        self.log.lock().unwrap_or_else(|p| p.into_inner()).push(CallbackAttempt {
            label: cb.label.clone(),
            url: cb.url.clone(),
            attempt,
            status,
            acked,
            at: chrono::Utc::now(),
        });
        acked
    }
}
