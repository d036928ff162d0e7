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

export const fmt = (v, digits = 4) =>
  v == null ? "" : typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toPrecision(digits)) : String(v);

export const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");

export const statusBadge = (s) => h("span", { class: `status status-${s}`, dataset: { status: s } }, s);

export function table(columns, rows, attrs = {}) {
  return h("table", attrs,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows));
}

// a summary row's layer: its type, and for a graph's node its name and the nodes it takes
export const layerLabel = (l) => (l.name ? `${l.name} (${l.type}) ← ${(l.inputs || []).join(", ")}` : l.type);

export function debounce(fn, ms) {
  let t;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}
