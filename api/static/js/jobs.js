// Jobs: the list (filters, search, cursor pages, live refresh), a job's page (live curves over
// SSE, the early-stopping countdown, results, downloads, cancel) and the comparison of 2-10 jobs.
import { api, download, streamEvents } from "./api.js";
import { h, fmt, when, statusBadge, table, debounce, layerLabel } from "./dom.js";
import { layerStatsPanel } from "./layers.js";

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
  return key ? `${key} ${fmt(m[key])}` : "";
}

export function jobsPage(ctx) {
  return page(ctx, async (signal) => {
    const p = ctx.params;
    const state = { status: p.get("status") || "", sweep: p.get("sweep") || "", name: p.get("name") || "", cursors: [null] };
    const selected = new Set();
    const status = h("select", { id: "filter-status", "aria-label": "status" }, STATUSES.map((s) => h("option", { value: s }, s || "any status")));
    status.value = state.status;
    const sweep = h("input", { id: "filter-sweep", placeholder: "sweep id", value: state.sweep, size: 14 });
    const name = h("input", { id: "filter-name", type: "search", placeholder: "search by name", value: state.name });
    const compare = h("button", { id: "compare", disabled: true }, "Compare selected");
    const prev = h("button", { id: "prev-page", class: "secondary", disabled: true }, "← Newer");
    const next = h("button", { id: "next-page", class: "secondary", disabled: true }, "Older →");
    const count = h("span", { class: "muted", id: "page-info" });
    const tbody = h("tbody", { id: "jobs-body" });
    ctx.view.append(
      h("h1", {}, "Jobs"),
      h("div", { class: "toolbar" }, status, sweep, name, compare, prev, next, count),
      h("table", { id: "jobs-table" }, h("thead", {}, h("tr", {}, ["", "name", "status", "stop reason", "best", "epochs", "created"].map((c) => h("th", {}, c)))), tbody),
    );
    const updateCompare = () => {
      compare.disabled = selected.size < 2 || selected.size > 10;
      compare.textContent = `Compare selected (${selected.size})`;
    };
    compare.addEventListener("click", () => { location.hash = `#/compare?ids=${[...selected].join(",")}`; });

    let timer = null;
    const load = async () => {
      clearTimeout(timer);
      const q = new URLSearchParams({ limit: "50" });
      for (const k of ["status", "sweep", "name"]) if (state[k]) q.set(k, state[k]);
      const cursor = state.cursors[state.cursors.length - 1];
      if (cursor) q.set("cursor", cursor);
      const data = await api(`/v1/jobs?${q}`, { signal });
      tbody.replaceChildren(...data.items.map((job) => {
        const box = h("input", { type: "checkbox", checked: selected.has(job.id), "aria-label": `select ${job.name || job.id}`,
          onchange: (e) => { e.target.checked ? selected.add(job.id) : selected.delete(job.id); updateCompare(); } });
        return h("tr", { dataset: { jobId: job.id, status: job.status } },
          h("td", {}, box),
          h("td", {}, h("a", { href: `#/jobs/${job.id}` }, job.name || job.id)),
          h("td", {}, statusBadge(job.status)),
          h("td", {}, job.stop_reason || ""),
          h("td", { class: "num" }, bestMetric(job)),
          h("td", { class: "num" }, `${job.epochs_completed}/${job.epochs}`),
          h("td", {}, when(job.created_at)));
      }));
      if (!data.items.length) tbody.append(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No jobs match. Submit one from “New job”.")));
      state.next = data.next_cursor;
      next.disabled = !data.next_cursor;
      prev.disabled = state.cursors.length < 2;
      count.textContent = `page ${state.cursors.length}, ${data.items.length} jobs`;
      // keep the page current while something on it (or a newer job) may still change
      if (!signal.aborted) timer = setTimeout(() => load().catch((e) => !signal.aborted && ctx.showError(e)), REFRESH_MS);
    };
    signal.addEventListener("abort", () => clearTimeout(timer));
    const restart = () => { state.cursors = [null]; load().catch(ctx.showError); };
    status.addEventListener("change", () => { state.status = status.value; restart(); });
    sweep.addEventListener("input", debounce(() => { state.sweep = sweep.value.trim(); restart(); }, 300));
    name.addEventListener("input", debounce(() => { state.name = name.value.trim(); restart(); }, 300));
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
  const parts = [`monitor ${es.monitor}`, `best ${fmt(es.best)}${es.best_epoch != null ? ` at epoch ${es.best_epoch}` : ""}`];
  if (es.patience != null) parts.push(`${es.patience - es.wait} of ${es.patience} epochs of patience left (no improvement for ${es.wait})`);
  else parts.push("no early stopping: the run goes to its last epoch; the best weights are kept");
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

export function jobPage(ctx, id) {
  return page(ctx, async (signal) => {
    // uPlot is loaded by the pages that draw (the list, the first page most people open, does not)
    const [{ lineChart, axisFor }, first, names] = await Promise.all([import("./charts.js"), api(`/v1/jobs/${id}`, { signal }), metricNames()]);
    let job = first;
    const title = h("h1", {}, job.name || job.id, " ", h("span", { id: "job-status" }, statusBadge(job.status)));
    const cancel = h("button", { id: "cancel", class: "secondary" }, "Cancel");
    const countdown = h("div", { class: "countdown card", id: "countdown" }, "waiting for the first epoch…");
    const lossEl = h("div", { id: "chart-loss", class: "card" });
    const metricEl = h("div", { id: "chart-metric", class: "card" });
    const info = h("div", { id: "job-info" });
    const layers = h("div", { id: "layers" });
    const downloads = h("div", { id: "downloads" });
    const layerStats = layerStatsPanel(lineChart);
    signal.addEventListener("abort", () => layerStats.stop());
    ctx.view.append(title, h("div", { class: "toolbar" }, cancel, h("a", { href: `#/jobs` }, "← all jobs")),
      countdown, h("div", { class: "grid2" }, lossEl, metricEl),
      h("div", { class: "grid2" }, h("div", {}, h("h2", {}, "Results"), info, h("h2", {}, "Downloads"), downloads),
        h("div", {}, h("h2", {}, "Layers"), layers)), layerStats.el);
    downloads.append(...downloadButtons(id, ctx.showError));
    info.after(h("h2", {}, "Predict"), predictPanel(id, () => job.summary?.input_shape));
    cancel.addEventListener("click", async () => {
      try { job = await api(`/v1/jobs/${id}/cancel`, { method: "POST" }); renderInfo(); } catch (e) { ctx.showError(e); }
    });

    const rows = new Map();  // epoch -> row
    let infoTimer = null;
    signal.addEventListener("abort", () => clearTimeout(infoTimer));
    let es = null;
    const stopEpoch = () => stopEpochOf(job, epochsDone(job, rows));
    const marks = () => ({ best: es?.best_epoch ?? job.best_epoch, stop: stopEpoch() });
    const lossChart = lineChart(lossEl, { title: "loss", labels: ["train_loss", "val_loss"], marks, width: lossEl.clientWidth - 20, ...axisFor("loss") });
    let metricChart = null;
    const redraw = () => {
      const sorted = [...rows.values()].sort((a, b) => a.epoch - b.epoch);
      const xs = sorted.map((r) => r.epoch);
      lossChart.set(xs, ["train_loss", "val_loss"].map((k) => sorted.map((r) => r[k] ?? null)));
      const { metric } = metricKeys(sorted);
      if (metric && !metricChart) {
        metricChart = lineChart(metricEl, { title: metric, labels: [`train_${metric}`, `val_${metric}`], marks, width: metricEl.clientWidth - 20, ...axisFor(metric) });
      }
      if (metricChart) metricChart.set(xs, [`train_${metric}`, `val_${metric}`].map((k) => sorted.map((r) => r[k] ?? null)));
      lossEl.dataset.points = String(xs.length);
    };
    const liveBest = () => !TERMINAL.has(job.status) && es?.best_epoch != null && rows.has(es.best_epoch);
    const renderInfo = () => {
      title.querySelector("#job-status").replaceChildren(statusBadge(job.status));
      cancel.disabled = TERMINAL.has(job.status);
      const kv = [["id", job.id], ["status", job.status], ["stop reason", job.stop_reason], ["epochs completed", `${epochsDone(job, rows)} of ${job.epochs} max`], ["stop epoch", stopEpoch()],
        ["best epoch", liveBest() ? es.best_epoch : job.best_epoch], ["device", job.device], ["attempts", job.attempts], ["created", when(job.created_at)],
        ["finished", when(job.finished_at)], ["error", job.error]];
      // while it runs, the best so far comes from the events (the job fetched at the start is older)
      const best = onlyMetrics(liveBest() ? rows.get(es.best_epoch) : job.best_metrics, names);
      for (const [k, v] of Object.entries(best)) kv.push([`best ${k}`, fmt(v)]);
      for (const [k, v] of Object.entries(job.test_metrics || {})) kv.push([`test ${k}`, fmt(v)]);
      info.replaceChildren(h("table", { class: "kv", id: "results" }, h("tbody", {}, kv.filter(([, v]) => v != null && v !== "")
        .map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", { class: k === "error" ? "error" : "" }, String(v)))))));
      const s = job.summary;
      if (s) {
        layers.replaceChildren(h("p", { class: "muted" }, `input ${JSON.stringify(s.input_shape)} · ${s.task} · loss ${s.loss} · ${s.total_params.toLocaleString()} parameters`),
          table(["#", "layer", "output shape", "params"], s.layers.map((l) => h("tr", {}, h("td", {}, l.index), h("td", {}, layerLabel(l)),
            h("td", {}, JSON.stringify(l.output_shape)), h("td", { class: "num" }, l.params.toLocaleString()))), { id: "layer-table" }));
      }
      if (es) countdown.textContent = countdownText(es);
      if (TERMINAL.has(job.status)) countdown.prepend(h("b", {}, `${job.status}${job.stop_reason && job.stop_reason !== job.status ? ` (${job.stop_reason})` : ""} · `));
    };
    renderInfo();
    await streamEvents(`/v1/jobs/${id}/events`, async (kind, data) => {
      if (kind === "epoch") {
        rows.set(data.epoch, data);
        layerStats.add(data.epoch, data.layers);
        // the countdown: nested as the lead writes it, or flat fields on the event
        const progress = data.early_stopping || (data.wait != null ? { monitor: data.monitor, best: data.best, best_epoch: data.best_epoch, wait: data.wait, patience: data.patience } : null);
        if (progress) { es = progress; countdown.textContent = countdownText(es); }
        redraw();
        // the results table follows the epochs too, at most twice a second (fast epochs would rebuild it hundreds of times)
        if (!infoTimer) infoTimer = setTimeout(() => { infoTimer = null; renderInfo(); }, 500);
      } else if (kind === "status") {
        job = await api(`/v1/jobs/${id}`, { signal });
        renderInfo();
        redraw();
      }
    }, signal);
    job = await api(`/v1/jobs/${id}`, { signal });
    renderInfo();
    redraw();
  });
}

function flatten(value, prefix = "", out = {}) {
  if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
    if (!Object.keys(value).length) out[prefix] = JSON.stringify(value);
  } else out[prefix] = value;
  return out;
}

export function specDifferences(specs) {
  const flat = specs.map((s) => flatten(s));
  const keys = [...new Set(flat.flatMap(Object.keys))].sort();
  return keys.filter((k) => new Set(flat.map((f) => JSON.stringify(f[k]))).size > 1).map((k) => [k, flat.map((f) => f[k])]);
}

export function comparePage(ctx) {
  return page(ctx, async (signal) => {
    const ids = (ctx.params.get("ids") || "").split(",").filter(Boolean);
    ctx.view.append(h("h1", {}, "Compare"));
    if (ids.length < 2 || ids.length > 10) {
      ctx.view.append(h("p", {}, "Pick 2 to 10 jobs in the ", h("a", { href: "#/jobs" }, "list"), " and press “Compare selected”."));
      return;
    }
    const { lineChart, axisFor } = await import("./charts.js");
    const jobs = await Promise.all(ids.map((id) => api(`/v1/jobs/${id}`, { signal })));
    const metrics = await Promise.all(ids.map(async (id) => (await api(`/v1/jobs/${id}/metrics`, { signal })).items));
    const names = jobs.map((j) => j.name || j.id);
    const unique = names.map((n, i) => (names.indexOf(n) !== i || names.lastIndexOf(n) !== i ? `${n} (${jobs[i].id.slice(0, 6)})` : n));
    const hasAcc = metrics.some((rows) => rows.some((r) => r.val_accuracy != null));
    const maxEpoch = Math.max(0, ...metrics.map((rows) => rows.length ? rows[rows.length - 1].epoch : 0));
    const xs = Array.from({ length: maxEpoch }, (_, i) => i + 1);
    const col = (rows, key) => { const by = new Map(rows.map((r) => [r.epoch, r[key]])); return xs.map((x) => by.get(x) ?? null); };
    const lossEl = h("div", { id: "compare-loss", class: "card" });
    const accEl = h("div", { id: "compare-metric", class: "card" });
    ctx.view.append(h("div", { class: "grid2" }, lossEl, accEl));
    const loss = lineChart(lossEl, { title: "validation loss", labels: unique, width: lossEl.clientWidth - 20, ...axisFor("loss") });
    loss.set(xs, metrics.map((rows) => col(rows, "val_loss")));
    lossEl.dataset.series = String(ids.length);
    const metric = hasAcc ? "val_accuracy" : "val_rmse";
    const acc = lineChart(accEl, { title: metric.replace("_", " "), labels: unique, width: accEl.clientWidth - 20, ...axisFor(metric.slice(4)) });
    acc.set(xs, metrics.map((rows) => col(rows, metric)));
    const summary = table(["", ...unique], [
      ["status", jobs.map((j) => j.status)], ["stop reason", jobs.map((j) => j.stop_reason || "")],
      ["epochs", jobs.map((j) => j.epochs_completed)], ["best epoch", jobs.map((j) => j.best_epoch ?? "")],
      ["best", jobs.map(bestMetric)], ["parameters", jobs.map((j) => j.summary?.total_params?.toLocaleString() ?? "")],
    ].map(([k, vs]) => h("tr", {}, h("th", {}, k), vs.map((v) => h("td", {}, String(v))))), { id: "compare-summary" });
    const diffs = specDifferences(jobs.map((j) => j.spec));
    const diffTable = diffs.length
      ? table(["spec field", ...unique], diffs.map(([k, vs]) => h("tr", { dataset: { field: k } }, h("td", {}, h("code", {}, k)),
        vs.map((v) => h("td", {}, v === undefined ? "—" : JSON.stringify(v))))), { id: "spec-diff" })
      : h("p", { id: "spec-diff" }, "The specs are identical.");
    ctx.view.append(h("h2", {}, "Results"), summary, h("h2", {}, "Spec differences (only the fields that differ)"), diffTable);
  });
}
