/*! sseor.js: the browser client of sseor event streams. MIT licence.
 *
 * A thin layer over EventSource that
 *  - shares one stream among all tabs of the same origin and user: one tab holds the
 *    EventSource, the others receive its events through a BroadcastChannel, and when the
 *    holder closes another tab takes over (Web Locks) and resumes where it left off;
 *  - keeps the last event id (in localStorage) so that a reload resumes with no event lost;
 *  - reconnects by itself, with backoff and jitter, also after answers EventSource gives up
 *    on (429, 503) and after the server ended the stream;
 *  - fetches a single-use stream ticket when given a token, so tokens stay out of URLs;
 *  - starts from a cursor the page was rendered with, so that nothing published between
 *    rendering the page and opening its stream is lost;
 *  - stops for good, in every tab, when the server disconnects the user without allowing a
 *    reconnection (a ban, a revoked session: the event "sseor.disconnect").
 *
 * As a plain script:  <script src="/sseor.js"></script>  then  Sseor.connect({...})
 * As an ES module:    import { connect } from "/sseor.mjs";
 *
 *   const stream = Sseor.connect({ user: "user123", topics: ["news"] });
 *   stream.on("transaction.updated", (event) => console.log(JSON.parse(event.data), event.lastEventId));
 *   stream.onState((s) => console.log(s.state, s.leader, s.retryAt, s.error));
 *   stream.on("sseor.disconnect", (event) => console.log(JSON.parse(event.data).reason));
 *   stream.close();
 *
 * Render, then stream: the server that renders the page takes the stream's cursor
 * (GET /api/v1/cursor?user_id=...&topic=..., or Manager::cursor) as it reads the state the
 * page shows, and writes it into the page:
 *
 *   Sseor.connect({ user: "user123", topics: ["news"], cursor: "1.xxxx" });
 *
 * The first connection resumes from it (sent as ?last_event_id=, as EventSource cannot set
 * headers), so the events published since the page was rendered arrive first; later ones
 * resume from the last event seen, as always. The cursor wins over the id kept from an
 * earlier visit: the page shows the state of its rendering, not of that visit. A tab given
 * a cursor holds a stream of its own rather than sharing another tab's, which could not
 * replay what was published before this tab joined.
 */
