//! The bridge: reads the broker's local link and hands each upstream frame to its cabinet actor.
//!
//! It only checks what it can without the cabinet's key (size, topic); the actor checks the
//! signature, boot and seq. It must answer `Notification::Unschedule` with `wake()`, or rumqttd
//! silently stops serving the link once ~200 frames are queued.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use actix::Recipient;
use bytes::Bytes;
use rumqttd::Notification;
use rumqttd::local::LinkRx;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::frame::Reject;
use super::topic::{self, UpKind};
use crate::domain::cabinet::Sn;
use crate::metrics::Metrics;

/// sn → the inbox of the cabinet's actor on this node, read by the bridge on its own thread
/// (written by whoever starts the actors).
pub type Routes = Arc<RwLock<HashMap<String, Recipient<Inbound>>>>;

/// One upstream frame, as it travels from the bridge to a cabinet actor.
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub struct Inbound {
    pub sn: Sn,
    pub kind: UpKind,
    pub topic: Bytes,
    pub payload: Bytes,
    pub received: Instant,
    /// Holds one of the bridge's permits (and counts the frame in `heft_bridge_inflight`) until
    /// the frame is handled or dropped (say, in the mailbox of an actor that crashed), so the
    /// bridge's back-pressure never leaks.
    pub inflight: Inflight,
}

#[derive(Debug)]
pub struct Inflight {
    gauge: prometheus::IntGauge,
    _permit: OwnedSemaphorePermit,
}

impl Inflight {
    fn new(gauge: &prometheus::IntGauge, permit: OwnedSemaphorePermit) -> Inflight {
        gauge.inc();
        Inflight { gauge: gauge.clone(), _permit: permit }
    }
}

impl Drop for Inflight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

pub struct Bridge {
    pub routes: Routes,
    /// Where a frame for a cabinet with no live actor goes (the registry starts one).
    pub fallback: Recipient<Inbound>,
    pub metrics: Metrics,
    pub max_frame_bytes: usize,
    /// At most `mqtt.bridge_queue` frames on their way to actors at once.
    pub permits: Arc<Semaphore>,
}

impl Bridge {
    /// Read the link until it closes.
    pub async fn run(self, mut link: LinkRx) {
        while let Some(f) = next_forward(&mut link, "bridge").await {
            self.forward(f.publish.topic, f.publish.payload).await;
        }
    }

    /// Count the frames on topics outside the protocol (`unknown_topic`) until the link closes.
    /// They are only counted, so this link never holds the broker back.
    pub async fn count_strays(metrics: Metrics, mut link: LinkRx) {
        while next_forward(&mut link, "strays").await.is_some() {
            metrics.rejected(Reject::UnknownTopic);
        }
    }

    async fn forward(&self, topic: Bytes, payload: Bytes) {
        if payload.len() > self.max_frame_bytes {
            self.metrics.rejected(Reject::Oversize);
            return;
        }
        let (sn, kind) = match topic::parse_up(&topic) {
            Ok(parsed) => parsed,
            Err(e) => {
                tracing::debug!(error = %e, "dropping frame on unknown topic");
                self.metrics.rejected(Reject::UnknownTopic);
                return;
            }
        };
        // Hold back (and so hold back the broker, and through TCP the devices) when the actors
        // are behind, instead of queueing without bound. The semaphore is never closed.
        let Ok(permit) = self.permits.clone().acquire_owned().await else { return };
        let inflight = Inflight::new(&self.metrics.bridge_inflight, permit);
        let frame = Inbound { sn, kind, topic, payload, received: Instant::now(), inflight };
        let route = self.routes.read().ok().and_then(|r| r.get(frame.sn.as_str()).cloned());
        match route {
            Some(inbox) if inbox.connected() => inbox.do_send(frame),
            _ => self.fallback.do_send(frame),
        }
    }
}

/// The next frame the link forwards, answering `Unschedule` on the way; `None` once it closes.
async fn next_forward(link: &mut LinkRx, which: &str) -> Option<rumqttd::Forward> {
    loop {
        match link.next().await {
            Ok(Some(Notification::Forward(f))) => return Some(f),
            Ok(Some(Notification::Unschedule)) => {
                if let Err(e) = link.wake().await {
                    tracing::error!(link = which, error = %e, "MQTT link could not wake");
                    return None;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::info!(link = which, error = %e, "MQTT link closed");
                return None;
            }
        }
    }
}
