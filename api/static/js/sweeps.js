// Sweeps: the list, and a sweep's live leaderboard, parallel coordinates of the parameters
// against the objective (SVG drawn here, a log axis for log-uniform parameters, a colour key),
// and parameter importance with the number of trials it rests on.
import { api } from "./api.js";
import { h, fmt, num, statusBadge, jobBadge, table } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const s = (tag, attrs = {}) => { const el = document.createElementNS(SVG, tag); for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v); return el; };
const TERMINAL = ["succeeded", "failed", "cancelled"];

// "4 succeeded, 20 pruned" from a sweep's counts by status (pruned trials also count as succeeded there)
export function trialCounts(trials) {
  const t = { ...(trials || {}) };
  if (t.pruned && t.succeeded != null) t.succeeded -= t.pruned;  // a pruned trial ends "succeeded": counted once, as pruned
  return Object.entries(t).filter(([, v]) => v > 0).map(([k, v]) => `${v} ${k === "succeeded" ? "finished" : k}`).join(", ");
}

export function sweepsPage(ctx) {
  const ac = new AbortController();
  ctx.view.append(h("h1", {}, "Sweeps"));
  api("/v1/sweeps?limit=100", { signal: ac.signal }).then((data) => {
    ctx.view.append(data.items.length ? table(["name", "status", "method", "objective", "trials", "best"], data.items.map((w) =>
      h("tr", {}, h("td", {}, h("a", { href: `#/sweeps/${w.id}` }, w.name || w.id)), h("td", {}, statusBadge(w.status)), h("td", {}, w.method),
        h("td", {}, `${w.objective.metric} (${w.objective.mode})`), h("td", {}, trialCounts(w.trials)),
        h("td", { class: "num metric" }, w.best ? num(w.best.value) : ""))), { id: "sweeps-table" }) : h("p", { class: "muted", id: "sweeps-empty" }, "No sweeps yet (POST /v1/sweeps, or `netfit sweep FILE`)."));
  }).catch((err) => { if (!ac.signal.aborted) ctx.showError(err); });
  return () => ac.abort();
}

// a parameter drawn on a log axis: its sweep definition says log_uniform (the learning rate
// from 1e-5 to 0.3 on a linear axis puts every good trial on one point)
const isLog = (def) => def && typeof def === "object" && /log/.test(String(def.distribution || def.type || ""));