(function (root) {
  "use strict";

  const DEFAULTS = {
    url: "/api/v1/sse",          // the stream endpoint
    user: null,                  // user_id: also what tabs share the stream by
    topics: [],                  // topic=... (repeated)
    token: null,                 // string, or function returning one (or a promise of one)
    ticketUrl: "/api/v1/tickets",
    withCredentials: false,      // send cookies to another origin
    share: true,                 // one stream for all tabs of this origin and user
    resume: true,                // keep the last event id across reloads
    cursor: null,                // start from this cursor (the page's, from GET /api/v1/cursor)
    minDelay: 1000,              // first reconnection delay, ms (then doubling, with jitter)
    maxDelay: 30000,             // longest reconnection delay, ms
  };

  /** Always present: an event no EventSource listener would hear otherwise. */
  const RESET_EVENT = "sseor.reset";
  /** The server's last event on a stream it ends: `{reason, reconnect}`. Unless
   * `reconnect` is true, the client stops, with `error` as
   * `{status: null, reason: "disconnected", message: <the server's reason>}`. */
  const DISCONNECT_EVENT = "sseor.disconnect";
  /** How long a tab that stops on a disconnect keeps the leader's lock: messages to the other
   * tabs and the lock's next grant are not ordered, and a tab granted the lock before it heard
   * the disconnect would open the stream again. */
  const LOCK_GRACE_MS = 1000;
  /** Answers that another attempt cannot change: the client stops and reports them. */
  const FATAL_STATUSES = new Set([400, 401, 403, 404, 405, 410, 422]);
  /** How many recent ids are remembered to drop an event that arrives twice at a handover. */
  const SEEN_IDS = 256;

  /** Opens a stream; see the top of this file. */
  function connect(options) {
    return new SseorStream(options);
  }

  /* Tab sharing. The tabs of one stream (same origin, user and topics) meet on a
   * BroadcastChannel named by the stream's key, "sseor:" + its URL; a Web Lock of the same
   * name makes one of them the leader, which holds the EventSource. Every message is an
   * object whose `t` says its kind:
   *
   *   { t: "hello", types }
   *       Sent by each tab as it starts sharing, before it knows whether it will lead.
   *       `types`: the event types it listens to. Every other tab adds them to its own (so
   *       the leader's EventSource hears them, and so would a later leader's); the leader
   *       also answers with a "state".
   *   { t: "listen", type }
   *       Sent by a tab whose page calls on() with a type new to it. Every other tab adds
   *       `type` to its own, as for "hello".
   *   { t: "state", state, retryAt, error }
   *       Sent by the leader on each change of its state and in answer to a "hello". The
   *       other tabs take on `state` ("connecting", "open", "reconnecting", "closed"),
   *       `retryAt` (ms since the epoch, or null) and `error` (why it failed, or null).
   *   { t: "event", type, data, id }
   *       Sent by the leader for each event its EventSource receives. The other tabs hand it
   *       to their listeners as a MessageEvent (`id` becomes lastEventId and is kept for
   *       resuming; an id already seen is dropped).
   *
   * Only the leader's "state" and "event" are acted on: a tab that is itself the leader
   * ignores them. When the leader closes, its lock goes to a waiting tab, which opens the
   * stream from the last event id it saw and announces its state.
   */
  class SseorStream {
    constructor(options) {
      this.options = Object.assign({}, DEFAULTS, options || {});
      const o = this.options;
      this.state = "connecting";
      this.leader = false;
      this.shared = false;
      this.retryAt = null;
      this.error = null;
      this._base = streamUrl(o.url, o.user, o.topics);
      // Tabs share and persist by stream, and a stream is only known by its user: without
      // one (a token naming the user) two tabs could be two users.
      this._key = o.user ? "sseor:" + this._base.href : null;
      // A cursor the page was rendered with places the first connection; later ones go
      // on from the last event seen.
      this.lastEventId = o.cursor || (o.resume && this._key ? storage.get(this._key) : null);
      this._events = new EventTarget();
      this._stateListeners = new Set();
      this._types = new Set(["message", RESET_EVENT, DISCONNECT_EVENT]);
      this._seen = [];
      this._attempt = 0;
      this._closed = false;
      this._es = null;
      this._timer = null;
      // Set by _start() when the stream is shared among tabs.
      this._channel = null;      // the BroadcastChannel to the other tabs
      this._lockRequest = null;  // aborts the wait for (or the hold of) the leader's lock
      this._releaseLock = null;  // gives up the leader's lock, once held
      // An event without an `id:` of its own (a transient one) carries the id of the one
      // before it: it is told apart by that, and passed on without an id.
      this._onWire = (event) => {
        const own = event.lastEventId !== this._wireId;
        this._wireId = event.lastEventId;
        this._received(event.type, event.data, own ? event.lastEventId : "", true);
      };
      this._start();
    }

    /** Calls `listener(event)` for each event of `type` (a MessageEvent, like EventSource's). */
    on(type, listener) {
      this._listen(type, true);
      this._events.addEventListener(type, listener);
      return () => this._events.removeEventListener(type, listener);
    }

    /** Calls `listener(snapshot)` now and on every change of state. */
    onState(listener) {
      this._stateListeners.add(listener);
      listener(this.snapshot());
      return () => this._stateListeners.delete(listener);
    }

    /** `{state, leader, shared, retryAt, error, lastEventId}`. */
    snapshot() {
      return {
        state: this.state, leader: this.leader, shared: this.shared,
        retryAt: this.retryAt, error: this.error, lastEventId: this.lastEventId,
      };
    }

    /** Ends the stream for this tab; another tab sharing it takes it over. */
    close() {
      if (this._closed) return;
      this._closed = true;
      clearTimeout(this._timer);
      if (this._es) this._es.close();
      this._es = null;
      if (this._lockRequest) this._lockRequest.abort();
      if (this._releaseLock) this._releaseLock();
      if (this._channel) this._channel.close();
      this._setState("closed", { retryAt: null });
    }

    _start() {
      const o = this.options;
      // Another tab's stream cannot replay what was published before this tab joined it:
      // a tab that starts from a cursor holds its own.
      const canShare = o.share && !o.cursor && this._key && typeof BroadcastChannel === "function" &&
        typeof navigator !== "undefined" && navigator.locks;
      if (!canShare) {
        this._lead();
        return;
      }
      this.shared = true;
      this._channel = new BroadcastChannel(this._key);
      this._channel.onmessage = (message) => this._heard(message.data);
      this._lockRequest = new AbortController();
      // The lock is held for as long as this tab holds the stream: closing the tab releases
      // it and wakes the next tab waiting for it.
      navigator.locks.request(this._key, { signal: this._lockRequest.signal }, () => {
        if (this._closed) return undefined;
        this._lead();
        return new Promise((release) => { this._releaseLock = release; });
      }).catch((error) => {
        if (error && error.name !== "AbortError") this._fail({ message: String(error) });
      });
      this._post({ t: "hello", types: Array.from(this._types) });
    }

    _lead() {
      this.leader = true;
      this._open();
    }

    async _open() {
      if (this._closed) return;
      this._setState(this._attempt > 0 ? "reconnecting" : "connecting", { retryAt: null });
      let url;
      try {
        url = await this._connectUrl();
      } catch (failure) {
        this._afterFailure(failure);
        return;
      }
      if (this._closed) return;
      const es = new EventSource(url, { withCredentials: this.options.withCredentials });
      this._wireId = null;
      this._es = es;
      let opened = false;
      es.onopen = () => {
        opened = true;
        this._attempt = 0;
        this._setState("open", { retryAt: null, error: null });
      };
      // EventSource would reconnect by itself, but not after a 429 or 503, never with a
      // fresh ticket, and without telling when: this client reconnects instead.
      es.onerror = () => {
        if (this._es !== es) return;
        es.close();
        this._es = null;
        if (opened) this._retry(null);
        else this._diagnose().then((failure) => this._afterFailure(failure));
      };
      this._types.forEach((type) => es.addEventListener(type, this._onWire));
    }

    /** The stream's URL for the next attempt: a fresh ticket and the position to resume from. */
    async _connectUrl() {
      const url = new URL(this._base.href);
      if (this.options.token) url.searchParams.set("ticket", await this._ticket());
      if (this.lastEventId) url.searchParams.set("last_event_id", this.lastEventId);
      return url.href;
    }

    async _ticket() {
      const token = typeof this.options.token === "function"
        ? await this.options.token() : this.options.token;
      let response;
      try {
        response = await fetch(this.options.ticketUrl, {
          method: "POST",
          headers: { Authorization: "Bearer " + token },
          credentials: this.options.withCredentials ? "include" : "same-origin",
          cache: "no-store",
        });
      } catch (error) {
        throw { network: true, message: "cannot reach the server" };
      }
      if (!response.ok) throw await refusal(response);
      const body = await response.json();
      return body.ticket;
    }

    /** EventSource hides why a stream did not open: one plain request tells a refusal from an outage. */
    async _diagnose() {
      const abort = new AbortController();
      try {
        const response = await fetch(await this._connectUrl(), {
          headers: { Accept: "text/event-stream" },
          credentials: this.options.withCredentials ? "include" : "same-origin",
          cache: "no-store",
          signal: abort.signal,
        });
        if (response.ok) return { message: "the stream was interrupted" };
        return await refusal(response);
      } catch (failure) {
        return failure && failure.status ? failure : { network: true, message: "cannot reach the server" };
      } finally {
        abort.abort();
      }
    }

    _afterFailure(failure) {
      if (this._closed) return;
      if (failure.status && FATAL_STATUSES.has(failure.status)) this._fail(failure);
      else this._retry(failure);
    }

    _fail(error) {
      clearTimeout(this._timer);
      this._setState("closed", { retryAt: null, error: error });
    }

    _retry(failure) {
      this._attempt += 1;
      const o = this.options;
      const backoff = Math.min(o.maxDelay, o.minDelay * 2 ** (this._attempt - 1));
      let delay = backoff * (0.5 + Math.random()); // spread a crowd of clients
      if (failure && failure.retryAfter) delay = Math.max(delay, failure.retryAfter);
      clearTimeout(this._timer);
      this._timer = setTimeout(() => this._open(), delay);
      this._setState("reconnecting", { retryAt: Date.now() + delay, error: failure });
    }

    _listen(type, announce) {
      if (this._types.has(type)) return;
      this._types.add(type);
      if (this._es) this._es.addEventListener(type, this._onWire);
      if (announce) this._post({ t: "listen", type: type });
    }

    _received(type, data, id, fromWire) {
      if (id) {
        if (this._seen.includes(id)) return;
        this._seen.push(id);
        if (this._seen.length > SEEN_IDS) this._seen.shift();
        this.lastEventId = id;
        if (this.options.resume && this._key) storage.set(this._key, id);
      }
      if (fromWire) this._post({ t: "event", type: type, data: data, id: id });
      this._events.dispatchEvent(new MessageEvent(type, { data: data, lastEventId: id || "" }));
      if (type === DISCONNECT_EVENT) this._disconnected(data);
    }

    /** The server ended the stream. With `reconnect: true` the client reconnects as after any
     * end of its stream; otherwise this tab stops for good, and so does every other tab of
     * the stream, which hears the same event from the leader. */
    _disconnected(data) {
      let said = {};
      try { said = JSON.parse(data) || {}; } catch (_) { /* not JSON: stop all the same */ }
      if (said.reconnect === true) return;
      const release = this._releaseLock;
      this._releaseLock = null;
      this.error = { status: null, reason: "disconnected", message: said.reason || "disconnected" };
      this.close();
      if (release) setTimeout(release, LOCK_GRACE_MS);
    }

    /** A message from another tab of the same stream. */
    _heard(message) {
      if (this._closed || !message) return;
      switch (message.t) {
        case "hello":
          (message.types || []).forEach((type) => this._listen(type, false));
          if (this.leader) this._post(Object.assign({ t: "state" }, this._sharedState()));
          break;
        case "listen":
          this._listen(message.type, false);
          break;
        case "state":
          if (!this.leader) this._setState(message.state, { retryAt: message.retryAt, error: message.error });
          break;
        case "event":
          if (!this.leader) this._received(message.type, message.data, message.id, false);
          break;
      }
    }

    _sharedState() {
      return { state: this.state, retryAt: this.retryAt, error: this.error };
    }

    _setState(state, changes) {
      Object.assign(this, changes || {});
      this.state = state;
      if (this.leader) this._post(Object.assign({ t: "state" }, this._sharedState()));
      const snapshot = this.snapshot();
      this._stateListeners.forEach((listener) => listener(snapshot));
    }

    _post(message) {
      if (this._channel && !this._closed) this._channel.postMessage(message);
    }
  }

  function streamUrl(path, user, topics) {
    const url = new URL(path, typeof location !== "undefined" ? location.href : undefined);
    if (user) url.searchParams.set("user_id", user);
    Array.from(topics || []).slice().sort().forEach((topic) => url.searchParams.append("topic", topic));
    return url;
  }

  /** `{status, reason, message, retryAfter}` of an answer that is not a success. */
  async function refusal(response) {
    let body = null;
    try { body = await response.json(); } catch (_) { /* not JSON */ }
    const seconds = Number(response.headers.get("Retry-After"));
    return {
      status: response.status,
      reason: body && body.reason ? body.reason : null,
      message: body && body.error ? body.error : "HTTP " + response.status,
      retryAfter: seconds > 0 ? seconds * 1000 : null,
    };
  }

  /** localStorage that may be missing or refuse (private windows, storage disabled). */
  const storage = {
    get(key) {
      try { return root.localStorage.getItem(key + ":last-event-id"); } catch (_) { return null; }
    },
    set(key, id) {
      try { root.localStorage.setItem(key + ":last-event-id", id); } catch (_) { /* keep it in memory */ }
    },
  };

  root.Sseor = {
    connect: connect, SseorStream: SseorStream, RESET_EVENT: RESET_EVENT, DISCONNECT_EVENT: DISCONNECT_EVENT,
  };
})(typeof globalThis !== "undefined" ? globalThis : this);
