// Learning curves with uPlot: x = epoch, one line per series; the best epoch, the stop epoch and
// the band after the best epoch marked by the rule of the PNG plots (netfit/plots.py after_best).
import uPlot from "/static/vendor/uplot-1.6.32/uPlot.esm.js";
import { num } from "./dom.js";

const COLORS = ["#2b6cb0", "#dd6b20", "#2f855a", "#805ad5", "#c53030", "#319795", "#d69e2e", "#b83280", "#4a5568", "#38a169"];
// the legend entry of the shaded band, word for word the PNG's (netfit/plots.py BAND_LABEL)
export const BAND_LABEL = "after the best epoch: validation no better";
const BEST_COLOR = "#2f855a", STOP_COLOR = "#c53030", BAND_FILL = "rgba(197, 48, 48, 0.10)";

// epochs are whole: ticks 1, 2, 5, 10, 20, 50… apart, never 0.5 (uPlot's default steps are decimal)
const EPOCH_STEPS = Array.from({ length: 7 }, (_, i) => [1, 2, 5].map((m) => m * 10 ** i)).flat();
// the labels drawn, also kept on the element (the canvas has no text to read)
const epochTicks = (el) => (u, splits) => {
  const labels = splits.map((v) => (v == null ? "" : String(v)));
  el.dataset.xTicks = labels.join(",");
  return labels;
};
// y ticks: 3 significant digits with the leading zero ("0.0177", never ".0177"), 1e-5 below 0.001
const yTicks = (u, splits) => splits.map((v) => (v == null ? "" : v === 0 ? "0" : Math.abs(v) >= 0.001 ? String(+v.toPrecision(3)) : v.toExponential(0)));
// room for the widest y label: uPlot's fixed 50 px cut "0.0177" to ")0177" on narrow charts
function ySize(u, values) {
  if (!values) return 50;
  u.ctx.save();
  u.ctx.font = u.axes[1].font?.[0] || "12px system-ui";
  const widest = Math.max(...values.map((v) => u.ctx.measureText(v || "").width));
  u.ctx.restore();
  return Math.ceil(widest / devicePixelRatio) + 18;
}

// The y axis of a measure, the rule of the PNG plots (netfit/plots.py _y_scale): losses on a log
// axis (the first epochs' large losses would flatten the rest; a loss halving looks alike at any
// level), accuracy on 0..1 with room above 1.0 (a perfect score is a line, not the border), RMSE
// and MAE linear.
export function axisFor(measure) {
  if (measure === "loss") return { log: true };
  if (measure === "accuracy") return { range: [-0.02, 1.05] };
  return {};
}

// the last value of a series (the legend shows it while the cursor is off the chart, not "--")
const lastOf = (values) => { for (let i = values.length - 1; i >= 0; i--) if (values[i] != null) return values[i]; return null; };

// A log axis's low end, down to 1, 2, 2.5 or 5 × 10^k (uPlot's own steps). uPlot's log ticks
// step from the low end: from another value (9.7e-8) a step rounded to 0 and the ticks grew
// until "Invalid array length", and the chart was never drawn.
function logFloor(v) {
  const exp = Math.floor(Math.log10(v));
  const mult = [5, 2.5, 2, 1].find((m) => m * 10 ** exp <= v) ?? 1;
  return +`${mult}e${exp}`;  // as uPlot spells its steps: 2.5e-7, not 2.5 * 1e-7
}

// log: a log y axis (a value <= 0 is a gap, as on the PNG); range: a fixed [min, max];
// marks() -> {best, stop, band}: the epochs to mark (band: [first, last] or null)
export function lineChart(el, { title, labels, marks = () => ({}), width, height = 260, log = false, range = null, points = null }) {
  el.dataset.yScale = log ? "log" : "linear";
  // a log axis spans the data's own range, not whole decades (0.5-1.1 drawn on 0.1-10 is flat)
  const y = log ? { distr: 3, range: (u, min, max) => (min > 0 ? [logFloor(min / 1.2), max * 1.2] : [0.1, 10]) } : range ? { range: () => range } : null;
  const value = (u, v, sidx, idx) => num(idx == null ? lastOf(u.data[sidx]) : v);
  const opts = {
    title, width: width || Math.max(280, el.clientWidth || 600), height,
    scales: { x: { time: false }, ...(y ? { y } : {}) },
    axes: [{ label: "epoch", incrs: EPOCH_STEPS, values: epochTicks(el) }, { values: yTicks, size: ySize }],
    series: [{ label: "epoch", value: (u, v, sidx, idx) => String(idx == null ? lastOf(u.data[0]) ?? "" : v) },
      ...labels.map((label, i) => ({ label, stroke: COLORS[i % COLORS.length], width: 1.6, spanGaps: true, value }))],
    hooks: { draw: [(u) => drawMarks(u, el, marks(), points ? points() : [])] },
  };
  const data = [[], ...labels.map(() => [])];
  const plot = new uPlot(opts, data, el);
  return {
    plot,
    // xs: epochs; columns: one array per label, in the order of labels
    set(xs, columns) {
      plot.setData([xs, ...(log ? columns.map((c) => c.map((v) => (v > 0 ? v : null))) : columns)]);
      plot.setLegend({ idx: null });
    },
  };
}

