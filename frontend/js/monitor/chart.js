// A uPlot line chart of the last minutes, sized to its container.
import { html, useEffect, useRef } from "../lib/react.js";
import uPlot from "/vendor/uplot/dist/uPlot.esm.js";

const COLOURS = ["#4f46e5", "#059669", "#d97706", "#dc2626", "#0891b2", "#7c3aed", "#65a30d", "#db2777"];

// `series`: [{label, values}] sharing `times` (unix seconds); y is 0..100 (percent).
export function LineChart({ title, times, series, testid }) {
  const box = useRef(null);
  const plot = useRef(null);
  const labels = series.map((s) => s.label).join("|");

  useEffect(() => {
    const width = Math.max(200, box.current.clientWidth);
    const options = {
      width, height: 180,
      scales: { x: { time: true }, y: { range: [0, 100] } },
      axes: [{}, { values: (u, ticks) => ticks.map((v) => `${v}%`), size: 48 }],
      series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: COLOURS[i % COLOURS.length], width: 2, spanGaps: false }))],
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
    };
    plot.current = new uPlot(options, [times, ...series.map((s) => s.values)], box.current);
    const observer = new ResizeObserver(() => {
      const w = Math.max(200, box.current.clientWidth);
      plot.current && plot.current.setSize({ width: w, height: 180 });
    });
    observer.observe(box.current);
    return () => { observer.disconnect(); plot.current.destroy(); plot.current = null; };
  }, [labels]); // a new set of series (a GPU appeared) needs a new chart; data alone does not

  useEffect(() => {
    plot.current && plot.current.setData([times, ...series.map((s) => s.values)]);
  });

  return html`<figure class="min-w-0 rounded-xl border border-slate-200 bg-white p-3 shadow-sm" data-testid=${testid}>
    <figcaption class="mb-1 text-sm font-medium">${title}</figcaption>
    <div ref=${box} class="w-full overflow-hidden"></div>
  </figure>`;
}
