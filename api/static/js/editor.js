// New job: a JSON editor started from the lab's examples, checked as you type by
// POST /v1/jobs?dry_run=true (stores nothing); each 422 detail shown with the field it names
// and its line, the network's summary table, and submit.
import { api, ApiError } from "./api.js";
import { h, table, debounce, layerLabel } from "./dom.js";

// the line of the field a loc names ("model.layers.3.units"), found by walking the JSON text
export function lineOf(text, loc) {
  let pos = 0;
  for (const part of loc) {
    if (typeof part === "number") {
      // the n-th element: count top-level items of the array that starts at or after pos
      let i = text.indexOf("[", pos), depth = 0, n = 0;
      if (i < 0) break;
      for (let j = i + 1; j < text.length; j++) {
        const c = text[j];
        if (c === '"') { j = text.indexOf('"', j + 1); while (text[j - 1] === "\\") j = text.indexOf('"', j + 1); continue; }
        if (c === "[" || c === "{") { if (depth === 0 && n === part) { pos = j; break; } depth++; }
        else if (c === "]" || c === "}") { if (depth === 0) break; depth--; }
        else if (c === "," && depth === 0) n++;
        else if (depth === 0 && n === part && !/\s/.test(c)) { pos = j; break; }
      }
    } else {
      const i = text.indexOf(`"${part}"`, pos);
      if (i < 0) break;
      pos = i;
    }
  }
  return text.slice(0, pos).split("\n").length;
}

export function newJobPage(ctx) {
  const ac = new AbortController();
  const pick = h("select", { id: "example", "aria-label": "start from an example" }, h("option", { value: "" }, "start from an example…"));
  const textarea = h("textarea", { id: "spec", spellcheck: false, wrap: "off", "aria-label": "job spec (JSON)" });
  // line numbers beside the text, the lines an error names marked (the messages say "line 17")
  const gutter = h("pre", { class: "gutter", id: "gutter", "aria-hidden": "true" });
  const code = h("div", { class: "code" }, gutter, textarea);
  let bad = new Set();
  const numberLines = () => {
    const n = textarea.value.split("\n").length;
    gutter.replaceChildren(...Array.from({ length: n }, (_, i) => (bad.has(i + 1) ? h("span", { class: "bad", dataset: { line: String(i + 1) } }, `${i + 1}\n`) : `${i + 1}\n`)));
    gutter.scrollTop = textarea.scrollTop;
  };
  const mark = (lines) => { bad = new Set(lines); code.classList.toggle("invalid", bad.size > 0); numberLines(); };
  textarea.addEventListener("scroll", () => { gutter.scrollTop = textarea.scrollTop; });
  const state = h("div", { id: "check-state", class: "muted" }, "type or pick an example");
  const errors = h("ul", { class: "errors", id: "errors" });
  const summary = h("div", { id: "summary" });
  const submit = h("button", { id: "submit", disabled: true }, "Submit job");
  const result = h("div", { id: "submit-result" });
  ctx.view.append(h("h1", {}, "New job"), h("div", { class: "toolbar" }, pick, submit, result),
    h("div", { class: "editor-wrap" }, code, h("div", {}, state, errors, summary)));
  numberLines();

  let seq = 0;
  const check = async () => {
    const mine = ++seq;
    errors.replaceChildren(); submit.disabled = true; mark([]);
    let spec;
    try { spec = JSON.parse(textarea.value); } catch (e) {
      state.textContent = "not valid JSON yet";
      errors.append(h("li", { dataset: { loc: "" } }, e.message));
      // V8 says "... at position 123" (or "line 4 column 2"): mark that line
      const at = /line (\d+)/.exec(e.message)?.[1] ?? (/position (\d+)/.exec(e.message) ? textarea.value.slice(0, +/position (\d+)/.exec(e.message)[1]).split("\n").length : null);
      mark(at ? [+at] : []);
      code.classList.add("invalid");
      return;
    }
    state.textContent = "checking…";
    try {
      const dry = await api("/v1/jobs?dry_run=true", { method: "POST", json: spec, signal: ac.signal });
      if (mine !== seq) return;
      state.textContent = `valid: ${dry.summary.total_params.toLocaleString()} parameters, ${dry.epochs} epochs at most, queue ${dry.queue}`;
      state.className = "ok";
      const s = dry.summary;
      summary.replaceChildren(h("p", {}, `input ${JSON.stringify(s.input_shape)} · ${s.task} · loss ${s.loss} · ${s.n_outputs} outputs`),
        table(["#", "layer", "output shape", "params"], s.layers.map((l) => h("tr", {}, h("td", {}, l.index), h("td", {}, layerLabel(l)),
          h("td", {}, JSON.stringify(l.output_shape)), h("td", { class: "num" }, l.params.toLocaleString()))), { id: "summary-table" }),
        (s.notes || []).length ? h("ul", { id: "summary-notes", class: "muted" }, s.notes.map((n) => h("li", {}, n))) : null);
      submit.disabled = false;
    } catch (err) {
      if (mine !== seq || ac.signal.aborted) return;
      state.className = "error";
      summary.replaceChildren();
      if (!(err instanceof ApiError) || err.status !== 422) { state.textContent = err.message; if (err.status === 401) ctx.showError(err); return; }
      state.textContent = "the spec has problems:";
      const lines = [];
      for (const d of err.body.details || []) {
        const loc = (d.loc || []).join(".");
        const line = lineOf(textarea.value, d.loc || []);
        lines.push(line);
        // a click selects the named field's line in the editor
        const jump = () => {
          const lines = textarea.value.split("\n");
          const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
          textarea.focus();
          textarea.setSelectionRange(start, start + (lines[line - 1] || "").length);
        };
        errors.append(h("li", { dataset: { loc, line: String(line) }, onclick: jump, title: "show this field in the editor" },
          h("code", { class: "loc" }, loc || "(spec)"), ` line ${line}: ${d.msg}`));
      }
      mark(lines);
    }
  };
  const later = debounce(check, 400);
  textarea.addEventListener("input", () => { numberLines(); later(); });
  pick.addEventListener("change", async () => {
    if (!pick.value) return;
    textarea.value = JSON.stringify(await api(`/dashboard/examples/${pick.value}`), null, 2);
    numberLines();
    check();
  });
  submit.addEventListener("click", async () => {
    submit.disabled = true;
    try {
      const job = await api("/v1/jobs", { method: "POST", json: JSON.parse(textarea.value) });
      result.replaceChildren("submitted: ", h("a", { href: `#/jobs/${job.id}`, id: "new-job-link" }, job.name || job.id));
    } catch (err) { ctx.showError(err); submit.disabled = false; }
  });
  api("/dashboard/examples", { signal: ac.signal }).then((all) => {
    for (const name of Object.keys(all)) pick.append(h("option", { value: name }, name));
  }).catch(() => {});
  return () => ac.abort();
}
