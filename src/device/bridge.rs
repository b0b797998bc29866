//! The bridge: reads the broker's local link and hands each upstream frame to its cabinet actor.
//!
//! It only checks what it can without the cabinet's key (size, topic); the actor checks the
//! signature, boot and seq. It must answer `Notification::Unschedule` with `wake()`, or rumqttd
//! silently stops serving the link once ~200 frames are queued.

use std::time::{Duration, Instant};

use actix::Addr;
use bytes::Bytes;
use rumqttd::Notification;
use rumqttd::local::LinkRx;

use super::frame::Reject;
use super::topic::{self, UpKind};
use crate::actors::registry::{Registry, Routes};
use crate::domain::cabinet::Sn;
use crate::metrics::Metrics;

/// One upstream frame, as it travels from the bridge to a cabinet actor.
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub struct Inbound {
    pub sn: Sn,
    pub kind: UpKind,
    pub topic: Bytes,
    pub payload: Bytes,
    pub received: Instant,
    /// Counts the frame in `heft_bridge_inflight` until it is handled or dropped (say, in the
    /// mailbox of an actor that crashed), so the bridge's back-pressure never leaks.
    pub inflight: Inflight,
}

#[derive(Debug)]
pub struct Inflight(prometheus::IntGauge);

impl Inflight {
    fn new(gauge: &prometheus::IntGauge) -> Inflight {
        gauge.inc();
        Inflight(gauge.clone())
    }
}

impl Drop for Inflight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub struct Bridge {
    pub routes: Routes,
    pub registry: Addr<Registry>,
    pub metrics: Metrics,
    pub max_frame_bytes: usize,
    pub max_inflight: usize,
}

impl Bridge {
    /// Read the link until it closes.
    pub async fn run(self, mut link: LinkRx) {
        loop {
            match link.next().await {
                Ok(Some(Notification::Forward(f))) => self.forward(f.publish.topic, f.publish.payload).await,
                Ok(Some(Notification::Unschedule)) => {
                    if let Err(e) = link.wake().await {
                        tracing::error!(error = %e, "MQTT bridge could not wake its link");
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::info!(error = %e, "MQTT bridge link closed");
                    break;
                }
            }
        }
    }

    async fn forward(&self, topic: Bytes, payload: Bytes) {
        if topic::is_down(&topic) {
            return;
        }
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
        // are behind, instead of queueing without bound.
        while self.metrics.bridge_inflight.get() as usize >= self.max_inflight {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let inflight = Inflight::new(&self.metrics.bridge_inflight);
        let frame = Inbound { sn, kind, topic, payload, received: Instant::now(), inflight };
        let route = self.routes.read().ok().and_then(|r| r.get(frame.sn.as_str()).cloned());
        match route {
            Some(addr) if addr.connected() => addr.do_send(frame),
            _ => self.registry.do_send(frame),
        }
    }
}
