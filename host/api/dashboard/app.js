// The Wasmbed dashboard: plain JavaScript, no framework, no build step.
//
// Every API call carries the token from the token field (kept in
// localStorage) as `Authorization: Bearer`. Live updates come from the
// Server-Sent Events stream `/api/v1/events`, which takes the token as
// `?access_token=` because EventSource cannot send headers; each `change`
// event names the kind that changed and the page fetches that list again.
"use strict";

const TOKEN_KEY = "wasmbed.token";
const WINDOW_MS = 10 * 60 * 1000;
const PHASES = ["Pending", "Transferring", "Installed", "Running", "Stopped", "Failed", "Removed"];
const SERIES = [
  { key: "connected", label: "Connected devices", color: "#1f6feb" },
  { key: "Pending", label: "Pending", color: "#9a6700" },
  { key: "Transferring", label: "Transferring", color: "#bf8700" },
  { key: "Installed", label: "Installed", color: "#8250df" },
  { key: "Running", label: "Running", color: "#1a7f37" },
  { key: "Stopped", label: "Stopped", color: "#57606a" },
  { key: "Failed", label: "Failed", color: "#cf222e" },
];
const SVG_NS = "http://www.w3.org/2000/svg";

const state = {
  token: "",
  devices: [],
  applications: [],
  gateways: [],
  samples: [],
  results: new Map(), // application name -> its execution results, newest first
  lastResults: new Map(), // application name -> its status' signature when fetched
  source: null,
  retry: 1000,
  retryTimer: null,
  pending: new Set(),
  refetchTimer: null,
};

// --- DOM helpers -----------------------------------------------------------

function $(id) {
  return document.getElementById(id);
}

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function svg(tag, attrs) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

function fillBody(tbody, rows, columns, emptyText) {
  tbody.replaceChildren(
    ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: columns, class: "empty", text: emptyText }))])
  );
}

function time(ms) {
  if (!ms) return "never";
  const d = new Date(ms);
  const ago = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return `${d.toLocaleTimeString()} (${ago} s ago)`;
}

function labels(map) {
  const entries = Object.entries(map || {});
  if (!entries.length) return "—";
  return entries.map(([k, v]) => h("span", { class: "label mono", text: `${k}=${v}` }));
}

// --- errors ----------------------------------------------------------------

// An error from something the user did ("action": deploying, deleting)
// stays until the user acts again or dismisses it; one from the background
// (fetching, reconnecting) goes once the background succeeds again.
function showError(title, detail, source = "background") {
  $("error-title").textContent = title;
  $("error-detail").textContent = detail || "";
  $("error").hidden = false;
  state.errorSource = source;
}

function clearError(source) {
  if (source === "background" && state.errorSource === "action") return;
  $("error").hidden = true;
}

class ApiError extends Error {
  constructor(title, detail, status) {
    super(`${title}: ${detail}`);
    this.title = title;
    this.detail = detail;
    this.status = status;
  }
}

async function api(method, path, body) {
  if (!state.token) throw new ApiError("No token", "enter an API token above", 0);
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError("Network error", `${method} ${path}: ${e.message}`, 0);
  }
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch (_) {
    json = null;
  }
  if (!response.ok) {
    // RFC 7807 problem documents: title and detail.
    const title = (json && json.title) || `${response.status} ${response.statusText}`;
    const detail = (json && json.detail) || text || `${method} ${path} failed`;
    throw new ApiError(title, detail, response.status);
  }
  return json;
}

function report(e, source = "background") {
  if (e instanceof ApiError) showError(e.title, e.detail, source);
  else showError("Error", String(e && e.message ? e.message : e), source);
  console.error(e);
}

// --- fetching --------------------------------------------------------------

const LISTS = {
  Device: ["devices", "/api/v1/devices"],
  Application: ["applications", "/api/v1/applications"],
  Gateway: ["gateways", "/api/v1/gateways"],
};

