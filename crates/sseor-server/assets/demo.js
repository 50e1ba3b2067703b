// The demo page: connect through sseor.js, publish, and show what arrives.
"use strict";
(function () {
  const MAX_LOG = 200;
  const CHART_SECONDS = 60;
  const $ = (id) => document.getElementById(id);
  const userInput = $("user"), topicsInput = $("topics"), tokenInput = $("token");
  const connectBtn = $("connect-btn"), stateEl = $("state"), retryEl = $("retry"), roleEl = $("role");
  const logEl = $("log"), emptyEl = $("empty");
  const types = new Set(["message", "transaction.updated", "notification", Sseor.RESET_EVENT]);
  const SESSION_KEY = "sseor-demo:connection";
  // Whether streams need a credential: the server says so at /demo/settings.json, and the
  // page then asks for a token. Counts wait for the answer, since they may need a credential.
  let authRequired = false;
  let settingsKnown = false;
  fetch("/demo/settings.json", { cache: "no-store" })
    .then((res) => res.json())
    .then((settings) => {
      authRequired = settings.auth === true;
      if (authRequired) $("auth").open = true;
    })
    .catch(() => { /* the server is away: a 401 opens the token field */ })
    .finally(() => {
      settingsKnown = true;
      refreshCounts();
    });
  let stream = null;
  let connectedUser = null;
  let received = 0;
  const perSecond = new Map(); // whole second -> events received in it

  function pad(n, w) { return String(n).padStart(w || 2, "0"); }
  function clock(d) {
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + "." + pad(d.getMilliseconds(), 3);
  }
  function randomId() {
    const b = new Uint8Array(6);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }
  function compact(raw) {
    try { return JSON.stringify(JSON.parse(raw)).replace(/,"/g, ', "').replace(/":/g, '": '); } catch (_) { return raw; }
  }
  function showStatus(el, text, kind) { el.textContent = text; el.className = "status" + (kind ? " " + kind : ""); }
  function currentUser() { return connectedUser || userInput.value.trim(); }
  function token() { return tokenInput.value.trim(); }
  function describe(error) {
    if (!error) return "";
    const code = error.status ? error.status + (error.reason ? " " + error.reason : "") + ": " : "";
    return code + error.message;
  }

  // ---- the log and the chart
  function onEvent(ev) {
    const now = new Date();
    received += 1;
    const second = Math.floor(now.getTime() / 1000);
    perSecond.set(second, (perSecond.get(second) || 0) + 1);
    $("received").textContent = String(received);

    const li = document.createElement("li");
    li.dataset.type = ev.type;
    li.dataset.id = ev.lastEventId || "";
    const meta = document.createElement("div");
    meta.className = "meta";
    const t = document.createElement("span"); t.textContent = clock(now);
    const ty = document.createElement("span"); ty.className = "type"; ty.textContent = ev.type;
    const id = document.createElement("span"); id.textContent = "id " + (ev.lastEventId || "—");
    meta.append(t, ty, id);
    const pre = document.createElement("pre");
    pre.textContent = compact(ev.data);
    li.append(meta, pre);
    logEl.prepend(li);
    while (logEl.children.length > MAX_LOG) logEl.lastElementChild.remove();
    emptyEl.hidden = true;
  }

  const chart = $("chart");
  function drawChart() {
    const now = Math.floor(Date.now() / 1000);
    for (const second of perSecond.keys()) if (second <= now - CHART_SECONDS) perSecond.delete(second);
    const ratio = window.devicePixelRatio || 1;
    const width = chart.clientWidth, height = chart.clientHeight;
    if (chart.width !== Math.round(width * ratio)) chart.width = Math.round(width * ratio);
    if (chart.height !== Math.round(height * ratio)) chart.height = Math.round(height * ratio);
    const ctx = chart.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const styles = getComputedStyle(document.documentElement);
    let max = 1;
    for (const n of perSecond.values()) max = Math.max(max, n);
    const bar = width / CHART_SECONDS;
    ctx.fillStyle = styles.getPropertyValue("--border");
    ctx.fillRect(0, height - 1, width, 1);
    ctx.fillStyle = styles.getPropertyValue("--accent");
    for (let i = 0; i < CHART_SECONDS; i++) {
      const n = perSecond.get(now - CHART_SECONDS + 1 + i) || 0;
      if (n === 0) continue;
      const h = Math.max(2, (height - 4) * n / max);
      ctx.fillRect(i * bar + 1, height - h, Math.max(1, bar - 2), h);
    }
    $("rate").textContent = String(perSecond.get(now - 1) || 0);
  }
  setInterval(drawChart, 1000);
  window.addEventListener("resize", drawChart);
  drawChart();

  // ---- the connection
  function listen(type) {
    if (types.has(type)) return;
    types.add(type);
    if (stream) stream.on(type, onEvent);
  }

  function showState(s) {
    stateEl.textContent = s.state;
    stateEl.dataset.state = s.state;
    stateEl.dataset.leader = String(s.leader);
    if (stream && s.state !== "closed") {
      roleEl.hidden = false;
      roleEl.textContent = s.leader
        ? (s.shared ? "This tab holds the connection; other tabs of this user share it." : "This tab holds its own connection.")
        : "Shared: another tab of this user holds the connection.";
    } else {
      roleEl.hidden = true;
    }
    showStatus($("connect-status"), describe(s.error), s.error && s.state === "closed" ? "err" : "");
    if (s.error && s.error.status === 401) $("auth").open = true;
    if (s.state === "open") refreshCounts(); // counted from now on
    tickRetry();
  }

  function tickRetry() {
    const s = stream && stream.snapshot();
    if (s && s.state === "reconnecting" && s.retryAt) {
      const left = Math.max(0, s.retryAt - Date.now()) / 1000;
      retryEl.textContent = left > 0 ? "retrying in " + left.toFixed(1) + " s" : "retrying…";
      retryEl.hidden = false;
    } else {
      retryEl.hidden = true;
    }
  }
  setInterval(tickRetry, 100);

  function connect() {
    const user = userInput.value.trim();
    if (!user) { userInput.focus(); return; }
    const topics = topicsInput.value.split(",").map((s) => s.trim()).filter(Boolean);
    connectedUser = user;
    stream = Sseor.connect({ user: user, topics: topics, token: token() ? token : null });
    types.forEach((type) => stream.on(type, onEvent));
    stream.onState(showState);
    connectBtn.textContent = "Disconnect";
    userInput.disabled = topicsInput.disabled = tokenInput.disabled = true;
    // A reload reconnects by itself (and resumes); a token is never kept.
    if (!token()) sessionStorage.setItem(SESSION_KEY, JSON.stringify({ user: user, topics: topicsInput.value }));
    refreshCounts();
  }

  function disconnect() {
    if (stream) stream.close();
    stream = null;
    connectedUser = null;
    showState({ state: "closed", leader: false, error: null });
    connectBtn.textContent = "Connect";
    userInput.disabled = topicsInput.disabled = tokenInput.disabled = false;
    sessionStorage.removeItem(SESSION_KEY);
    refreshCounts();
  }

  $("connect-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (stream) disconnect(); else connect();
  });

  // ---- publishing
  async function publish(body, statusEl) {
    showStatus(statusEl, "Publishing…");
    const headers = { "Content-Type": "application/json" };
    if (token()) headers.Authorization = "Bearer " + token();
    try {
      const res = await fetch("/api/v1/publish", { method: "POST", headers: headers, body: JSON.stringify(body) });
      let json = null;
      try { json = await res.json(); } catch (_) { /* not JSON */ }
      if (!res.ok) {
        showStatus(statusEl, "Refused (" + res.status + "): " + (json && json.error ? json.error : res.statusText), "err");
        return;
      }
      const reach = typeof json.delivered_locally === "number"
        ? "queued for " + json.delivered_locally + " connection(s) here"
        : "reached " + json.instances + " instance(s)";
      showStatus(statusEl, "Published " + json.id + ": " + reach + ".", "ok");
      refreshCounts();
    } catch (err) {
      showStatus(statusEl, "Cannot reach the server: " + err.message, "err");
    }
  }

  $("deposit-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const status = $("deposit-status");
    const user = currentUser();
    const amount = Number($("amount").value);
    if (!user) { showStatus(status, "Enter a user id first.", "err"); return; }
    if (!Number.isFinite(amount)) { showStatus(status, "Enter a valid amount.", "err"); return; }
    publish({
      user_id: user,
      event: { type: "transaction.updated",
        data: { transaction_id: "txn_" + randomId(), status: "completed", amount: amount } },
    }, status);
  });

  const targetSel = $("target"), topicLabel = $("topic-label");
  targetSel.addEventListener("change", () => { topicLabel.hidden = targetSel.value !== "topic"; });

  $("publish-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const status = $("publish-status");
    const type = $("etype").value.trim();
    if (!type) { showStatus(status, "Event type is required.", "err"); return; }
    let data;
    try { data = JSON.parse($("edata").value); } catch (err) {
      showStatus(status, "Invalid JSON: " + err.message, "err"); return;
    }
    if (data === null || typeof data !== "object" || Array.isArray(data)) {
      showStatus(status, "Data must be a JSON object, e.g. {\"key\": \"value\"}.", "err"); return;
    }
    const body = { event: { type: type, data: data } };
    if (targetSel.value === "user") {
      const user = currentUser();
      if (!user) { showStatus(status, "Enter a user id first.", "err"); return; }
      body.user_id = user;
    } else if (targetSel.value === "topic") {
      const topic = $("topic").value.trim();
      if (!topic) { showStatus(status, "Enter a topic.", "err"); return; }
      body.topic = topic;
    }
    listen(type);
    publish(body, status);
  });

  $("clear").addEventListener("click", () => { logEl.replaceChildren(); emptyEl.hidden = false; });

  // ---- connection counts
  /** Whether a JWT claims the publish right (read, not verified: it only spares a refused request). */
  function mayPublish(jwt) {
    try {
      const payload = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(payload)).publish === true;
    } catch (_) {
      return Boolean(jwt); // not a JWT: perhaps the publish token itself
    }
  }

  // With authentication on, counts need a publisher's credential: after a refusal the page
  // stops asking until the token or the connection changes.
  let polling = false;
  let countsRefusedFor = null;
  async function refreshCounts() {
    const user = currentUser();
    const credential = token();
    if (!settingsKnown || polling || !user || (authRequired && !mayPublish(credential)) || countsRefusedFor === user + "\n" + credential) return;
    polling = true;
    const headers = credential ? { Authorization: "Bearer " + credential } : {};
    let json = null;
    try {
      const res = await fetch("/api/v1/connections?user_id=" + encodeURIComponent(user), { cache: "no-store", headers: headers });
      if (res.status === 401 || res.status === 403) countsRefusedFor = user + "\n" + credential;
      if (res.ok) json = await res.json();
    } catch (_) {
      /* the server is away: shown as unknown */
    } finally {
      polling = false;
    }
    const refused = countsRefusedFor === user + "\n" + credential;
    for (const id of ["count-user", "count-total"]) {
      $(id).title = refused ? "counts need a token with the publish right" : "";
    }
    $("count-user").textContent = json ? String(json.user) : "–";
    $("count-total").textContent = json ? String(json.total) : "–";
    // Other instances hold streams too; a lower figure is presence not yet refreshed.
    const cluster = json && typeof json.cluster_total === "number" && json.cluster_total > json.total;
    $("cluster").hidden = !cluster;
    if (cluster) $("count-cluster").textContent = String(json.cluster_total);
  }
  setInterval(refreshCounts, 2000);

  // ---- a reload resumes: the same user, the events missed while away
  const params = new URLSearchParams(location.search);
  let saved = null;
  try { saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null"); } catch (_) { /* ignore */ }
  if (params.get("user")) saved = { user: params.get("user"), topics: params.get("topics") || "" };
  if (saved && saved.user) {
    userInput.value = saved.user;
    topicsInput.value = saved.topics || "";
    if (params.get("connect") !== "0") connect();
  }
})();
