// Workers: the live worker processes (GET /v1/workers) and what each trains, how many serve each
// queue (/readyz), and why the tenant's queued jobs wait (their own reads). Refreshed every 2 s.
import { api } from "./api.js";
import { h, when, table } from "./dom.js";

const REFRESH_MS = 2000;
const QUEUED_SHOWN = 10;  // each queued job is its own read (its reason to wait): a few only

// "2 s ago", "3 min ago", "1 h ago": how long since a time the server wrote (never in the future)
export function ago(iso, now = Date.now()) {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
  return `${Math.floor(s / 86400)} days ago`;
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

function trainsCell(w) {
  if (!w.jobs.length) return h("span", { class: "muted" }, "nothing (idle)");
  // another tenant's job comes without its id: the page says whose it is, not which
  return w.jobs.map((j, i) => h("span", { class: "worker-job", dataset: { jobId: j.id || "" } }, i ? ", " : "",
    j.id ? h("a", { href: `#/jobs/${j.id}` }, `job ${j.id.slice(0, 8)}`) : "another team's job",
    ` (${plural(j.epochs_completed, "epoch")} done)`));
}

function workerRows(items) {
  // what a learner looks for first (what it trains, whether it is alive) before where it runs
  return items.map((w) => h("tr", { dataset: { workerId: w.id, pid: String(w.pid) } },
    h("td", {}, h("code", {}, w.id)), h("td", { class: "wrap" }, trainsCell(w)),
    h("td", { class: "last-seen", title: when(w.last_seen_at) }, ago(w.last_seen_at)), h("td", {}, w.queues.join(", ")), h("td", {}, w.device),
    h("td", {}, w.host), h("td", { class: "num" }, w.pid), h("td", { title: when(w.started_at) }, ago(w.started_at))));
}

// live workers per queue: /readyz's (every queue named, 0 where none serves it); counted from the
// list while the service warms up (a 503 then)
async function perQueue(items, signal) {
  try {
    const ready = await api("/readyz", { signal });
    return { workers: ready.workers || {}, warnings: ready.warnings || [] };
  } catch (err) {
    if (signal.aborted) throw err;
    const workers = { cpu: 0, gpu: 0 };
    for (const w of items) for (const q of w.queues) workers[q] = (workers[q] || 0) + 1;
    return { workers, warnings: [] };
  }
}

export function workersPage(ctx) {
  const ac = new AbortController();
  const { signal } = ac;
  const summary = h("p", { id: "workers-summary" });
  const list = h("div", { id: "workers" });
  const queues = h("div", { id: "queues" });
  const waiting = h("div", { id: "waiting" });
  ctx.view.append(h("h1", {}, "Workers"),
    h("p", { class: "muted" }, "A worker is a process that trains one job at a time (or a pack of a sweep's trials). It checks in every few seconds; one that stops checking in is gone, and its job goes back to the queue to resume from its last saved epoch. This page refreshes itself."),
    summary, list,
    h("h2", {}, "Queues"), h("p", { class: "muted" }, "A job waits in the queue of its device (cpu or gpu) until a worker that serves that queue is free."), queues,
    h("h2", {}, "Your queued jobs"), waiting);

  let timer = null;
  const load = async () => {
    const [{ items }, usage] = await Promise.all([api("/v1/workers", { signal }), api("/v1/usage", { signal })]);
    const { workers, warnings } = await perQueue(items, signal);
    const busy = items.filter((w) => w.jobs.length).length;
    summary.textContent = items.length ? `${plural(items.length, "worker")} running: ${busy} training, ${items.length - busy} idle.` : "";
    list.replaceChildren(items.length
      ? table(["worker", "training now", "last seen", "queues", "device", "host", "pid", "started"], workerRows(items), { id: "workers-table" })
      : h("div", { class: "card empty", id: "workers-empty" },
        h("p", {}, h("b", {}, "No worker is running"), ": start one with ", h("code", {}, "netfit worker"),
          " (it serves the queues this machine can: cpu, and gpu where CUDA is). Jobs wait in their queue until one starts."),
        h("p", { class: "muted" }, "On one machine, ", h("code", {}, "netfit serve"), " starts the API with a worker; ",
          h("code", {}, "netfit worker --queues gpu"), " serves only the gpu queue.")));
    queues.replaceChildren(table(["queue", "live workers"], Object.entries(workers).map(([q, n]) =>
      h("tr", { dataset: { queue: q } }, h("td", {}, q), h("td", { class: n ? "" : "error" }, n ? plural(n, "worker") : "none: its jobs wait until a worker serves it"))), { id: "queues-table" }),
    ...(warnings.length ? [h("ul", { class: "error", id: "queue-warnings" }, warnings.map((w) => h("li", {}, w)))] : []));
    // the tenant's queued jobs, oldest first in line: why each waits (its own read says)
    const queued = usage.queued_jobs ? (await api(`/v1/jobs?status=queued&limit=${QUEUED_SHOWN}`, { signal })).items : [];
    const jobs = await Promise.all(queued.map((j) => api(`/v1/jobs/${j.id}`, { signal }).catch(() => null)));
    const shown = jobs.filter((j) => j && j.status === "queued").sort((a, b) => (a.waiting?.position ?? 1e9) - (b.waiting?.position ?? 1e9));
    waiting.replaceChildren(h("p", { id: "usage-line" }, `You have ${plural(usage.running_jobs, "job")} running and ${usage.queued_jobs} queued` +
      (usage.queued_jobs > shown.length && shown.length ? ` (${shown.length} shown)` : "") + "."),
    ...(shown.length ? [table(["job", "place in line", "why it waits"], shown.map((j) => h("tr", { dataset: { jobId: j.id } },
      h("td", {}, h("a", { href: `#/jobs/${j.id}` }, j.name || j.id)), h("td", { class: "num" }, j.waiting?.position ?? ""),
      h("td", { class: j.waiting?.reason === "no_worker" ? "error wrap" : "wrap" }, j.waiting?.message || "about to start"))), { id: "waiting-table" })] : []));
  };
  // polling goes on after a failed read (a restarting service comes back by itself)
  const tick = async () => {
    try { await load(); } catch (e) { if (!signal.aborted) ctx.showError(e); }
    if (!signal.aborted) timer = setTimeout(tick, REFRESH_MS);
  };
  signal.addEventListener("abort", () => clearTimeout(timer));
  tick();
  return () => ac.abort();
}
