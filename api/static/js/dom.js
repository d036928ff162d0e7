// A tiny element builder: text is always set as text (nothing a user sent becomes HTML).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

// a count or a parameter as given (16, 0.01, "relu")
export const fmt = (v, digits = 4) =>
  v == null ? "" : typeof v === "number" ? (Number.isInteger(v) ? String(v) : String(+v.toPrecision(digits))) : String(v);

// a measured value (a loss, an accuracy, a gradient norm): always 4 significant digits, so a
// column reads 1.000 beside 0.006364 (not 1), and 1.234e-5 rather than 0 below 0.001
export const num = (v) => (v == null || typeof v !== "number" || !Number.isFinite(v) ? "" :
  v === 0 ? "0.000" : Math.abs(v) < 0.001 ? v.toExponential(3) : v.toPrecision(4));

// seconds as people read them: 42 s, 3 min 5 s, 1 h 12 min
export const duration = (s) => {
  if (s == null || !Number.isFinite(s)) return "";
  s = Math.max(0, Math.round(s));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
};

export const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");

export const statusBadge = (s) => h("span", { class: `status status-${s}`, dataset: { status: s } }, s);

// a job's or trial's badge: a trial the pruner stopped ends "succeeded" with stop reason
// "pruned": it shows as pruned, its own badge
export const jobBadge = (j) => statusBadge(j.stop_reason === "pruned" ? "pruned" : j.status);

// a table in a box that scrolls sideways on a narrow screen (the page itself never does)
export function table(columns, rows, attrs = {}) {
  // tabindex: a box that scrolls is reached by the keyboard too
  return h("div", { class: "table-box", tabindex: "0" }, h("table", attrs,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows)));
}

// a summary row's layer: its type with its own activation (a Keras Dense's "relu"), and for a
// graph's node its name and the nodes it takes
export const layerType = (l) => (l.activation ? `${l.type} + ${l.activation}` : l.type);
export const layerLabel = (l) => (l.name ? `${l.name} (${layerType(l)}) ← ${(l.inputs || []).join(", ")}` : layerType(l));

export function debounce(fn, ms) {
  let t;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}
