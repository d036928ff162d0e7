// The dashboard: hash routes (#/jobs, #/jobs/ID, #/compare?ids=a,b, #/new, #/datasets,
// #/sweeps, #/sweeps/ID, #/workers), each a function that fills <main> and returns a cleanup.
import { api, ApiError, getKey, setKey } from "./api.js";
import { h } from "./dom.js";
import { jobsPage, jobPage, comparePage } from "./jobs.js";
import { newJobPage } from "./editor.js";
import { datasetsPage } from "./datasets.js";
import { sweepsPage, sweepPage } from "./sweeps.js";
import { workersPage } from "./workers.js";

const view = document.getElementById("view");
const banner = document.getElementById("banner");
let cleanup = null;

export function showError(err) {
  if (err && err.name === "AbortError") return;  // the page was left while a request was in flight
  if (err instanceof ApiError && err.status === 401) {
    banner.textContent = getKey()
      ? `This API key was refused: ${err.message}`
      : "This service needs an API key: paste one above (it stays in this browser tab only).";
  } else {
    banner.textContent = err.message || String(err);
  }
  banner.hidden = false;
}

function route() {
  if (cleanup) cleanup();
  cleanup = null;
  banner.hidden = true;
  view.replaceChildren();
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query);
  const parts = path.split("/").filter(Boolean);
  const page = parts[0] || "jobs";
  for (const a of document.querySelectorAll("nav a[data-nav]")) a.classList.toggle("active", a.dataset.nav === page);
  const ctx = { view, params, showError };
  const pages = {
    jobs: () => (parts[1] ? jobPage(ctx, parts[1]) : jobsPage(ctx)),
    compare: () => comparePage(ctx),
    new: () => newJobPage(ctx),
    datasets: () => datasetsPage(ctx),
    sweeps: () => (parts[1] ? sweepPage(ctx, parts[1]) : sweepsPage(ctx)),
    workers: () => workersPage(ctx),
  };
  const render = pages[page] || (() => { view.append(h("p", {}, "No such page. ", h("a", { href: "#/jobs" }, "Jobs"))); });
  try {
    cleanup = render() || null;
  } catch (err) {
    showError(err);
  }
}

const keyForm = document.getElementById("key-form");
const keyInput = document.getElementById("key-input");
const forget = document.getElementById("key-forget");
function showKeyState() {
  const has = Boolean(getKey());
  forget.hidden = !has;
  keyInput.placeholder = has ? "a key is in use (paste another to switch)" : "API key (kept in this tab only)";
}
keyForm.addEventListener("submit", (e) => {
  e.preventDefault();
  if (keyInput.value.trim()) setKey(keyInput.value.trim());
  keyInput.value = "";
  showKeyState();
  route();
});
forget.addEventListener("click", () => { setKey(null); showKeyState(); route(); });

window.addEventListener("hashchange", route);
showKeyState();
route();
export { api };
