// Jobs: the list (filters, search, cursor pages, live refresh), a job's page (live curves over
// SSE, the early-stopping countdown, results, downloads, cancel) and the comparison of 2-10 jobs.
import { api, download, streamEvents } from "./api.js";
import { h, fmt, num, when, duration, statusBadge, jobBadge, table, debounce, layerLabel, layerType } from "./dom.js";
import { layerStatsPanel } from "./layers.js";
import { lifeList } from "./life.js";

const STATUSES = ["", "queued", "running", "succeeded", "failed", "cancelled"];
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const REFRESH_MS = 2000;

function page(ctx, body) {
  const ac = new AbortController();
  body(ac.signal).catch((err) => { if (!ac.signal.aborted) ctx.showError(err); });
  return () => ac.abort();
}

// the names of the metrics a job may record (netfit.spec's list, served once): a row's other
// fields (epoch, lr, seconds, the countdown) are not results
let metricNamesOnce = null;
const metricNames = () => (metricNamesOnce ??= api("/dashboard/metric-names").then((names) => new Set(names)));
export const onlyMetrics = (values, names) => Object.fromEntries(Object.entries(values || {}).filter(([k, v]) => names.has(k) && typeof v === "number"));

// a list item names its monitor; a whole job has it in its spec
export function bestMetric(job) {
  const monitor = job.monitor || job.spec?.training?.early_stopping?.monitor || "val_loss";
  const m = job.best_metrics || {};
  const key = monitor in m ? monitor : Object.keys(m)[0];
  return key ? `${key} ${num(m[key])}` : "";
}

// A page of the list: at least `limit` rows that are not sweep trials (a sweep's trials fold into
// one row per sweep), reading on through the API's pages, a few at most.
async function listPage(query, cursor, showTrials, limit, signal) {
  const items = [];
  let next = cursor, reads = 0;
  do {
    const q = new URLSearchParams(query);
    // each further read asks only for the rows still missing: never more than `limit` jobs shown
    q.set("limit", String(limit - items.filter((j) => !j.sweep_id).length));
    if (next) q.set("cursor", next);
    const data = await api(`/v1/jobs?${q}`, { signal });
    items.push(...data.items);
    next = data.next_cursor;
    reads++;
  } while (!showTrials && next && reads < 5 && items.filter((j) => !j.sweep_id).length < limit);
  return { items, next };
}

