// A job's life as its event stream tells it, one line per event: queued, why it waits, running
// (which attempt), lost with its worker, preempted, resumed, and the end. The CLI's `--follow`
// prints the same sentences (netfit/progress.py's life_line).
import { h } from "./dom.js";

const epochWord = (e) => (e ? `after epoch ${e}` : "before its first epoch ended");
const jobLink = (id) => h("a", { href: `#/jobs/${id}` }, `job ${id.slice(0, 8)}`);

// [label, ...what it says (text and links)], or null for a kind that is not part of its life (epochs, packs)
export function lifeParts(kind, d) {
  d = d || {};
  switch (kind) {
    case "status": {
      const s = d.status;
      if (s === "queued") return [s, d.released_by_attempt ? `again (attempt ${d.released_by_attempt} gave it back)` : "sent to a worker's queue"];
      if (s === "running") return [s, d.attempt > 1 ? `again (attempt ${d.attempt})` : "on a worker"];
      return [s, [d.stop_reason && d.stop_reason !== s ? `stopped by ${d.stop_reason}` : null, d.error ? `error: ${d.error}` : null].filter(Boolean).join(" · ")];
    }
    case "waiting": return ["waiting", d.message || `number ${d.position} in line`];
    case "lost": return ["lost", `the worker stopped beating; taken back ${epochWord(d.epoch)}`];
    case "preempted":
      return ["preempted", "by ", d.by ? jobLink(d.by) : "another team's job", ` ${epochWord(d.after_epoch)}; it saved its state and waits to resume`];
    case "resumed":
      if (!d.epoch) return ["resumed", "from the beginning (no saved state yet)"];
      return ["resumed", `from epoch ${d.epoch}`, d.redone ? ` (${d.redone} epoch${d.redone === 1 ? "" : "s"} after it train again)` : ""];
    default: return null;
  }
}

// the job page's list of these lines: add(kind, data) appends one if the kind is part of its life
export function lifeList() {
  const el = h("ol", { id: "life", class: "life" });
  return {
    el,
    add(kind, data) {
      const parts = lifeParts(kind, data);
      if (!parts) return;
      const [label, ...rest] = parts;
      el.append(h("li", { dataset: { kind } }, h("span", { class: `life-label status status-${label}` }, label), " ", ...rest));
    },
  };
}