async function refetch(kinds) {
  try {
    await Promise.all(
      kinds.map(async (kind) => {
        const [field, path] = LISTS[kind];
        state[field] = (await api("GET", path)) || [];
      })
    );
    clearError("background");
  } catch (e) {
    report(e);
  }
  if (kinds.includes("Application")) await fetchResults();
  sample();
  render();
}

function refetchAll() {
  return refetch(Object.keys(LISTS));
}

// Changes come in bursts: fetch each changed kind once per burst.
function scheduleRefetch(kind) {
  if (!LISTS[kind]) return;
  state.pending.add(kind);
  if (state.refetchTimer) return;
  state.refetchTimer = setTimeout(() => {
    const kinds = [...state.pending];
    state.pending.clear();
    state.refetchTimer = null;
    refetch(kinds);
  }, 150);
}

// --- live updates ----------------------------------------------------------

function setLive(status) {
  const el = $("live-status");
  el.dataset.state = status;
  el.textContent = { live: "live", reconnecting: "reconnecting…", offline: "offline" }[status] || status;
}

function connect() {
  if (state.source) state.source.close();
  clearTimeout(state.retryTimer);
  if (!state.token) {
    setLive("offline");
    return;
  }
  const source = new EventSource(`/api/v1/events?access_token=${encodeURIComponent(state.token)}`);
  state.source = source;
  source.addEventListener("ready", () => {
    state.retry = 1000;
    setLive("live");
    refetchAll();
  });
  source.addEventListener("change", (event) => {
    try {
      const change = JSON.parse(event.data);
      scheduleRefetch(change.kind);
    } catch (e) {
      console.error("bad change event", event.data, e);
    }
  });
  source.onerror = () => {
    // EventSource retries by itself only in some cases (not after a 401):
    // close and retry with a growing delay, checking the token meanwhile.
    source.close();
    if (state.source !== source) return;
    state.source = null;
    setLive("reconnecting");
    const delay = state.retry;
    state.retry = Math.min(state.retry * 2, 30000);
    state.retryTimer = setTimeout(async () => {
      try {
        await api("GET", "/api/v1/gateways");
      } catch (e) {
        report(e);
      }
      connect();
    }, delay);
  };
}

// --- results and chart samples ---------------------------------------------

// Each application's results are fetched again when its status changed
// (counts, phases, deployments): results are stored before the counts.
async function fetchResults() {
  const names = new Set();
  const fetches = [];
  for (const app of state.applications) {
    const name = app.metadata.name;
    names.add(name);
    const signature = JSON.stringify(app.status || {});
    if (state.lastResults.get(name) === signature) continue;
    fetches.push(
      api("GET", `/api/v1/applications/${encodeURIComponent(name)}/results`)
        .then((results) => {
          state.results.set(name, results || []);
          state.lastResults.set(name, signature);
        })
        .catch((e) => {
          // Deleted meanwhile: its results go with it.
          if (e instanceof ApiError && e.status === 404) state.results.delete(name);
          else report(e);
        })
    );
  }
  await Promise.all(fetches);
  for (const name of [...state.results.keys()]) {
    if (!names.has(name)) {
      state.results.delete(name);
      state.lastResults.delete(name);
    }
  }
}

// What an execution came to: its returned values or its trap.
function outcomeText(r) {
  if (r.trap) return `trap ${r.trap}`;
  const values = (r.returned || []).flatMap((v) => Object.entries(v).map(([k, x]) => `${k}:${x}`));
  return values.length ? values.join(", ") : "returned";
}

function sample() {
  const now = Date.now();
  const s = { t: now, connected: 0 };
  for (const p of PHASES) s[p] = 0;
  for (const d of state.devices) if (d.status && d.status.presence === "connected") s.connected++;
  for (const app of state.applications) {
    for (const d of (app.status && app.status.deployments) || []) s[d.phase] = (s[d.phase] || 0) + 1;
  }
  state.samples.push(s);
  while (state.samples.length && state.samples[0].t < now - WINDOW_MS) state.samples.shift();
}

// --- rendering -------------------------------------------------------------

