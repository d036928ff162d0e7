// Datasets: the tenant's uploads and a form to upload a CSV (with its target column) or an NPZ.
import { api } from "./api.js";
import { h, when, table } from "./dom.js";

export function datasetsPage(ctx) {
  const ac = new AbortController();
  const file = h("input", { type: "file", id: "upload-file", accept: ".csv,.npz", required: true, "aria-label": "file (.csv or .npz)" });
  const name = h("input", { id: "upload-name", placeholder: "name (optional)", "aria-label": "name" });
  const target = h("input", { id: "upload-target", placeholder: "target column (CSV; default: the last)", "aria-label": "target column" });
  const out = h("span", { id: "upload-result" });
  const list = h("div", { id: "datasets" });
  const form = h("form", { class: "toolbar", id: "upload-form" }, file, name, target, h("button", { type: "submit" }, "Upload"), out);
  ctx.view.append(h("h1", {}, "Datasets"), form, list);
  const load = async () => {
    const { items } = await api("/v1/datasets?limit=200", { signal: ac.signal });
    list.replaceChildren(items.length ? table(["name", "id", "format", "samples", "input shape", "task", "classes", "size", "uploaded"],
      items.map((d) => h("tr", { dataset: { datasetId: d.id } }, h("td", {}, d.name || ""), h("td", {}, h("code", {}, d.id)), h("td", {}, d.format),
        h("td", { class: "num" }, d.n_samples), h("td", {}, JSON.stringify(d.input_shape)), h("td", {}, d.task), h("td", { class: "num" }, d.n_classes ?? ""),
        h("td", { class: "num" }, `${(d.size_bytes / 1024).toFixed(1)} KiB`), h("td", {}, when(d.created_at))))) : h("p", { class: "muted" }, "No data sets uploaded yet."));
  };
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = new FormData();
    body.append("file", file.files[0]);
    if (name.value.trim()) body.append("name", name.value.trim());
    if (target.value.trim()) body.append("target", target.value.trim());
    out.textContent = "uploading…";
    try {
      const d = await api("/v1/datasets", { method: "POST", body });
      // which column became the label, and its classes: a forgotten target would take the last column
      const label = d.target ? ` · target column '${d.target}'${target.value.trim() ? "" : " (the last; name another in “target column”)"}` +
        (d.classes ? ` · ${d.classes.length} classes: ${d.classes.slice(0, 10).join(", ")}${d.classes.length > 10 ? ", …" : ""}` : " · numbers: regression") : "";
      out.textContent = `uploaded ${d.id}${label} · use {"dataset": {"id": "${d.id}"}} in a spec`;
      await load();
    } catch (err) { out.textContent = ""; ctx.showError(err); }
  });
  load().catch((e) => !ac.signal.aborted && ctx.showError(e));
  return () => ac.abort();
}
