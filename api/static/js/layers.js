// Layer statistics on a job's page, when the job recorded them: each layer's gradient norm per
// epoch on a log scale (a deep sigmoid network's first layers sit decades below its last) and a
// table of the last epoch. Fed by the epoch events, which carry the statistics.
import { h, num, table } from "./dom.js";

const REDRAW_MS = 500;  // a replay of 1,000 epochs redraws a few times, not 1,000 times

// typeOf(index): the summary's name of the layer with that index ("linear + relu"), when known
export function layerStatsPanel(lineChart, typeOf = () => null) {
  const chartEl = h("div", { id: "chart-layers" });
  const last = h("div", { id: "layer-stats-table" });
  const el = h("div", { id: "layer-stats", class: "card", hidden: true },
    h("h2", {}, "Layer statistics"),
    h("p", { class: "muted" }, "gradient norm per layer over each epoch (log scale); max |w| and ‖w‖ at its end; layers numbered as in the Layers table"),
    chartEl, last);
  const epochs = new Map();  // epoch -> [{index, type, weight_max_abs, weight_norm, grad_norm}]
  let chart = null, timer = null;

  const render = () => {
    timer = null;
    const xs = [...epochs.keys()].sort((a, b) => a - b);
    const newest = epochs.get(xs[xs.length - 1]);
    el.hidden = false;
    // one line per layer of the newest epoch (a job's layers do not change between epochs)
    if (!chart) {
      chart = lineChart(chartEl, { title: "gradient norm", labels: newest.map((l) => `${l.index}: ${typeOf(l.index) || l.type}`), log: true,
        width: Math.max(260, el.clientWidth - 26) });
    }
    chart.set(xs, newest.map((_, k) => xs.map((e) => {
      const v = epochs.get(e)[k]?.grad_norm;
      return v > 0 ? v : null;  // a log axis has no place for 0 or a missing value
    })));
    chartEl.dataset.points = String(xs.length);
    last.replaceChildren(h("p", {}, `epoch ${xs[xs.length - 1]}`),
      table(["#", "layer", "max |w|", "‖w‖", "grad norm"], newest.map((l) => h("tr", {}, h("td", {}, l.index), h("td", {}, typeOf(l.index) || l.type),
        h("td", { class: "num metric" }, num(l.weight_max_abs)), h("td", { class: "num metric" }, num(l.weight_norm)),
        h("td", { class: "num metric" }, num(l.grad_norm))))));
  };

  return {
    el,
    // an epoch event's statistics (none for jobs recorded without them: the panel stays hidden)
    add(epoch, layers) {
      if (!layers || !layers.length) return;
      epochs.set(epoch, layers);
      if (!timer) timer = setTimeout(render, chart ? REDRAW_MS : 0);
    },
    stop() { clearTimeout(timer); },
  };
}