// The WebAssembly runtime a device reported, which tells its firmware
// (wasmi: the bare-metal Rust one; wamr: the Zephyr one).
function runtimeText(runtime) {
  if (!runtime || !runtime.kind) return "—";
  return runtime.version ? `${runtime.kind} ${runtime.version}` : runtime.kind;
}

function renderDevices() {
  const rows = state.devices.map((d) => {
    const status = d.status || {};
    const presence = status.presence || "unknown";
    return h(
      "tr",
      { "data-testid": "device-row", "data-name": d.metadata.name, "data-presence": presence },
      h("th", { scope: "row", class: "mono", text: d.metadata.name }),
      h("td", {}, labels(d.metadata.labels)),
      h("td", { class: `presence-${presence}`, "data-testid": "device-presence", text: presence }),
      h("td", {
        class: "mono",
        "data-testid": "device-runtime",
        "data-runtime": status.runtime ? status.runtime.kind : "",
        title: status.runtime ? "WebAssembly runtime reported at the device's last session start" : null,
        text: runtimeText(status.runtime),
      }),
      h("td", { text: time(status.last_heartbeat) }),
      h("td", { class: "mono", text: d.spec.gateway }),
      h(
        "td",
        {},
        (status.deployments || []).length
          ? h(
              "ul",
              { class: "deployments" },
              status.deployments.map((x) =>
                h("li", {}, `${x.application}: `, h("span", { class: `phase-${x.phase}`, text: x.phase }))
              )
            )
          : "—"
      )
    );
  });
  fillBody($("devices-body"), rows, 7, "no devices");
}

function selectorText(selector) {
  const parts = Object.entries((selector && selector.match_labels) || {}).map(([k, v]) => `${k}=${v}`);
  if (selector && selector.names && selector.names.length) parts.push(`names: ${selector.names.join(", ")}`);
  return parts.join(", ") || "(nothing)";
}

// Whether a deployment runs the application's current module and limits
// (one placed before an update is replaced by the controller).
function isCurrent(deployment, status) {
  return !deployment.revision || !status.revision || deployment.revision === status.revision;
}

function renderApplications() {
  const rows = state.applications.map((app) => {
    const status = app.status || {};
    const deployments = status.deployments || [];
    const name = app.metadata.name;
    return h(
      "tr",
      {
        "data-testid": "application-row",
        "data-name": name,
        "data-results": status.results || 0,
        "data-deleting": app.metadata.deleting ? "true" : "false",
        "data-revision": status.revision || "",
      },
      h("th", { scope: "row", class: "mono" }, name, app.metadata.deleting ? " (deleting)" : ""),
      h("td", { class: "mono", text: selectorText(app.spec.selector) }),
      h(
        "td",
        {},
        `${app.spec.module.size} bytes, `,
        h("code", { text: `${app.spec.limits.entry}()` }),
        h("br"),
        h("small", { class: "mono", text: `sha256 ${app.spec.module.sha256.slice(0, 12)}…` }),
        status.revision ? h("br") : null,
        status.revision ? h("small", { class: "mono", text: `revision ${status.revision}` }) : null
      ),
      h("td", { "data-testid": "application-results", text: status.results || 0 }),
      h(
        "td",
        {},
        deployments.length
          ? h(
              "ul",
              { class: "deployments" },
              deployments.map((d) =>
                h(
                  "li",
                  {
                    "data-testid": "deployment",
                    "data-device": d.device,
                    "data-phase": d.phase,
                    "data-results": d.results || 0,
                    "data-current": isCurrent(d, status) ? "true" : "false",
                  },
                  h("span", { class: "mono", text: d.device }),
                  ": ",
                  h("span", { class: `phase-${d.phase}`, text: d.phase }),
                  ` (${d.results || 0} results)`,
                  isCurrent(d, status) ? null : h("span", { class: "reason", text: " previous revision, being replaced" }),
                  d.reason ? h("div", { class: "reason", text: d.reason }) : null
                )
              )
            )
          : "no matching device"
      ),
      h(
        "td",
        {},
        h("button", {
          type: "button",
          "aria-label": `Delete application ${name}`,
          text: "Delete",
          disabled: app.metadata.deleting,
          onclick: () => removeApplication(name),
        })
      )
    );
  });
  fillBody($("applications-body"), rows, 6, "no applications");
}

