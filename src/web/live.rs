//! `GET /ops/live`: the operators' live view, one websocket per browser
//! (`docs/live-protocol.md`). This file speaks the protocol; the hub (`actors::live`) decides
//! what each socket is sent.
//!
//! The token comes in the `Sec-WebSocket-Protocol` header (`heft-live, <token>`, what a browser
//! can set), in `Authorization: Bearer`, or in the first message (`{"type":"auth","token":…}`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::auth::{OpsUser, signed_in};
use super::bearer::bearer;
use super::{ApiError, AppState};
use crate::actors::live::{Hub, LiveError, Popped, SocketHandle};
use crate::config::LiveConfig;
use crate::domain::live::Topic;

/// The subprotocol a browser names beside its token.
pub const PROTOCOL: &str = "heft-live";

/// Close codes (4000–4999 are the application's own).
const UNAUTHENTICATED: u16 = 4001;
const FORBIDDEN: u16 = 4003;
const TOO_SLOW: u16 = 4008;

/// What a client sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Request {
    Auth { token: String },
    Sub { id: u64, topic: String },
    Unsub { id: u64 },
    Ping,
}

/// `GET /ops/live` (websocket upgrade). Roles: any; each topic says which roles may follow it.
#[utoipa::path(
    get, path = "/ops/live", tag = "ops: live", operation_id = "live_view",
    description = "The operators' live view: a websocket (subprotocol `heft-live`). The operator's \
                   token comes in `Sec-WebSocket-Protocol: heft-live, <token>`, in \
                   `Authorization: Bearer`, or as the first message; then numbered `sub`/`unsub` \
                   requests on `fleet`, `cabinet/{sn}`, `orders`, `alerts`, `reviews`, `restock`, each \
                   answered with a snapshot and then deltas. The protocol is in docs/live-protocol.md.",
    responses(
        (status = 101, description = "Switched to the websocket"),
        (status = 400, description = "Not a websocket upgrade", body = crate::web::error::ErrorBody),
        (status = 503, description = "This node has `live.max_sockets` sockets open", body = crate::web::error::ErrorBody),
    )
)]
pub async fn live(req: HttpRequest, body: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let hub = state.live.clone();
    let cfg = hub.config().clone();
    if hub.sockets() >= cfg.max_sockets {
        return Err(ApiError::Unavailable(format!("this node has {} live sockets open, its limit", cfg.max_sockets)));
    }
    let token = offered_token(&req);
    let (response, session, stream) = actix_ws::handle_with_protocols(&req, body, &[PROTOCOL])
        .map_err(|e| ApiError::BadRequest(format!("a websocket upgrade is expected: {e}")))?;
    let stream = stream
        .max_frame_size(cfg.max_message_bytes)
        .aggregate_continuations()
        .max_continuation_size(cfg.max_message_bytes);
    let socket = Socket { state: state.into_inner(), hub, cfg, session, seqs: HashMap::new() };
    actix_web::rt::spawn(socket.run(stream, token));
    Ok(response)
}

/// A token offered before the upgrade: a subprotocol other than ours, or a bearer header.
fn offered_token(req: &HttpRequest) -> Option<String> {
    let header = actix_web::http::header::SEC_WEBSOCKET_PROTOCOL;
    let offered = req
        .headers()
        .get_all(header)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(str::trim).map(str::to_string).collect::<Vec<_>>())
        .find(|p| !p.is_empty() && p != PROTOCOL);
    offered.or_else(|| bearer(req).ok())
}

/// A frame that broke the protocol: one over the size limit is told so (1009); anything else
/// means the connection is gone.
fn protocol_end(e: &actix_ws::ProtocolError) -> End {
    match e {
        actix_ws::ProtocolError::Overflow => End::Close(u16::from(CloseCode::Size), "message too big".into()),
        _ => End::Gone,
    }
}

struct Socket {
    state: std::sync::Arc<AppState>,
    hub: Hub,
    cfg: LiveConfig,
    session: Session,
    /// The last sequence number per subscription.
    seqs: HashMap<u64, u64>,
}

/// Why a socket ends.
enum End {
    /// The client went, or the connection broke.
    Gone,
    Close(u16, String),
}

impl Socket {
    async fn run(mut self, mut stream: AggregatedMessageStream, token: Option<String>) {
        let end = match self.authenticate(&mut stream, token).await {
            Ok((op, expires)) => match self.hub.open(op.id, op.role) {
                Ok(handle) => {
                    let end = self.serve(&mut stream, &op, &handle, expires).await;
                    self.hub.close(handle.id);
                    end
                }
                Err(e) => End::Close(u16::from(CloseCode::Again), e.to_string()),
            },
            Err(end) => end,
        };
        if let End::Close(code, reason) = end {
            let label = match code {
                UNAUTHENTICATED => "unauthenticated",
                FORBIDDEN => "forbidden",
                TOO_SLOW => "slow",
                _ => "other",
            };
            self.state.svc.metrics.live_closed.with_label_values(&[label]).inc();
            let reason = CloseReason { code: CloseCode::Other(code), description: Some(reason) };
            let _ = self.session.close(Some(reason)).await;
        }
    }

