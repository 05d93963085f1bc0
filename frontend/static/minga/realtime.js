// Minga realtime client: one websocket per tab to /ws/ (protocol: docs/realtime-protocol.md).
//
// USAGE
//   import { gateway } from "/static/minga/realtime.js";   // use {% static %} in templates
//   const gw = gateway({ memberId: 42 });   // the tab's one connection; later calls return it
//   gw.addEventListener("message.created", (e) => renderMessage(e.detail.message));
//   gw.addEventListener("resync", (e) => reloadThreadFromServer(e.detail.room));
//   gw.subscribe("wg1-a", { after: 118, changesAfter: 40 });  // the page's seq and change marks
//   const ack = await gw.send({ room: "wg1-a", thread: 7, body: "Hola", replyTo: null });
//   gw.typing("wg1-a", 7);                  // call on input; the client throttles to 1 per 3 s
//   gw.read("wg1-a", 7, messageId);
//   gw.unsubscribe("wg1-a");
//
// API
//   gateway(options?) -> Gateway     options (first call only): url (default ws[s]://host/ws/),
//                                    memberId (drops own `typing` frames), pingSeconds (25).
//   gw.subscribe(room, {after, changesAfter})
//                                    after: a seq -> the server replays every message above it,
//                                    then streams live; null -> live only. changesAfter: the
//                                    room's change number the page shows (null: from the
//                                    `subscribed` answer on) -> the server also replays the
//                                    current state of shown messages changed since. Survives
//                                    reconnects: the client re-subscribes with the last seq and
//                                    the last change it delivered.
//   gw.unsubscribe(room)
//   gw.send({room, thread, body, replyTo, attachments?, clientId?}) -> Promise<ack>
//                                    attachments: ids from the upload endpoint.
//                                    resolves with {client_id, message_id, seq}; rejects with an
//                                    Error carrying .code and .detail (see the error codes).
//                                    Unacknowledged sends are re-sent after a reconnect with the
//                                    same client_id: the server stores one message, acks again.
//   gw.typing(room, thread), gw.read(room, thread, messageId)
//   gw.lastSeq(room) -> number|null  the last seq delivered in order for the room
//   gw.lastChange(room) -> number|null  the change number up to which every change is applied
//   gw.state                         "connecting" | "open" | "closed" | "unauthenticated" | "revoked"
//   gw.close()                       closes for good (no reconnect)
//
// EVENTS (CustomEvent; the frame is in event.detail)
//   "message.created"   exactly once per message, in seq order per room: duplicates (replay and
//                       live overlap, resent frames) are dropped by seq and id; a frame that
//                       arrives ahead of a missing one waits, and if the gap is not filled within
//                       1.5 s the client re-subscribes with `after` to fetch what is missing.
//   "message.edited", "message.deleted", "message.hidden", "message.unhidden",
//   "reaction.changed", "thread.updated"   live and replayed after a reconnect; they carry the
//                       message's (thread's) whole current state and its `change` number, so
//                       applying them twice is harmless; one older than a state already
//                       delivered for the same message or thread is dropped.
//   "caught_up"         the replay of a (re)subscribe is complete.
//   "presence", "typing", "read", "notification", "notification.read", "subscribed",
//   "unsubscribed"      as received ("typing" from memberId is dropped).
//   "resync"            the gap was too large to replay: reload the room's or thread's messages
//                       over HTTP (GET /api/v1/threads/{id}/messages/), then carry on; live
//                       frames keep coming and are ordered from detail.last_seq on.
//   "error"             error frames that answer no pending send (e.g. "forbidden" on subscribe).
//                       A subscribe refused for a passing reason ("server_error": the server
//                       could not answer it then; "rate_limited") is asked again with backoff
//                       (0.25-0.5 s doubling to 30 s) and its event carries retrying: true; any
//                       other refusal forgets the room.
//   "status"            detail = {state, code?}: connection state changes. "unauthenticated"
//                       (close 4401: sign in again) and "revoked" (4403: logged out, deactivated,
//                       token revoked) end reconnecting; other closes reconnect with exponential
//                       backoff (0.5 s doubling to 30 s, with jitter) and then catch up.
//   "reconnected"       detail = {rooms}: the socket is back and re-subscribed. Messages missed
//                       meanwhile arrive as "message.created", and edits, deletions, hiding,
//                       reactions and pins of messages shown before the drop as their change
//                       frames (replayed from `changes_after`), then "caught_up".

const GAP_WAIT_MS = 1500;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30000;
const PONG_WAIT_MS = 10000;
const TYPING_MS = 3000;
const SEEN_IDS_MAX = 5000;
const HELD_CHANGES_MAX = 1000;

const STATUS_NO_RETRY = { 4401: "unauthenticated", 4403: "revoked" };
// Subscribe refusals that say nothing about the room: asked again, not given up.
const SUBSCRIBE_RETRY = new Set(["server_error", "rate_limited"]);