function renderResults() {
  const all = [];
  for (const [application, results] of state.results) {
    for (const r of results) all.push({ application, ...r });
  }
  all.sort((a, b) => b.received_at - a.received_at || b.invocation - a.invocation);
  const rows = all.slice(0, 50).map((r) =>
    h(
      "tr",
      {
        "data-testid": "result-row",
        "data-application": r.application,
        "data-device": r.device,
        "data-outcome": r.trap ? "trapped" : "returned",
      },
      h("td", { text: r.received_at ? new Date(r.received_at).toLocaleTimeString() : "" }),
      h("td", { class: "mono", text: r.application }),
      h("td", { class: "mono", text: r.device }),
      h("td", { text: r.invocation }),
      h("td", { class: r.trap ? "mono trap" : "mono", "data-testid": "result-outcome", text: outcomeText(r) }),
      h("td", { text: r.fuel_used }),
      h("td", {
        class: "mono",
        "data-testid": "result-log",
        text: (r.logs && r.logs.length ? r.logs[0] : "") + (r.logs && r.logs.length > 1 ? " …" : ""),
      })
    )
  );
  fillBody($("results-body"), rows, 7, "no results yet");
}

function renderGateways() {
  const rows = state.gateways.map((g) => {
    const status = g.status || {};
    return h(
      "tr",
      { "data-testid": "gateway-row", "data-name": g.metadata.name },
      h("th", { scope: "row", class: "mono", text: g.metadata.name }),
      h("td", { class: "mono", text: g.spec.http_endpoint }),
      h("td", { class: status.reachable ? "reachable-yes" : "reachable-no", text: status.reachable ? "yes" : "no" }),
      h("td", { text: time(status.last_seen) }),
      h("td", { class: "reason", text: status.reason || "" })
    );
  });
  fillBody($("gateways-body"), rows, 5, "no gateways");
}

function renderChart() {
  const chart = $("chart");
  const W = 640, H = 240, L = 36, R = 10, T = 10, B = 24;
  const now = Date.now();
  const t0 = now - WINDOW_MS;
  const samples = state.samples;
  let max = 1;
  for (const s of samples) for (const { key } of SERIES) max = Math.max(max, s[key] || 0);
  max = Math.ceil(max / 4) * 4; // whole numbers on the four grid lines
  const x = (t) => L + ((t - t0) / WINDOW_MS) * (W - L - R);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const title = chart.querySelector("title");
  chart.replaceChildren(title);
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    chart.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    const label = svg("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end" });
    label.textContent = v;
    chart.append(label);
  }
  for (let m = 10; m >= 0; m -= 2) {
    const label = svg("text", { x: x(now - m * 60000), y: H - 6, "text-anchor": "middle" });
    label.textContent = m ? `-${m} min` : "now";
    chart.append(label);
  }
  for (const { key, color } of SERIES) {
    if (!samples.length) break;
    // A step line: each value holds until the next sample, and until now.
    let d = "";
    samples.forEach((s, i) => {
      const px = x(Math.max(s.t, t0)).toFixed(1);
      const py = y(s[key] || 0).toFixed(1);
      d += i === 0 ? `M${px},${py}` : `H${px}V${py}`;
    });
    d += `H${x(now).toFixed(1)}`;
    chart.append(svg("path", { d, fill: "none", stroke: color, "stroke-width": 2, "data-series": key }));
  }
  const last = samples[samples.length - 1];
  $("chart-summary").textContent = last
    ? `Now: ${SERIES.map(({ key, label }) => `${label} ${last[key] || 0}`).join(", ")}.`
    : "No samples yet.";
}