// The band after the best epoch: the PNG's rule (netfit/plots.py after_best), from the best epoch
// to the last one drawn, when the run went on past it.
export function afterBest(best, lastEpoch) {
  return best != null && lastEpoch != null && lastEpoch > best ? [best, lastEpoch] : null;
}

// The marks drawn on the canvas; each label's box (CSS pixels, relative to the chart) is kept in
// data-labels so that a test can check that no two overlap.
function drawMarks(u, el, { best, stop, band }, points) {
  const ctx = u.ctx, top = u.bbox.top, h = u.bbox.height, dpr = devicePixelRatio;
  const x = (epoch) => u.valToPos(epoch, "x", true);
  ctx.save();
  if (band) {
    ctx.fillStyle = BAND_FILL;
    ctx.fillRect(x(band[0]), top, x(band[1]) - x(band[0]), h);
  }
  const boxes = [];
  const line = (epoch, color, text) => {
    if (epoch == null) return;
    ctx.strokeStyle = color; ctx.fillStyle = color; ctx.lineWidth = 1.5; ctx.setLineDash([4, 3]);
    ctx.beginPath(); ctx.moveTo(x(epoch), top); ctx.lineTo(x(epoch), top + h); ctx.stroke();
    ctx.font = `${11 * dpr}px system-ui`;
    const w = ctx.measureText(text).width, lineH = 14 * dpr;
    // right of its line, or left of it at the right edge; one row lower while it would overlap a label already drawn
    let at = x(epoch) + 4 * dpr + w > u.bbox.left + u.bbox.width ? x(epoch) - 4 * dpr - w : x(epoch) + 4 * dpr;
    if (at < u.bbox.left) at = u.bbox.left;
    let row = 0;
    const hits = (b) => boxes.some((o) => b.x < o.x + o.w && o.x < b.x + b.w && b.y < o.y + o.h && o.y < b.y + b.h);
    let box;
    do { box = { x: at, y: top + 3 * dpr + row * lineH, w, h: lineH - 2 * dpr }; row++; } while (hits(box) && row < 6);
    boxes.push(box);
    ctx.fillText(text, at, box.y + 11 * dpr);
  };
  if (best != null && best === stop) line(best, BEST_COLOR, `best = stop ${best}`);
  else { line(best, BEST_COLOR, `best ${best}`); line(stop, STOP_COLOR, `stop ${stop}`); }
  // a dot per series at its own best epoch (the comparison's markers)
  for (const { sidx, epoch } of points) {
    const i = u.data[0].indexOf(epoch), v = i >= 0 ? u.data[sidx][i] : null;
    if (v == null) continue;
    ctx.fillStyle = u.series[sidx].stroke(); ctx.setLineDash([]);
    ctx.beginPath(); ctx.arc(x(epoch), u.valToPos(v, "y", true), 4 * dpr, 0, 2 * Math.PI); ctx.fill();
  }
  ctx.restore();
  el.dataset.labels = JSON.stringify(boxes.map((b) => [b.x, b.y, b.w, b.h].map((n) => Math.round(n / dpr))));
}

// What the marks mean, under a chart (the canvas marks have no legend of their own).
export function marksKey({ band = true, best = true, stop = true, dots = false } = {}) {
  const item = (style, text) => uPlotKeyItem(style, text);
  return [
    band ? item({ background: BAND_FILL, border: "1px solid rgba(197,48,48,.35)" }, `shaded: ${BAND_LABEL} (training loss still falling there: over-fitting)`) : null,
    best ? item({ borderLeft: `2px dashed ${BEST_COLOR}` }, "best: the best epoch, the weights the job keeps") : null,
    stop ? item({ borderLeft: `2px dashed ${STOP_COLOR}` }, "stop: where the run ended before its last epoch") : null,
    dots ? item({ background: "#4a5568", borderRadius: "50%" }, "dot: that job's best epoch") : null,
  ].filter(Boolean);
}

function uPlotKeyItem(style, text) {
  const swatch = document.createElement("span");
  swatch.className = "swatch";
  Object.assign(swatch.style, style);
  const li = document.createElement("li");
  li.append(swatch, text);
  return li;
}