    /// The operator, from the token offered at the upgrade or in the first message; and when
    /// their token expires.
    async fn authenticate(
        &mut self,
        stream: &mut AggregatedMessageStream,
        offered: Option<String>,
    ) -> Result<(OpsUser, Instant), End> {
        let token = match offered {
            Some(t) => t,
            None => self.first_message_token(stream).await?,
        };
        let route = "GET /ops/live".to_string();
        let (op, claims) = signed_in(&self.state, &token, route).await.map_err(|e| match e {
            ApiError::Unauthorized(why) => End::Close(UNAUTHENTICATED, why),
            other => End::Close(u16::from(CloseCode::Error), other.to_string()),
        })?;
        let left = u64::try_from(claims.exp - chrono::Utc::now().timestamp()).unwrap_or(0);
        let welcome = json!({
            "type": "welcome",
            "operator": {"id": op.id, "username": op.username, "role": op.role},
            "node": self.state.svc.node_id(),
            "expires_at": claims.exp,
            "limits": {
                "max_subscriptions": self.cfg.max_subscriptions,
                "max_message_bytes": self.cfg.max_message_bytes,
                "fleet_interval_ms": self.cfg.fleet_interval_ms,
                "weights_interval_ms": self.cfg.weights_interval_ms,
                "ping_s": self.cfg.ping_s,
            },
        });
        self.send(welcome.to_string()).await.map_err(|()| End::Gone)?;
        Ok((op, Instant::now() + Duration::from_secs(left)))
    }

    async fn first_message_token(&mut self, stream: &mut AggregatedMessageStream) -> Result<String, End> {
        let deadline = Duration::from_millis(self.cfg.auth_timeout_ms);
        let unauthenticated = |why: &str| End::Close(UNAUTHENTICATED, why.to_string());
        loop {
            let msg = match tokio::time::timeout(deadline, stream.next()).await {
                Err(_) => return Err(unauthenticated("not authenticated in time")),
                Ok(None) => return Err(End::Gone),
                Ok(Some(Err(e))) => return Err(protocol_end(&e)),
                Ok(Some(Ok(msg))) => msg,
            };
            match msg {
                AggregatedMessage::Text(text) => {
                    return match serde_json::from_str::<Request>(&text) {
                        Ok(Request::Auth { token }) => Ok(token),
                        _ => Err(unauthenticated("the first message must be {\"type\":\"auth\",\"token\":…}")),
                    };
                }
                AggregatedMessage::Ping(b) => {
                    let _ = self.session.pong(&b).await;
                }
                AggregatedMessage::Close(_) => return Err(End::Gone),
                AggregatedMessage::Pong(_) | AggregatedMessage::Binary(_) => {}
            }
        }
    }

    /// Requests in, queued messages out, pings, until one side ends it.
    async fn serve(
        &mut self,
        stream: &mut AggregatedMessageStream,
        op: &OpsUser,
        handle: &SocketHandle,
        expires: Instant,
    ) -> End {
        let mut ping = tokio::time::interval(Duration::from_secs(self.cfg.ping_s));
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let idle = Duration::from_secs(self.cfg.idle_timeout_s);
        let mut heard = Instant::now();
        let expiry = tokio::time::sleep_until(expires.into());
        tokio::pin!(expiry);
        loop {
            tokio::select! {
                () = handle.wake.notified() => {
                    if let Err(end) = self.drain(handle.id).await {
                        return end;
                    }
                }
                msg = stream.next() => {
                    heard = Instant::now();
                    match msg {
                        None => return End::Gone,
                        Some(Err(e)) => return protocol_end(&e),
                        Some(Ok(AggregatedMessage::Text(text))) => {
                            if self.request(handle.id, op, &text).await.is_err() {
                                return End::Gone;
                            }
                        }
                        Some(Ok(AggregatedMessage::Ping(b))) => {
                            if self.session.pong(&b).await.is_err() {
                                return End::Gone;
                            }
                        }
                        Some(Ok(AggregatedMessage::Pong(_))) => {}
                        Some(Ok(AggregatedMessage::Binary(_))) => {
                            if self.error(None, "bad_request", "messages are JSON text").await.is_err() {
                                return End::Gone;
                            }
                        }
                        Some(Ok(AggregatedMessage::Close(_))) => return End::Gone,
                    }
                }
                _ = ping.tick() => {
                    if heard.elapsed() > idle {
                        return End::Close(u16::from(CloseCode::Away), format!("nothing heard for {} s", idle.as_secs()));
                    }
                    if self.session.ping(b"").await.is_err() {
                        return End::Gone;
                    }
                }
                () = &mut expiry => return End::Close(UNAUTHENTICATED, "token expired".into()),
            }
        }
    }