function renderLegend() {
  $("chart-legend").replaceChildren(
    ...SERIES.map(({ label, color }) => {
      const swatch = svg("svg", { width: 18, height: 6, "aria-hidden": "true", class: "swatch" });
      swatch.append(svg("line", { x1: 0, x2: 18, y1: 3, y2: 3, stroke: color, "stroke-width": 4 }));
      return h("li", {}, swatch, label);
    })
  );
}

function render() {
  renderDevices();
  renderApplications();
  renderResults();
  renderGateways();
  renderChart();
}

// --- actions ---------------------------------------------------------------

async function removeApplication(name) {
  if (!confirm(`Delete application ${name}? Its deployments are removed from the devices.`)) return;
  try {
    await api("DELETE", `/api/v1/applications/${encodeURIComponent(name)}`);
    clearError();
  } catch (e) {
    report(e, "action");
  }
  refetch(["Application"]);
}

function parseSelector(text) {
  const labels = {};
  for (const term of text.split(",").map((t) => t.trim()).filter(Boolean)) {
    const i = term.indexOf("=");
    if (i <= 0) throw new ApiError("Invalid selector", `"${term}" is not key=value`, 0);
    labels[term.slice(0, i).trim()] = term.slice(i + 1).trim();
  }
  return labels;
}

function parseArgs(text) {
  return text
    .split(",")
    .map((t) => t.trim())
    .filter(Boolean)
    .map((term) => {
      const [type, value] = term.includes(":") ? term.split(":", 2) : ["i32", term];
      const t = type.trim().toLowerCase();
      const v = Number(value.trim());
      if (!["i32", "i64", "f32", "f64"].includes(t) || value.trim() === "" || Number.isNaN(v)) {
        throw new ApiError("Invalid argument", `"${term}" is not a number or type:number (i32, i64, f32, f64)`, 0);
      }
      if (t.startsWith("i") && !Number.isInteger(v)) {
        throw new ApiError("Invalid argument", `"${term}": ${t} needs an integer`, 0);
      }
      return { [t]: v };
    });
}

function base64(bytes) {
  let binary = "";
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + chunk));
  }
  return btoa(binary);
}

async function deploy(event) {
  event.preventDefault();
  const status = $("deploy-status");
  const button = $("deploy-submit");
  button.disabled = true;
  status.textContent = "Deploying…";
  try {
    const file = $("deploy-module").files[0];
    if (!file) throw new ApiError("No module", "choose a .wasm file", 0);
    const bytes = new Uint8Array(await file.arrayBuffer());
    const name = $("deploy-name").value.trim();
    const body = {
      metadata: { name },
      spec: {
        module: base64(bytes),
        limits: {
          fuel: Number($("deploy-fuel").value),
          memory_pages: Number($("deploy-memory").value),
          entry: $("deploy-entry").value.trim(),
          args: parseArgs($("deploy-args").value),
        },
        selector: { match_labels: parseSelector($("deploy-selector").value) },
      },
    };
    const created = await api("POST", "/api/v1/applications", body);
    status.textContent = `Application ${created.metadata.name} created (${bytes.length} bytes).`;
    clearError();
    refetch(["Application"]);
  } catch (e) {
    status.textContent = "Not deployed.";
    report(e, "action");
  } finally {
    button.disabled = false;
  }
}

function useToken(event) {
  event.preventDefault();
  state.token = $("token").value.trim();
  if (state.token) localStorage.setItem(TOKEN_KEY, state.token);
  else localStorage.removeItem(TOKEN_KEY);
  clearError();
  state.retry = 1000;
  connect();
}

function start() {
  $("token-form").addEventListener("submit", useToken);
  $("deploy-form").addEventListener("submit", deploy);
  $("error-dismiss").addEventListener("click", clearError);
  renderLegend();
  state.token = localStorage.getItem(TOKEN_KEY) || "";
  $("token").value = state.token;
  render();
  connect();
  // Keep the chart's time axis moving and the "ago" texts fresh.
  setInterval(() => {
    if (state.token) sample();
    render();
  }, 10000);
}

document.addEventListener("DOMContentLoaded", start);
