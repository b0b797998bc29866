// A client of /ops/live (docs/live-protocol.md): one websocket, numbered subscriptions, each
// given its snapshot and then deltas; resynced subscriptions get a fresh snapshot; a lost socket
// is opened again and every subscription taken up anew.
"use strict";

class Live {
  constructor(token, { onLink, onSignedOut }) {
    this.token = token;
    this.onLink = onLink;
    this.onSignedOut = onSignedOut;
    this.subs = new Map(); // id -> {topic, onSnapshot, onDelta}
    this.next = 1;
    this.pause = 500;
    this.closed = false;
    this.open();
  }

  open() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.onLink("connecting");
    this.ws = new WebSocket(`${scheme}//${location.host}/ops/live`, ["heft-live", this.token]);
    this.ws.onmessage = (e) => this.message(JSON.parse(e.data));
    this.ws.onclose = (e) => {
      if (this.closed) return;
      // 4001: the token is no good; 4003: the account changed. Sign in again.
      if (e.code === 4001 || e.code === 4003) return this.onSignedOut(e.reason);
      this.onLink("down");
      setTimeout(() => this.open(), this.pause);
      this.pause = Math.min(this.pause * 2, 10000);
    };
  }

  message(m) {
    if (m.type === "welcome") {
      this.pause = 500;
      this.onLink("live", m);
      for (const [id, s] of this.subs) this.send({ type: "sub", id, topic: s.topic });
      return;
    }
    const s = this.subs.get(m.sub);
    if (!s) return;
    if (m.type === "snapshot") s.onSnapshot(m.data);
    else if (m.type === "delta") s.onDelta(m.kind, m.data);
    else if (m.type === "error") console.warn("live", m.code, m.message);
  }

  send(m) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(m));
  }

  /// Follow `topic`; `onSnapshot(data)` replaces what is held, `onDelta(kind, data)` updates it.
  sub(topic, onSnapshot, onDelta) {
    const id = this.next++;
    this.subs.set(id, { topic, onSnapshot, onDelta });
    this.send({ type: "sub", id, topic });
    return id;
  }

  unsub(id) {
    if (this.subs.delete(id)) this.send({ type: "unsub", id });
  }

  close() {
    this.closed = true;
    this.ws.close();
  }
}