    /// One request from the client. `Err`: the connection is gone.
    async fn request(&mut self, socket: u64, op: &OpsUser, text: &str) -> Result<(), ()> {
        let request = match serde_json::from_str::<Request>(text) {
            Ok(r) => r,
            Err(e) => return self.error(None, "bad_request", &e.to_string()).await,
        };
        match request {
            Request::Auth { .. } => self.error(None, "already_authenticated", "this socket is signed in").await,
            Request::Ping => self.send(json!({"type": "pong"}).to_string()).await,
            Request::Unsub { id } => match self.hub.unsubscribe(socket, id) {
                true => {
                    self.seqs.remove(&id);
                    self.send(json!({"type": "unsubscribed", "sub": id}).to_string()).await
                }
                false => self.error(Some(id), "no_such_sub", "no subscription by that number").await,
            },
            Request::Sub { id, topic } => {
                let topic = match Topic::parse(&topic) {
                    Ok(t) => t,
                    Err(e) => return self.error(Some(id), "bad_topic", &e.to_string()).await,
                };
                match self.hub.subscribe(socket, id, topic) {
                    Ok(()) => Ok(()),
                    Err(e @ LiveError::Forbidden { .. }) => {
                        tracing::info!(operator = %op.username, error = %e, "live subscription refused");
                        self.error(Some(id), "forbidden", &e.to_string()).await
                    }
                    Err(e @ LiveError::Taken(_)) => self.error(Some(id), "sub_in_use", &e.to_string()).await,
                    Err(e) => self.error(Some(id), "too_many", &e.to_string()).await,
                }
            }
        }
    }

    /// Send what waits in the socket's queue. `Err`: end the socket.
    async fn drain(&mut self, socket: u64) -> Result<(), End> {
        loop {
            match self.hub.pop(socket) {
                Popped::Empty => return Ok(()),
                Popped::Close(why) => {
                    let code = if why.starts_with("too slow") { TOO_SLOW } else { FORBIDDEN };
                    return Err(End::Close(code, why));
                }
                Popped::Delta { sub, out } => {
                    let seq = self.next_seq(sub);
                    let text = format!(
                        r#"{{"type":"delta","sub":{sub},"seq":{seq},"kind":"{}","data":{}}}"#,
                        out.kind, out.data
                    );
                    self.counted("delta", text).await.map_err(|()| End::Gone)?;
                }
                Popped::Snapshot { sub, topic, resync } => self.snapshot(socket, sub, &topic, resync).await?,
            }
        }
    }

    async fn snapshot(&mut self, socket: u64, sub: u64, topic: &Topic, resync: bool) -> Result<(), End> {
        if resync {
            let text = json!({"type": "resync", "sub": sub, "reason": "behind"}).to_string();
            self.counted("resync", text).await.map_err(|()| End::Gone)?;
        }
        let data = match self.hub.snapshot(topic).await {
            Ok(data) => data,
            Err(e) => {
                // The subscription ends: a client may subscribe again.
                self.hub.unsubscribe(socket, sub);
                self.seqs.remove(&sub);
                let code = if matches!(e, LiveError::NoCabinet(_)) { "not_found" } else { "unavailable" };
                return self.error(Some(sub), code, &e.to_string()).await.map_err(|()| End::Gone);
            }
        };
        // Unsubscribed while it was read: nothing goes out.
        if self.hub.topic(socket, sub).as_ref() != Some(topic) {
            return Ok(());
        }
        let seq = self.next_seq(sub);
        let text = format!(r#"{{"type":"snapshot","sub":{sub},"seq":{seq},"topic":"{topic}","data":{data}}}"#);
        self.counted("snapshot", text).await.map_err(|()| End::Gone)
    }

    fn next_seq(&mut self, sub: u64) -> u64 {
        let seq = self.seqs.entry(sub).or_insert(0);
        *seq += 1;
        *seq
    }

    async fn error(&mut self, sub: Option<u64>, code: &str, message: &str) -> Result<(), ()> {
        self.send(json!({"type": "error", "sub": sub, "code": code, "message": message}).to_string()).await
    }

    async fn counted(&mut self, kind: &str, text: String) -> Result<(), ()> {
        let m = &self.state.svc.metrics;
        m.live_sent.with_label_values(&[kind]).inc();
        m.live_bytes.inc_by(text.len() as u64);
        self.send(text).await
    }

    /// Send one message; a client that takes none for `idle_timeout_s` is gone.
    async fn send(&mut self, text: String) -> Result<(), ()> {
        let limit = Duration::from_secs(self.cfg.idle_timeout_s);
        match tokio::time::timeout(limit, self.session.text(text)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(()),
        }
    }
}