function parallelCoordinates(trials, objective, mode, defs) {
  const names = [...new Set(trials.flatMap((t) => Object.keys(t.params)))];
  const axes = [...names, objective];
  const W = Math.max(520, 170 * axes.length), H = 330, pad = 40, side = 90;  // room for long parameter paths
  const svg = s("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, id: "parallel", role: "img", "aria-label": `parallel coordinates of ${names.join(", ")} against ${objective}` });
  const scaled = trials.filter((t) => t.value != null);
  const scales = axes.map((a, i) => {
    const vals = scaled.map((t) => (i === axes.length - 1 ? t.value : t.params[a]));
    if (vals.every((v) => typeof v === "number")) {
      const log = i < axes.length - 1 && isLog(defs[a]) && vals.every((v) => v > 0);
      const tf = log ? Math.log10 : (v) => v;
      const lo = Math.min(...vals), hi = Math.max(...vals), tlo = tf(lo), thi = tf(hi);
      return { log, f: (v) => (thi === tlo ? 0.5 : (tf(v) - tlo) / (thi - tlo)), ticks: [lo, hi] };
    }
    const cats = [...new Set(vals.map(String))];
    return { f: (v) => (cats.length < 2 ? 0.5 : cats.indexOf(String(v)) / (cats.length - 1)), ticks: cats };
  });
  svg.dataset.logAxes = axes.filter((_, i) => scales[i].log).join(",");
  const x = (i) => side + (i * (W - 2 * side)) / Math.max(1, axes.length - 1);
  const y = (u) => H - 60 - u * (H - 60 - pad);
  const values = scaled.map((t) => t.value);
  const lo = Math.min(...values), hi = Math.max(...values);
  const [best, worst] = mode === "max" ? [hi, lo] : [lo, hi];
  const color = (q) => `hsl(${210 - 190 * q},70%,45%)`;  // blue: best, red: worst
  for (const t of scaled) {
    const pts = axes.map((a, i) => `${x(i)},${y(scales[i].f(i === axes.length - 1 ? t.value : t.params[a]))}`);
    const q = worst === best ? 0 : (t.value - best) / (worst - best);
    svg.append(s("polyline", { points: pts.join(" "), fill: "none", stroke: color(q), "stroke-opacity": 0.7 }));
  }
  const text = (attrs, content) => { const t = s("text", attrs); t.textContent = content; svg.append(t); };
  axes.forEach((a, i) => {
    svg.append(s("line", { x1: x(i), x2: x(i), y1: pad, y2: H - 60, stroke: "#4a5568" }));
    text({ x: x(i), y: pad - 14, "text-anchor": "middle", "font-size": 12 }, scales[i].log ? `${a} (log)` : a);
    const ticks = scales[i].ticks;
    // the ends' values inside the axis (below its top, above its bottom): clear of the axis title
    for (const [v, u] of [[ticks[0], 0], [ticks[ticks.length - 1], 1]]) text({ x: x(i) + 4, y: y(u) + (u ? 12 : -4), "font-size": 10, fill: "#4a5568" }, fmt(v, 3));
  });
  // the colour key: what blue and red mean
  const gradient = s("linearGradient", { id: "pc-key" });
  for (const q of [0, 0.5, 1]) gradient.append(s("stop", { offset: `${q * 100}%`, "stop-color": color(q) }));
  const defsEl = s("defs"); defsEl.append(gradient); svg.append(defsEl);
  svg.append(s("rect", { x: side, y: H - 26, width: 160, height: 10, fill: "url(#pc-key)" }));
  text({ x: side - 6, y: H - 17, "text-anchor": "end", "font-size": 11, fill: "#1a202c", id: "pc-key-best" }, `best ${num(best)}`);
  text({ x: side + 166, y: H - 17, "font-size": 11, fill: "#1a202c", id: "pc-key-worst" }, `worst ${num(worst)} (${objective})`);
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
  const head = h("div"), board = h("div", { id: "leaderboard" }), pc = h("div", { class: "pc", tabindex: "0" }), imp = h("div", { id: "importance" });
  ctx.view.append(head, h("h2", {}, "Leaderboard"), board, h("h2", {}, "Parallel coordinates"), pc, h("h2", {}, "Parameter importance"), imp);
  const load = async () => {
    const sweep = await api(`/v1/sweeps/${id}`, { signal: ac.signal });
    const trials = (await api(`/v1/sweeps/${id}/trials?limit=200`, { signal: ac.signal })).items;
    head.replaceChildren(h("h1", {}, sweep.name || sweep.id, " ", statusBadge(sweep.status)),
      h("p", { class: "muted", id: "sweep-line" }, `${sweep.method} · objective ${sweep.objective.metric} (${sweep.objective.mode}) · ${trials.length} of ${sweep.max_trials} trials: ${trialCounts(sweep.trials)}`,
        " · ", h("a", { href: `#/jobs?sweep=${sweep.id}` }, "its jobs")));
    const params = [...new Set(trials.flatMap((t) => Object.keys(t.params)))];
    board.replaceChildren(table(["#", sweep.objective.metric, "status", "stop reason", "epochs", ...params, "job"], ranked(trials, sweep.objective.mode).map((t) => h("tr", {},
      h("td", {}, t.number), h("td", { class: "num metric" }, num(t.value)), h("td", {}, jobBadge(t)), h("td", {}, t.stop_reason || ""),
      h("td", { class: "num" }, t.epochs_completed), params.map((p) => h("td", {}, fmt(t.params[p], 3))),
      h("td", {}, h("a", { href: `#/jobs/${t.job_id}` }, "job"))))));
    const defs = sweep.spec?.parameters || {};
    pc.replaceChildren(trials.some((t) => t.value != null) ? parallelCoordinates(trials, sweep.objective.metric, sweep.objective.mode, defs) : h("p", { class: "muted" }, "no finished trial yet"));
    try {
      const importance = await api(`/v1/sweeps/${id}/importance`, { signal: ac.signal });
      const entries = Object.entries(importance.importances).sort((a, b) => b[1] - a[1]);
      const rows = entries.map(([k, v]) => {
        const bar = h("span", { class: "bar" }); bar.style.width = `${Math.round(v * 200)}px`;
        return h("div", {}, h("code", {}, k), " ", bar, ` ${(v * 100).toFixed(0)}%`);
      });
      // a share from a handful of trials is a hint, not a finding: say how many it rests on
      const used = importance.trials_used;
      const basis = h("p", { class: "muted", id: "importance-basis" }, `from ${used} finished trial${used === 1 ? "" : "s"} (${importance.evaluator})` +
        (used < 10 ? ": too few to rely on" : ""));
      imp.replaceChildren(...rows, basis, ...(importance.note ? [h("p", { class: "muted" }, importance.note)] : []));
    } catch (err) { imp.replaceChildren(h("p", { class: "muted" }, err.message)); }
    if (!TERMINAL.includes(sweep.status)) timer = setTimeout(() => load().catch(() => {}), 3000);
  };
  load().catch((err) => { if (!ac.signal.aborted) ctx.showError(err); });
  return () => { ac.abort(); clearTimeout(timer); };
}