function defaultUrl() {
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${window.location.host}/ws/`;
}

function newClientId() {
  if (window.crypto && typeof window.crypto.randomUUID === "function") {
    return window.crypto.randomUUID();
  }
  // RFC 4122 version 4 from getRandomValues (older browsers without randomUUID).
  const b = window.crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

class GatewayError extends Error {
  constructor(frame) {
    super(frame.detail || frame.code);
    this.name = "GatewayError";
    this.code = frame.code;
    this.detail = frame.detail;
    this.frame = frame;
  }
}

class Room {
  constructor(slug, after, changesAfter) {
    this.slug = slug;
    this.lastSeq = after; // last seq delivered in order; null until the server says
    this.lastChange = changesAfter; // every change up to this one is applied; null until known
    this.heldChanges = new Set(); // live change numbers above lastChange + 1 (one is missing)
    this.versions = new Map(); // "m<id>" / "t<id>" -> change number of the state delivered
    this.pending = new Map(); // seq -> frame that arrived ahead of a gap
    this.gapTimer = null;
    this.retryTimer = null; // a refused subscribe asked again (SUBSCRIBE_RETRY)
    this.retries = 0;
    this.seenIds = new Set();
  }

  stopRetry() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  subscribeFrame() {
    const frame = { type: "subscribe", room: this.slug, after: this.lastSeq };
    // Change replay only makes sense on top of messages the client shows (after != null).
    if (this.lastSeq !== null && this.lastChange !== null) frame.changes_after = this.lastChange;
    return frame;
  }

  // Contiguous change numbers move the mark: a change skipped (a lost frame) holds it back,
  // so the next resubscribe replays from before it.
  advanceChanges() {
    while (this.heldChanges.has(this.lastChange + 1)) {
      this.heldChanges.delete(this.lastChange + 1);
      this.lastChange += 1;
    }
    for (const change of this.heldChanges) {
      if (change <= this.lastChange) this.heldChanges.delete(change);
    }
  }

  remember(id) {
    this.seenIds.add(id);
    if (this.seenIds.size > SEEN_IDS_MAX) {
      // Sets iterate in insertion order: drop the oldest.
      this.seenIds.delete(this.seenIds.values().next().value);
    }
  }
}

// Exponential backoff with ("equal") jitter, docs/realtime-protocol.md: a wait drawn uniformly
// between half and all of min(30 s, 0.5 s x 2^attempt), in ms; `draw` is in [0, 1). The half
// that is random spreads the tabs that lost the same server (a restart, a deploy) over the
// window instead of bringing them back in the same millisecond; the cap keeps a long outage's
// retries at most 30 s apart. tests/reliability/test_faults.py checks it under Node.
export function backoffDelay(attempt, draw) {
  const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, attempt));
  return cap / 2 + draw * (cap / 2);
}

export class Gateway extends EventTarget {
  constructor({ url = defaultUrl(), memberId = null, pingSeconds = 25 } = {}) {
    super();
    this.url = url;
    this.memberId = memberId;
    this.pingMs = pingSeconds * 1000;
    this.rooms = new Map(); // slug -> Room
    this.outbox = new Map(); // client_id -> {frame, resolve, reject}
    this.typingSent = new Map(); // "room/thread" -> time of the last typing frame
    this.state = "closed";
    this.socket = null;
    this.attempt = 0;
    this.closedForGood = false;
    this.reconnectTimer = null;
    this.pingTimer = null;
    this.pongTimer = null;
    this.wasOpen = false;
    window.addEventListener("online", () => this.reconnectNow());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.reconnectNow();
    });
    this.connect();
  }

  // --- Public API -----------------------------------------------------------------------------

  subscribe(room, { after = null, changesAfter = null } = {}) {
    let state = this.rooms.get(room);
    if (!state) {
      state = new Room(room, after, changesAfter);
      this.rooms.set(room, state);
    } else {
      if (after !== null && (state.lastSeq === null || after > state.lastSeq)) state.lastSeq = after;
      if (changesAfter !== null && (state.lastChange === null || changesAfter > state.lastChange)) {
        state.lastChange = changesAfter;
      }
    }
    this.write(state.subscribeFrame());
  }

  unsubscribe(room) {
    const state = this.rooms.get(room);
    if (state && state.gapTimer) clearTimeout(state.gapTimer);
    if (state) state.stopRetry();
    this.rooms.delete(room);
    this.write({ type: "unsubscribe", room });
  }

  send({ room, thread, body, replyTo = null, attachments = [], clientId = newClientId() }) {
    const frame = { type: "message.send", room, thread, body, client_id: clientId, reply_to: replyTo };
    if (attachments.length) frame.attachments = attachments;
    return new Promise((resolve, reject) => {
      this.outbox.set(clientId, { frame, resolve, reject });
      this.write(frame);
    });
  }

  typing(room, thread) {
    const key = `${room}/${thread}`;
    const now = Date.now();
    if (now - (this.typingSent.get(key) || 0) < TYPING_MS) return;
    this.typingSent.set(key, now);
    this.write({ type: "typing", room, thread });
  }

  read(room, thread, messageId) {
    this.write({ type: "read", room, thread, message_id: messageId });
  }

  lastSeq(room) {
    const state = this.rooms.get(room);
    return state ? state.lastSeq : null;
  }

  lastChange(room) {
    const state = this.rooms.get(room);
    return state ? state.lastChange : null;
  }

  close() {
    this.closedForGood = true;
    clearTimeout(this.reconnectTimer);
    this.stopHeartbeat();
    if (this.socket) this.socket.close(1000);
    this.setState("closed");
  }

  // --- Connection -----------------------------------------------------------------------------

  connect() {
    if (this.closedForGood) return;
    this.setState("connecting");
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener("open", () => this.onOpen(socket));
    socket.addEventListener("message", (event) => this.onFrame(socket, event));
    socket.addEventListener("close", (event) => this.onClose(socket, event));
  }

  onOpen(socket) {
    if (socket !== this.socket) return;
    this.setState("open");
    for (const state of this.rooms.values()) {
      state.pending.clear();
      state.heldChanges.clear();
      state.stopRetry(); // asked again here, now
      state.retries = 0; // a new connection, perhaps another server: its refusals start afresh
      this.write(state.subscribeFrame());
    }
    // Same client_id again: the server makes no second message and repeats the ack.
    for (const { frame } of this.outbox.values()) this.write(frame);
    if (this.wasOpen) {
      this.emit("reconnected", { rooms: [...this.rooms.keys()] });
    }
    this.wasOpen = true;
    this.startHeartbeat();
  }

  onClose(socket, event) {
    if (socket !== this.socket) return;
    this.stopHeartbeat();
    this.socket = null;
    const final = STATUS_NO_RETRY[event.code];
    if (final) {
      this.closedForGood = true;
      this.setState(final, event.code);
      for (const { reject } of this.outbox.values()) {
        reject(new GatewayError({ code: final, detail: "The connection was closed." }));
      }
      this.outbox.clear();
      return;
    }
    this.setState("closed", event.code);
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    if (this.closedForGood || this.reconnectTimer) return;
    const delay = backoffDelay(this.attempt, Math.random());
    this.attempt += 1;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delay);
  }

  reconnectNow() {
    if (this.closedForGood || this.socket) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.attempt = 0;
    this.connect();
  }

  startHeartbeat() {
    this.stopHeartbeat();
    this.pingTimer = setInterval(() => {
      this.write({ type: "ping" });
      // No frame at all within PONG_WAIT_MS: the connection is dead without knowing it.
      clearTimeout(this.pongTimer);
      this.pongTimer = setTimeout(() => {
        if (this.socket) this.socket.close(4000);
      }, PONG_WAIT_MS);
    }, this.pingMs);
  }

  stopHeartbeat() {
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
    this.pingTimer = null;
    this.pongTimer = null;
  }

  write(frame) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(frame));
    }
    // Otherwise it goes out on (re)connect: subscriptions and unacknowledged sends are kept.
  }

  setState(state, code) {
    this.state = state;
    this.emit("status", code === undefined ? { state } : { state, code });
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // --- Incoming frames ------------------------------------------------------------------------

  onFrame(socket, event) {
    if (socket !== this.socket) return;
    clearTimeout(this.pongTimer);
    this.attempt = 0; // the server answers: the next drop starts the backoff afresh
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    switch (frame.type) {
      case "subscribed":
        return this.onSubscribed(frame);
      case "message.created":
        return this.onMessage(frame);
      case "resync":
        return this.onResync(frame);
      case "caught_up":
        return this.onCaughtUp(frame);
      case "ack":
        return this.onAck(frame);
      case "error":
        return this.onError(frame);
      case "typing":
        if (this.memberId !== null && frame.member && frame.member.id === this.memberId) return;
        return this.emit("typing", frame);
      case "pong":
        return;
      default:
        if (Number.isInteger(frame.change) && frame.room) return this.onChange(frame);
        return this.emit(frame.type, frame);
    }
  }

  onSubscribed(frame) {
    const state = this.rooms.get(frame.room);
    if (!state) return;
    state.retries = 0;
    // Subscribed with after = null: ordering starts at the room's present.
    if (state.lastSeq === null) state.lastSeq = frame.last_seq;
    if (state.lastChange === null && Number.isInteger(frame.last_change)) {
      state.lastChange = frame.last_change;
    }
    this.emit("subscribed", frame);
  }

  onCaughtUp(frame) {
    const state = this.rooms.get(frame.room);
    if (!state) return;
    // Everything up to last_change is now applied (replayed, or carried by the message replay).
    if (state.lastChange === null || frame.last_change > state.lastChange) {
      state.lastChange = frame.last_change;
    }
    state.advanceChanges();
    this.emit("caught_up", frame);
  }

  // A change frame (edited, deleted, hidden, unhidden, reaction.changed, thread.updated): applied
  // by replacing, so it is delivered unless a newer state of the same message or thread was.
  onChange(frame) {
    const state = this.rooms.get(frame.room);
    if (!state) return;
    const target = frame.thread ? `t${frame.thread.id}` : `m${frame.message ? frame.message.id : frame.message_id}`;
    const stale = frame.change < (state.versions.get(target) || 0);
    if (!stale) state.versions.set(target, frame.change);
    if (state.lastChange !== null && frame.change > state.lastChange) {
      if (state.heldChanges.size < HELD_CHANGES_MAX) state.heldChanges.add(frame.change);
      state.advanceChanges();
      if (state.heldChanges.size && !state.gapTimer) {
        // A change number was skipped: a frame was lost. Ask for the missing state.
        state.gapTimer = setTimeout(() => {
          state.gapTimer = null;
          if (state.heldChanges.size && this.rooms.get(state.slug) === state) {
            this.write(state.subscribeFrame());
          }
        }, GAP_WAIT_MS);
      }
    }
    if (!stale) this.emit(frame.type, frame);
  }

  onMessage(frame) {
    const state = this.rooms.get(frame.room);
    if (!state || state.lastSeq === null) return;
    const id = frame.message && frame.message.id;
    if (frame.seq <= state.lastSeq || state.seenIds.has(id)) return;
    if (frame.seq !== state.lastSeq + 1) {
      // Ahead of a gap: concurrent posts may be published out of commit order, or a frame
      // was lost. Wait a moment for the missing ones, then ask the server for them.
      state.pending.set(frame.seq, frame);
      if (!state.gapTimer) {
        state.gapTimer = setTimeout(() => {
          state.gapTimer = null;
          if ((state.pending.size || state.heldChanges.size) && this.rooms.get(state.slug) === state) {
            this.write(state.subscribeFrame());
          }
        }, GAP_WAIT_MS);
      }
      return;
    }
    this.deliver(state, frame);
    let next = state.pending.get(state.lastSeq + 1);
    while (next) {
      state.pending.delete(next.seq);
      this.deliver(state, next);
      next = state.pending.get(state.lastSeq + 1);
    }
    for (const seq of state.pending.keys()) {
      if (seq <= state.lastSeq) state.pending.delete(seq);
    }
    if (!state.pending.size && !state.heldChanges.size && state.gapTimer) {
      clearTimeout(state.gapTimer);
      state.gapTimer = null;
    }
  }

  deliver(state, frame) {
    state.lastSeq = frame.seq;
    if (frame.message) state.remember(frame.message.id);
    this.emit("message.created", frame);
  }

  onResync(frame) {
    const state = this.rooms.get(frame.room);
    if (!state) return;
    state.pending.clear();
    state.heldChanges.clear();
    state.lastSeq = frame.last_seq;
    if (Number.isInteger(frame.last_change)) state.lastChange = frame.last_change;
    this.emit("resync", frame);
  }

  onAck(frame) {
    const waiting = this.outbox.get(frame.client_id);
    this.outbox.delete(frame.client_id);
    if (waiting) waiting.resolve(frame);
  }

  onError(frame) {
    const waiting = frame.client_id ? this.outbox.get(frame.client_id) : null;
    if (waiting) {
      this.outbox.delete(frame.client_id);
      waiting.reject(new GatewayError(frame));
      return;
    }
    if (frame.frame === "subscribe" && frame.room) {
      const state = this.rooms.get(frame.room);
      if (state && SUBSCRIBE_RETRY.has(frame.code)) {
        this.retrySubscribe(state);
        this.emit("error", { ...frame, retrying: true });
        return;
      }
      if (state) state.stopRetry();
      this.rooms.delete(frame.room);
    }
    this.emit("error", frame);
  }

  // Ask again for a room whose subscribe was refused for a passing reason, with the same
  // backoff as reconnecting; the room keeps its marks, so the answer replays what was missed.
  retrySubscribe(state) {
    if (state.retryTimer) return;
    const delay = backoffDelay(state.retries, Math.random());
    state.retries += 1;
    state.retryTimer = setTimeout(() => {
      state.retryTimer = null;
      if (this.rooms.get(state.slug) === state) this.write(state.subscribeFrame());
    }, delay);
  }
}

let instance = null;

export function gateway(options) {
  if (!instance) instance = new Gateway(options);
  return instance;
}