export function jobsPage(ctx) {
  return page(ctx, async (signal) => {
    const p = ctx.params;
    const state = { status: p.get("status") || "", sweep: p.get("sweep") || "", name: p.get("name") || "", cursors: [null] };
    const selected = new Set();
    const status = h("select", { id: "filter-status", "aria-label": "status" }, STATUSES.map((s) => h("option", { value: s }, s || "any status")));
    status.value = state.status;
    const sweep = h("input", { id: "filter-sweep", placeholder: "sweep id", "aria-label": "sweep id", value: state.sweep, size: 14 });
    const name = h("input", { id: "filter-name", type: "search", placeholder: "search by name", "aria-label": "search by name", value: state.name });
    // a sweep's trials are many: folded into one row per sweep unless asked for (or a sweep is picked)
    const trials = h("input", { type: "checkbox", id: "show-trials", checked: Boolean(state.sweep) });
    const compare = h("button", { id: "compare", disabled: true }, "Compare selected");
    const prev = h("button", { id: "prev-page", class: "secondary", disabled: true }, "← Newer");
    const next = h("button", { id: "next-page", class: "secondary", disabled: true }, "Older →");
    const count = h("span", { class: "muted", id: "page-info" });
    const tbody = h("tbody", { id: "jobs-body" });
    ctx.view.append(
      h("h1", {}, "Jobs"),
      h("div", { class: "toolbar" }, status, sweep, name, h("label", {}, trials, " show sweep trials"), compare, prev, next, count),
      h("div", { class: "table-box", tabindex: "0" }, h("table", { id: "jobs-table" }, h("thead", {}, h("tr", {}, ["", "name", "status", "stop reason", "best", "epochs", "created"].map((c) => h("th", {}, c)))), tbody)),
    );
    const updateCompare = () => {
      compare.disabled = selected.size < 2 || selected.size > 10;
      compare.textContent = `Compare selected (${selected.size})`;
    };
    compare.addEventListener("click", () => { location.hash = `#/compare?ids=${[...selected].join(",")}`; });

    const jobRow = (job) => {
      const box = h("input", { type: "checkbox", checked: selected.has(job.id), "aria-label": `select ${job.name || job.id}`,
        onchange: (e) => { e.target.checked ? selected.add(job.id) : selected.delete(job.id); updateCompare(); } });
      return h("tr", { dataset: { jobId: job.id, status: job.status } },
        h("td", {}, box),
        h("td", {}, h("a", { href: `#/jobs/${job.id}` }, job.name || job.id), job.sweep_id ? h("span", { class: "muted" }, ` · trial ${job.trial_number ?? ""}`) : null),
        h("td", {}, jobBadge(job)),
        h("td", {}, job.stop_reason || ""),
        h("td", { class: "num" }, bestMetric(job)),
        h("td", { class: "num" }, `${job.epochs_completed}/${job.epochs}`),
        h("td", {}, when(job.created_at)));
    };
    // a sweep's trials on this page as one row: how many, how they stand, links to the sweep and to them
    const sweepRow = (id, group) => {
      const by = {};
      for (const j of group) { const s = j.stop_reason === "pruned" ? "pruned" : j.status; by[s] = (by[s] || 0) + 1; }
      return h("tr", { class: "sweep-row", dataset: { sweepId: id } }, h("td", {}),
        h("td", { colspan: 6 }, h("a", { href: `#/sweeps/${id}` }, `sweep ${id.slice(0, 8)}`), ` · ${group.length} trial${group.length === 1 ? "" : "s"} (`,
          Object.entries(by).map(([k, v]) => `${v} ${k}`).join(", "), ") · ", h("a", { href: `#/jobs?sweep=${id}` }, "show its trials")));
    };

    let timer = null;
    const load = async () => {
      clearTimeout(timer);
      const q = {};
      for (const k of ["status", "sweep", "name"]) if (state[k]) q[k] = state[k];
      const showTrials = trials.checked || Boolean(state.sweep);
      const { items, next: nextCursor } = await listPage(q, state.cursors[state.cursors.length - 1], showTrials, 50, signal);
      const rows = [], groups = new Map();
      for (const job of items) {
        if (showTrials || !job.sweep_id) { rows.push(jobRow(job)); continue; }
        if (!groups.has(job.sweep_id)) { groups.set(job.sweep_id, []); rows.push(job.sweep_id); }
        groups.get(job.sweep_id).push(job);
      }
      tbody.replaceChildren(...rows.map((r) => (typeof r === "string" ? sweepRow(r, groups.get(r)) : r)));
      if (!items.length) tbody.append(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No jobs match. Submit one from “New job”.")));
      state.next = nextCursor;
      next.disabled = !nextCursor;
      prev.disabled = state.cursors.length < 2;
      const folded = [...groups.values()].reduce((n, g) => n + g.length, 0);
      count.textContent = `page ${state.cursors.length}, ${items.length - folded} jobs${folded ? ` and ${folded} sweep trials (folded)` : ""}`;
      // keep the page current while something on it (or a newer job) may still change
      if (!signal.aborted) timer = setTimeout(() => load().catch((e) => !signal.aborted && ctx.showError(e)), REFRESH_MS);
    };
    signal.addEventListener("abort", () => clearTimeout(timer));
    const restart = () => { state.cursors = [null]; load().catch(ctx.showError); };
    status.addEventListener("change", () => { state.status = status.value; restart(); });
    sweep.addEventListener("input", debounce(() => { state.sweep = sweep.value.trim(); restart(); }, 300));
    name.addEventListener("input", debounce(() => { state.name = name.value.trim(); restart(); }, 300));
    trials.addEventListener("change", restart);
    next.addEventListener("click", () => { if (state.next) { state.cursors.push(state.next); load().catch(ctx.showError); } });
    prev.addEventListener("click", () => { state.cursors.pop(); load().catch(ctx.showError); });
    await load();
  });
}

// the loss and the task's metric (accuracy or RMSE), from metrics rows or epoch events
export function metricKeys(rows) {
  const has = (k) => rows.some((r) => r[k] != null);
  const metric = has("val_accuracy") || has("train_accuracy") ? "accuracy" : has("val_rmse") || has("train_rmse") ? "rmse" : null;
  return { metric };
}

function countdownText(es) {
  if (!es) return null;
  const parts = [`monitor ${es.monitor}`, `best ${num(es.best)}${es.best_epoch != null ? ` at epoch ${es.best_epoch}` : ""}`];
  if (es.patience != null) parts.push(`${es.patience - es.wait} of ${es.patience} epochs of patience left (no improvement for ${es.wait})`);
  else parts.push("no early stopping: the run goes to its last epoch (its last weights may be over-fitted); the job's result is the best epoch's weights");
  return parts.join(" · ");
}

// Epochs done: the job row's count, or the events' when they are ahead (a row fetched at a
// status event can be older than the epochs that streamed in meanwhile).
export function epochsDone(job, rows) {
  let last = 0;
  for (const epoch of rows.keys()) if (epoch > last) last = epoch;
  return Math.max(job.epochs_completed || 0, last);
}

// Where a run ended before its budget (early stopping, cancel, pruning), as the PNG marks it.
const stopEpochOf = (job, done) => (job.stop_reason && job.stop_reason !== "max_epochs" ? done : null);

// Best/last weights and the ONNX export: fetched with the key's header (a plain link could not
// send it), saved under the name the server gives.
function downloadButtons(id, showError) {
  const files = [["best", "best weights", `/v1/jobs/${id}/checkpoints/best`, `${id}-best.safetensors`],
    ["last", "last weights", `/v1/jobs/${id}/checkpoints/last`, `${id}-last.safetensors`],
    ["onnx", "ONNX (best)", `/v1/jobs/${id}/export?format=onnx`, `${id}-best.onnx`]];
  return files.map(([kind, label, path, name]) => h("button", { class: "secondary", id: `download-${kind}`,
    onclick: async (e) => {
      e.target.disabled = true;
      try { await download(path, name); } catch (err) { showError(err); } finally { e.target.disabled = false; }
    } }, label));
}

// Rows pasted as JSON (one sample, a list of them, or {"instances": [...]}) or CSV/TSV (a header
// line of names is skipped); a cell that is not a number is sent as is, so the service's 422
// names the sample and the value.
export function parseRows(text) {
  const t = text.trim();
  if (!t) throw new Error("paste at least one row");
  if (t[0] === "[" || t[0] === "{") {
    const v = JSON.parse(t);
    if (Array.isArray(v)) return v.length && typeof v[0] !== "object" ? [v] : v;  // a bare row is one sample
    if (Array.isArray(v?.instances)) return v.instances;
    throw new Error('JSON must be a row, a list of rows or {"instances": [...]}');
  }
  const cells = t.split(/\r?\n/).filter((l) => l.trim()).map((l) => l.trim().split(/\s*[,;\t]\s*|\s+/));
  const number = (c) => c !== "" && Number.isFinite(Number(c));
  const rows = cells[0].every((c) => !number(c)) ? cells.slice(1) : cells;
  if (!rows.length) throw new Error("only a header line: paste the rows under it");
  return rows.map((r) => r.map((c) => (number(c) ? Number(c) : c)));
}

function predictionTable(out) {
  const classes = out.classes && out.classes.length <= 10 ? out.classes : null;
  const head = ["#", "prediction", ...(classes ? classes.map((c) => `p(${c})`) : out.probabilities ? ["probability"] : [])];
  return table(head, out.predictions.map((p, i) => h("tr", {}, h("td", {}, i + 1),
    h("td", { class: "prediction" }, typeof p === "object" ? JSON.stringify(p) : fmt(p)),
    classes ? out.probabilities[i].map((q) => h("td", { class: "num" }, q.toFixed(3)))
      : out.probabilities ? h("td", { class: "num" }, Math.max(...out.probabilities[i]).toFixed(3)) : null)), { id: "predict-table" });
}

// "Predict" for a few rows: POST /v1/jobs/{id}/predict with the chosen weights.
function predictPanel(id, inputShape) {
  const shape = inputShape();
  const hint = shape && shape.length === 1 ? `${shape[0]} numbers per row` : shape ? `samples of shape ${JSON.stringify(shape)}` : "rows of the job's inputs";
  const input = h("textarea", { id: "predict-input", rows: 4, spellcheck: false, "aria-label": "rows to predict",
    placeholder: `one row per line, CSV or JSON (${hint})` });
  const which = h("select", { id: "predict-checkpoint", "aria-label": "weights" }, h("option", { value: "best" }, "best weights"), h("option", { value: "last" }, "last weights"));
  const run = h("button", { id: "predict-run" }, "Predict");
  const out = h("div", { id: "predict-output" });
  const problem = (message, details = []) => out.replaceChildren(h("div", { class: "error", id: "predict-error" }, message,
    details.length ? h("ul", {}, details.map((d) => h("li", {}, h("code", {}, (d.loc || []).join(".")), " ", d.msg))) : null));
  run.addEventListener("click", async () => {
    let rows;
    try { rows = parseRows(input.value); } catch (err) { problem(`Cannot read the rows: ${err.message}`); return; }
    run.disabled = true;
    out.replaceChildren(h("span", { class: "muted" }, "predicting…"));
    try {
      const res = await api(`/v1/jobs/${id}/predict?checkpoint=${which.value}`, { method: "POST", json: { instances: rows } });
      out.replaceChildren(h("p", { class: "muted" }, `${rows.length} row${rows.length === 1 ? "" : "s"} · ${res.checkpoint.kind} weights of epoch ${res.checkpoint.epoch}`), predictionTable(res));
    } catch (err) {
      // the details only where they say more than the message
      problem(err.message, (err.body?.details || []).filter((d) => !err.message.includes(d.msg)));
    } finally { run.disabled = false; }
  });
  return h("div", { id: "predict" }, input, h("div", { class: "toolbar" }, which, run), out);
}

// a metric's name as a row label: "val_loss" -> "val loss"; "test_accuracy" -> "accuracy"
const words = (k, drop = "") => k.replace(drop, "").replace(/_/g, " ");

// A running job's pace: time since it started, epochs per second, and what is left at most
// (early stopping may end it sooner); a finished one: how long it took.
export function pace(job, done, now = Date.now()) {
  if (!job.started_at) return "";
  const start = Date.parse(job.started_at);
  if (TERMINAL.has(job.status)) return job.finished_at ? `took ${duration((Date.parse(job.finished_at) - start) / 1000)}` : "";
  const elapsed = Math.max(0.001, (now - start) / 1000);
  if (!done) return `running for ${duration(elapsed)}`;
  const rate = done / elapsed, left = (job.epochs - done) / rate;
  return `running for ${duration(elapsed)} · ${rate >= 10 ? rate.toFixed(0) : rate.toPrecision(2)} epochs/s · at most ${duration(left)} left` +
    (job.spec?.training?.early_stopping ? " (early stopping may end it sooner)" : "");
}

export function jobPage(ctx, id) {
  return page(ctx, async (signal) => {
    // uPlot is loaded by the pages that draw (the list, the first page most people open, does not)
    const [{ lineChart, axisFor, afterBest, marksKey }, first, names] = await Promise.all([import("./charts.js"), api(`/v1/jobs/${id}`, { signal }), metricNames()]);
    let job = first;
    const title = h("h1", {}, job.name || job.id, " ", h("span", { id: "job-status" }, jobBadge(job)));
    const cancel = h("button", { id: "cancel", class: "secondary" }, "Cancel");
    const countdownText_ = h("div", { id: "countdown-text" }, "waiting for the first epoch…");
    const progress = h("div", { id: "progress", class: "muted progress" });
    const countdown = h("div", { class: "countdown card", id: "countdown" }, countdownText_, progress);
    const lossEl = h("div", { id: "chart-loss" });
    const metricEl = h("div", { id: "chart-metric" });
    const info = h("div", { id: "job-info" });
    const layers = h("div", { id: "layers" });
    const downloads = h("div", { id: "downloads" });
    const layerStats = layerStatsPanel(lineChart, (index) => {
      const l = job.summary?.layers?.find((x) => x.index === index);
      return l ? layerType(l) : null;
    });
    signal.addEventListener("abort", () => layerStats.stop());
    ctx.view.append(title, h("div", { class: "toolbar" }, cancel, h("a", { href: `#/jobs` }, "← all jobs")),
      countdown, h("div", { class: "grid2" }, h("div", { class: "card" }, lossEl, h("ul", { class: "key", id: "chart-key" }, marksKey())),
        h("div", { class: "card" }, metricEl, h("ul", { class: "key" }, marksKey()))),
      h("div", { class: "grid2" }, h("div", {}, h("h2", {}, "Results"), info, h("h2", {}, "Downloads"), downloads),
        h("div", {}, h("h2", {}, "Layers"), layers)), layerStats.el);
    downloads.append(...downloadButtons(id, ctx.showError));
    // its life: queued, why it waits, running, lost, preempted, resumed, the end (from the event stream)
    const life = lifeList();
    info.after(h("h2", {}, "What happened"), life.el, h("h2", {}, "Predict"), predictPanel(id, () => job.summary?.input_shape));
    cancel.addEventListener("click", async () => {
      try { job = await api(`/v1/jobs/${id}/cancel`, { method: "POST" }); renderInfo(); } catch (e) { ctx.showError(e); }
    });

    const rows = new Map();  // epoch -> row
    let infoTimer = null, paceTimer = null, queuedTimer = null;
    signal.addEventListener("abort", () => { clearTimeout(infoTimer); clearInterval(paceTimer); clearInterval(queuedTimer); });
    let es = null;
    const stopEpoch = () => stopEpochOf(job, epochsDone(job, rows));
    const lastEpoch = () => { let last = null; for (const e of rows.keys()) if (last == null || e > last) last = e; return last; };
    const bestEpoch = () => es?.best_epoch ?? job.best_epoch;
    // the band: the PNG's rule (after the best epoch, to the last epoch drawn)
    const marks = () => ({ best: bestEpoch(), stop: stopEpoch(), band: afterBest(bestEpoch(), lastEpoch()) });
    const chartWidth = (el) => Math.max(260, el.parentElement.clientWidth - 26);
    const lossChart = lineChart(lossEl, { title: "loss", labels: ["train_loss", "val_loss"], marks, width: chartWidth(lossEl), ...axisFor("loss") });
    let metricChart = null;
    const redraw = () => {
      const sorted = [...rows.values()].sort((a, b) => a.epoch - b.epoch);
      const xs = sorted.map((r) => r.epoch);
      lossChart.set(xs, ["train_loss", "val_loss"].map((k) => sorted.map((r) => r[k] ?? null)));
      const { metric } = metricKeys(sorted);
      if (metric && !metricChart) {
        metricChart = lineChart(metricEl, { title: metric, labels: [`train_${metric}`, `val_${metric}`], marks, width: chartWidth(metricEl), ...axisFor(metric) });
      }
      if (metricChart) metricChart.set(xs, [`train_${metric}`, `val_${metric}`].map((k) => sorted.map((r) => r[k] ?? null)));
      lossEl.dataset.points = String(xs.length);
    };
    const liveBest = () => !TERMINAL.has(job.status) && es?.best_epoch != null && rows.has(es.best_epoch);
    const showPace = () => { progress.textContent = pace(job, epochsDone(job, rows)); };
    const renderInfo = () => {
      title.querySelector("#job-status").replaceChildren(jobBadge(job));
      cancel.disabled = TERMINAL.has(job.status);
      const best = liveBest() ? es.best_epoch : job.best_epoch;
      const kv = [["id", job.id], ["status", job.status], ["stop reason", job.stop_reason], ["epochs completed", `${epochsDone(job, rows)} of ${job.epochs} max`], ["stop epoch", stopEpoch()],
        ["best epoch", best]];
      // which weights are the result: the test metrics, /predict and the export all use them
      if (best != null) kv.push(["result weights", `the best epoch's (${best}): the test metrics, Predict and the ONNX export use them`]);
      kv.push(["device", job.device], ["attempts", job.attempts], ["created", when(job.created_at)], ["finished", when(job.finished_at)], ["error", job.error]);
      // while it runs, the best so far comes from the events (the job fetched at the start is older)
      const bestRow = onlyMetrics(liveBest() ? rows.get(es.best_epoch) : job.best_metrics, names);
      const numeric = new Set();
      for (const [k, v] of Object.entries(bestRow)) { kv.push([`${words(k)} at the best epoch`, num(v)]); numeric.add(kv.length - 1); }
      for (const [k, v] of Object.entries(job.test_metrics || {})) { kv.push([`test ${words(k, "test_")} (best epoch's weights)`, num(v)]); numeric.add(kv.length - 1); }
      info.replaceChildren(h("table", { class: "kv", id: "results" }, h("tbody", {}, kv.map((r, i) => [...r, numeric.has(i)]).filter(([, v]) => v != null && v !== "")
        .map(([k, v, isNum]) => h("tr", {}, h("td", {}, k), h("td", { class: k === "error" ? "error" : isNum ? "num metric" : "" }, String(v)))))));
      const s = job.summary;
      if (s) {
        layers.replaceChildren(h("p", { class: "muted" }, `input ${JSON.stringify(s.input_shape)} · ${s.task} · loss ${s.loss} · ${s.total_params.toLocaleString()} parameters`),
          table(["#", "layer", "output shape", "params"], s.layers.map((l) => h("tr", {}, h("td", {}, l.index), h("td", {}, layerLabel(l)),
            h("td", {}, JSON.stringify(l.output_shape)), h("td", { class: "num" }, l.params.toLocaleString()))), { id: "layer-table" }),
          (s.notes || []).length ? h("ul", { id: "notes", class: "muted" }, s.notes.map((n) => h("li", {}, n))) : null);
      }
      // rebuilt whole each time (renderInfo runs again on every status and every few epochs)
      countdownText_.replaceChildren(es ? countdownText(es) : job.status === "queued" ? "" : "waiting for the first epoch…");
      // a queued job says why it waits (its place in line, or that no worker serves its queue)
      if (job.status === "queued") {
        countdownText_.prepend(h("b", {}, "queued · "), job.waiting ? job.waiting.message : "waiting for a worker", es ? " · " : "");
        if (job.waiting?.reason === "no_worker") countdownText_.append(" · ", h("a", { href: "#/workers" }, "see the workers"));
      }
      if (TERMINAL.has(job.status)) countdownText_.prepend(h("b", {}, `${job.status}${job.stop_reason && job.stop_reason !== job.status ? ` (${job.stop_reason})` : ""} · `));
      showPace();
    };
    renderInfo();
    paceTimer = setInterval(() => { if (!TERMINAL.has(job.status)) showPace(); }, 1000);
    // a queued job's place in line moves without an event of its own: read it again every few seconds
    queuedTimer = setInterval(async () => {
      if (job.status !== "queued") return;
      try { job = await api(`/v1/jobs/${id}`, { signal }); renderInfo(); } catch (e) { if (!signal.aborted) ctx.showError(e); }
    }, 3000);
    await streamEvents(`/v1/jobs/${id}/events`, async (kind, data) => {
      if (kind === "epoch") {
        rows.set(data.epoch, data);
        layerStats.add(data.epoch, data.layers);
        // the countdown: nested as the lead writes it, or flat fields on the event
        const progress_ = data.early_stopping || (data.wait != null ? { monitor: data.monitor, best: data.best, best_epoch: data.best_epoch, wait: data.wait, patience: data.patience } : null);
        if (progress_) { es = progress_; countdownText_.textContent = countdownText(es); }
        redraw();
        // the results table follows the epochs too, at most twice a second (fast epochs would rebuild it hundreds of times)
        if (!infoTimer) infoTimer = setTimeout(() => { infoTimer = null; renderInfo(); }, 500);
      } else if (kind === "status") {
        life.add(kind, data);
        job = await api(`/v1/jobs/${id}`, { signal });
        renderInfo();
        redraw();
      } else {
        life.add(kind, data);
        // the event is as of when it was stored (a replay's may be old): the job's own read is now
        if (kind === "waiting" && job.status === "queued") { job = await api(`/v1/jobs/${id}`, { signal }); renderInfo(); }
      }
    }, signal);
    job = await api(`/v1/jobs/${id}`, { signal });
    renderInfo();
    redraw();
  });
}

export function comparePage(ctx) {
  return page(ctx, async (signal) => {
    const ids = (ctx.params.get("ids") || "").split(",").filter(Boolean);
    ctx.view.append(h("h1", {}, "Compare"));
    if (ids.length < 2 || ids.length > 10) {
      ctx.view.append(h("p", {}, "Pick 2 to 10 jobs in the ", h("a", { href: "#/jobs" }, "list"), " and press “Compare selected”."));
      return;
    }
    const { lineChart, axisFor, marksKey } = await import("./charts.js");
    const jobs = await Promise.all(ids.map((id) => api(`/v1/jobs/${id}`, { signal })));
    const metrics = await Promise.all(ids.map(async (id) => (await api(`/v1/jobs/${id}/metrics`, { signal })).items));
    const names = jobs.map((j) => j.name || j.id);
    const unique = names.map((n, i) => (names.indexOf(n) !== i || names.lastIndexOf(n) !== i ? `${n} (${jobs[i].id.slice(0, 6)})` : n));
    const hasAcc = metrics.some((rows) => rows.some((r) => r.val_accuracy != null));
    const maxEpoch = Math.max(0, ...metrics.map((rows) => rows.length ? rows[rows.length - 1].epoch : 0));
    const xs = Array.from({ length: maxEpoch }, (_, i) => i + 1);
    const col = (rows, key) => { const by = new Map(rows.map((r) => [r.epoch, r[key]])); return xs.map((x) => by.get(x) ?? null); };
    const lossEl = h("div", { id: "compare-loss" });
    const accEl = h("div", { id: "compare-metric" });
    ctx.view.append(h("div", { class: "grid2" }, h("div", { class: "card" }, lossEl), h("div", { class: "card" }, accEl)),
      h("ul", { class: "key" }, marksKey({ band: false, best: false, stop: false, dots: true })));
    // each job's best epoch: a dot on its own curve
    const points = () => jobs.map((j, i) => ({ sidx: i + 1, epoch: j.best_epoch })).filter((p) => p.epoch != null);
    const width = (el) => Math.max(260, el.parentElement.clientWidth - 26);
    const loss = lineChart(lossEl, { title: "validation loss", labels: unique, width: width(lossEl), points, ...axisFor("loss") });
    loss.set(xs, metrics.map((rows) => col(rows, "val_loss")));
    lossEl.dataset.series = String(ids.length);
    const metric = hasAcc ? "val_accuracy" : "val_rmse";
    const acc = lineChart(accEl, { title: hasAcc ? "validation accuracy" : "validation RMSE", labels: unique, width: width(accEl), points, ...axisFor(metric.slice(4)) });
    acc.set(xs, metrics.map((rows) => col(rows, metric)));
    const testKeys = [...new Set(jobs.flatMap((j) => Object.keys(j.test_metrics || {})))];
    const valKeys = ["val_loss", metric].filter((k) => jobs.some((j) => j.best_metrics?.[k] != null));
    const summary = table(["", ...unique], [
      ["status", jobs.map((j) => jobBadge(j))], ["stop reason", jobs.map((j) => j.stop_reason || "")],
      ["epochs", jobs.map((j) => j.epochs_completed)], ["best epoch", jobs.map((j) => j.best_epoch ?? "")],
      ...valKeys.map((k) => [`${words(k)} at the best epoch`, jobs.map((j) => num(j.best_metrics?.[k])), true]),
      ...testKeys.map((k) => [`test ${words(k, "test_")} (best epoch's weights)`, jobs.map((j) => num(j.test_metrics?.[k])), true]),
      ["parameters", jobs.map((j) => j.summary?.total_params?.toLocaleString() ?? "")],
    ].map(([k, vs, isNum]) => h("tr", {}, h("th", { scope: "row" }, k), vs.map((v) => h("td", { class: isNum ? "num metric" : "" }, v instanceof Node ? v : String(v))))), { id: "compare-summary" });
    const { rows: diffs } = await api("/dashboard/spec-diff", { method: "POST", json: { specs: jobs.map((j) => j.spec) }, signal });
    const shown = (v) => (v == null ? "—" : typeof v === "object" ? JSON.stringify(v) : String(v));
    const diffTable = diffs.length
      ? table(["spec field", ...unique], diffs.map(({ field, values }) => h("tr", { dataset: { field } }, h("td", {}, h("code", {}, field)),
        values.map((v) => h("td", {}, shown(v))))), { id: "spec-diff" })
      : h("p", { id: "spec-diff" }, "The specs are identical.");
    ctx.view.append(h("h2", {}, "Results"), summary,
      h("h2", {}, "Spec differences"), h("p", { class: "muted" }, "what the specs set, defaults left out; layers aligned (a layer one job lacks shows —)"), diffTable);
  });
}
