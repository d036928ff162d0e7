// Learning curves with uPlot: x = epoch, one line per series; the best epoch, the stop epoch and
// the over-fitting region (after the best epoch, where validation got worse) marked as the PNG does.
import uPlot from "/static/vendor/uplot-1.6.32/uPlot.esm.js";

const COLORS = ["#2b6cb0", "#dd6b20", "#2f855a", "#805ad5", "#c53030", "#319795", "#d69e2e", "#b83280", "#4a5568", "#38a169"];

// epochs are whole: ticks 1, 2, 5, 10, 20, 50… apart, never 0.5 (uPlot's default steps are decimal)
const EPOCH_STEPS = Array.from({ length: 7 }, (_, i) => [1, 2, 5].map((m) => m * 10 ** i)).flat();
// the labels drawn, also kept on the element (the canvas has no text to read)
const epochTicks = (el) => (u, splits) => {
  const labels = splits.map((v) => (v == null ? "" : String(v)));
  el.dataset.xTicks = labels.join(",");
  return labels;
};

// The y axis of a measure, the rule of the PNG plots (netfit/plots.py _y_scale): losses on a log
// axis (the first epochs' large losses would flatten the rest; a loss halving looks alike at any
// level), accuracy on 0..1, RMSE and MAE linear.
export function axisFor(measure) {
  if (measure === "loss") return { log: true };
  if (measure === "accuracy") return { range: [-0.02, 1.02] };
  return {};
}

// log: a log y axis (a value <= 0 is a gap, as on the PNG); range: a fixed [min, max]
export function lineChart(el, { title, labels, marks = () => ({}), width, height = 260, log = false, range = null }) {
  el.dataset.yScale = log ? "log" : "linear";
  // a log axis spans the data's own range, not whole decades (0.5-1.1 drawn on 0.1-10 is flat)
  const y = log ? { distr: 3, range: (u, min, max) => (min > 0 ? [min / 1.2, max * 1.2] : [0.1, 10]) } : range ? { range: () => range } : null;
  const opts = {
    title, width: width || Math.max(320, el.clientWidth || 600), height,
    scales: { x: { time: false }, ...(y ? { y } : {}) },
    // a log axis labels its decades: 1e-5, not the "0" of uPlot's default below 0.001
    axes: [{ label: "epoch", incrs: EPOCH_STEPS, values: epochTicks(el) }, log ? { values: (u, splits) => splits.map((v) => (v == null ? "" : v >= 0.001 ? String(+v.toPrecision(3)) : v.toExponential(0))) } : {}],
    series: [{ label: "epoch" }, ...labels.map((label, i) => ({
      label, stroke: COLORS[i % COLORS.length], width: 1.6, spanGaps: true,
      dash: label.startsWith("train") ? [6, 4] : undefined,
    }))],
    hooks: { draw: [(u) => drawMarks(u, marks())] },
  };
  const data = [[], ...labels.map(() => [])];
  const plot = new uPlot(opts, data, el);
  return {
    plot,
    // rows: [{epoch, key: value}], keys in the order of labels
    set(xs, columns) { plot.setData([xs, ...(log ? columns.map((c) => c.map((v) => (v > 0 ? v : null))) : columns)]); },
  };
}

function drawMarks(u, { best, stop }) {
  const ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;
  const x = (epoch) => u.valToPos(epoch, "x", true);
  ctx.save();
  if (best != null && stop != null && stop > best) {  // over-fitting: past the best epoch until the stop
    ctx.fillStyle = "rgba(197, 48, 48, 0.08)";
    ctx.fillRect(x(best), top, x(stop) - x(best), h);
  }
  const line = (epoch, color, text) => {
    if (epoch == null) return;
    ctx.strokeStyle = color; ctx.fillStyle = color; ctx.lineWidth = 1.5; ctx.setLineDash([4, 3]);
    ctx.beginPath(); ctx.moveTo(x(epoch), top); ctx.lineTo(x(epoch), top + h); ctx.stroke();
    ctx.font = `${11 * devicePixelRatio}px system-ui`;
    // at the right edge the label goes left of its line (it was cut off at the last epoch)
    const w = ctx.measureText(text).width, at = x(epoch) + 4 + w > u.bbox.left + u.bbox.width ? x(epoch) - 4 - w : x(epoch) + 4;
    ctx.fillText(text, at, top + 14 * devicePixelRatio);
  };
  if (best != null && best === stop) line(best, "#2f855a", `best = stop ${best}`);  // one label, not two on top of each other
  else { line(best, "#2f855a", `best ${best}`); line(stop, "#c53030", `stop ${stop}`); }
  ctx.restore();
}
