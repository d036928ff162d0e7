// Sweeps: the list, and a sweep's live leaderboard, parallel coordinates of the parameters
// against the objective (SVG drawn here), and parameter importance. A service without the
// sweeps endpoints (404) gets a note instead.
import { api, ApiError } from "./api.js";
import { h, fmt, statusBadge, table } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const s = (tag, attrs = {}) => { const el = document.createElementNS(SVG, tag); for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v); return el; };

function unavailable(ctx, err) {
  if (err instanceof ApiError && err.status === 404) {
    ctx.view.append(h("p", { id: "sweeps-unavailable", class: "muted" }, "Sweeps are not available on this service."));
    return true;
  }
  return false;
}

export function sweepsPage(ctx) {
  const ac = new AbortController();
  ctx.view.append(h("h1", {}, "Sweeps"));
  api("/v1/sweeps?limit=100", { signal: ac.signal }).then((data) => {
    ctx.view.append(data.items.length ? table(["name", "status", "method", "objective", "trials", "best"], data.items.map((w) =>
      h("tr", {}, h("td", {}, h("a", { href: `#/sweeps/${w.id}` }, w.name || w.id)), h("td", {}, statusBadge(w.status)), h("td", {}, w.method),
        h("td", {}, `${w.objective.metric} (${w.objective.mode})`), h("td", {}, Object.entries(w.trials || {}).map(([k, v]) => `${k} ${v}`).join(", ")),
        h("td", {}, w.best ? fmt(w.best.value) : ""))), { id: "sweeps-table" }) : h("p", { class: "muted", id: "sweeps-empty" }, "No sweeps yet (POST /v1/sweeps, or `netfit sweep FILE`)."));
  }).catch((err) => { if (!unavailable(ctx, err) && !ac.signal.aborted) ctx.showError(err); });
  return () => ac.abort();
}

function parallelCoordinates(trials, objective) {
  const names = [...new Set(trials.flatMap((t) => Object.keys(t.params)))];
  const axes = [...names, objective];
  const W = Math.max(520, 170 * axes.length), H = 300, pad = 40, side = 90;  // room for long parameter paths
  const svg = s("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, id: "parallel" });
  const scaled = trials.filter((t) => t.value != null);
  const scales = axes.map((a, i) => {
    const vals = scaled.map((t) => (i === axes.length - 1 ? t.value : t.params[a]));
    if (vals.every((v) => typeof v === "number")) {
      const lo = Math.min(...vals), hi = Math.max(...vals);
      return { f: (v) => (hi === lo ? 0.5 : (v - lo) / (hi - lo)), ticks: [lo, hi] };
    }
    const cats = [...new Set(vals.map(String))];
    return { f: (v) => (cats.length < 2 ? 0.5 : cats.indexOf(String(v)) / (cats.length - 1)), ticks: cats };
  });
  const x = (i) => side + (i * (W - 2 * side)) / Math.max(1, axes.length - 1);
  const y = (u) => H - pad - u * (H - 2 * pad);
  const values = scaled.map((t) => t.value);
  const best = Math.min(...values), worst = Math.max(...values);
  for (const t of scaled) {
    const pts = axes.map((a, i) => `${x(i)},${y(scales[i].f(i === axes.length - 1 ? t.value : t.params[a]))}`);
    const q = worst === best ? 0 : (t.value - best) / (worst - best);
    svg.append(s("polyline", { points: pts.join(" "), fill: "none", stroke: `hsl(${210 - 190 * q},70%,45%)`, "stroke-opacity": 0.7 }));
  }
  axes.forEach((a, i) => {
    svg.append(s("line", { x1: x(i), x2: x(i), y1: pad, y2: H - pad, stroke: "#4a5568" }));
    const label = s("text", { x: x(i), y: pad - 14, "text-anchor": "middle", "font-size": 12 }); label.textContent = a; svg.append(label);
    const [lo, hi] = [scales[i].ticks[0], scales[i].ticks[scales[i].ticks.length - 1]];
    for (const [v, u] of [[lo, 0], [hi, 1]]) { const t = s("text", { x: x(i) + 4, y: y(u) + (u ? -4 : 12), "font-size": 10, fill: "#718096" }); t.textContent = fmt(v, 3); svg.append(t); }
  });
  return svg;
}

// the leaderboard's order: best objective value first (by the sweep's mode), trials without one last
export function ranked(trials, mode) {
  const sign = mode === "max" ? -1 : 1;
  return [...trials].sort((a, b) => (a.value == null) - (b.value == null) || sign * (a.value - b.value) || a.number - b.number);
}

export function sweepPage(ctx, id) {
  const ac = new AbortController();
  let timer = null;
  const head = h("div"), board = h("div", { id: "leaderboard" }), pc = h("div", { class: "pc" }), imp = h("div", { id: "importance" });
  ctx.view.append(head, h("h2", {}, "Leaderboard"), board, h("h2", {}, "Parallel coordinates"), pc, h("h2", {}, "Parameter importance"), imp);
  const load = async () => {
    const sweep = await api(`/v1/sweeps/${id}`, { signal: ac.signal });
    const trials = (await api(`/v1/sweeps/${id}/trials?limit=200`, { signal: ac.signal })).items;
    head.replaceChildren(h("h1", {}, sweep.name || sweep.id, " ", statusBadge(sweep.status)),
      h("p", { class: "muted" }, `${sweep.method} · objective ${sweep.objective.metric} (${sweep.objective.mode}) · ${trials.length}/${sweep.max_trials} trials`,
        " · ", h("a", { href: `#/jobs?sweep=${sweep.id}` }, "its jobs")));
    const params = [...new Set(trials.flatMap((t) => Object.keys(t.params)))];
    board.replaceChildren(table(["#", "value", "status", "stop reason", "epochs", ...params, "job"], ranked(trials, sweep.objective.mode).map((t) => h("tr", {},
      h("td", {}, t.number), h("td", { class: "num" }, fmt(t.value)), h("td", {}, statusBadge(t.status)), h("td", {}, t.stop_reason || ""),
      h("td", { class: "num" }, t.epochs_completed), params.map((p) => h("td", {}, fmt(t.params[p], 3))),
      h("td", {}, h("a", { href: `#/jobs/${t.job_id}` }, "job"))))));
    pc.replaceChildren(trials.some((t) => t.value != null) ? parallelCoordinates(trials, sweep.objective.metric) : h("p", { class: "muted" }, "no finished trial yet"));
    try {
      const importance = await api(`/v1/sweeps/${id}/importance`, { signal: ac.signal });
      const entries = Object.entries(importance.importances).sort((a, b) => b[1] - a[1]);
      imp.replaceChildren(...entries.map(([k, v]) => { const bar = h("span", { class: "bar" }); bar.style.width = `${Math.round(v * 300)}px`;
        return h("div", {}, h("code", {}, k), " ", bar, ` ${(v * 100).toFixed(0)}%`); }), importance.note ? h("p", { class: "muted" }, importance.note) : null);
    } catch (err) { imp.replaceChildren(h("p", { class: "muted" }, err.message)); }
    if (!["succeeded", "failed", "cancelled"].includes(sweep.status)) timer = setTimeout(() => load().catch(() => {}), 3000);
  };
  load().catch((err) => { if (!unavailable(ctx, err) && !ac.signal.aborted) ctx.showError(err); });
  return () => { ac.abort(); clearTimeout(timer); };
}
