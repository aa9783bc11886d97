// How the page shows one GPU's figures: the studio host's own GPUs and each Ray worker's use the
// same tiles, so a figure reads the same wherever it appears.
import { html } from "../lib/react.js";
import { megabytes, number } from "../lib/format.js";

export function Tile({ label, value, sub, testid }) {
  return html`<div class="min-w-0 rounded-lg bg-slate-50 p-2">
    <div class="text-[11px] uppercase tracking-wide text-slate-500">${label}</div>
    <div class="truncate text-lg font-semibold tabular-nums" data-testid=${testid}>${value}</div>
    ${sub && html`<div class="truncate text-xs text-slate-500 tabular-nums">${sub}</div>`}
  </div>`;
}

// `full`: temperature and power too (the host's cards); a worker card keeps to VRAM and utilisation.
export function GpuTiles({ gpu, t, full = true }) {
  const na = t("monitor.unavailable");
  const or = (value, text) => (value == null ? na : text);
  return html`<div class=${`grid grid-cols-2 gap-2 ${full ? "sm:grid-cols-4" : ""}`}>
    <${Tile} label=${t("monitor.vram")} testid="gpu-vram"
      value=${or(gpu.memory_used_mb, `${megabytes(gpu.memory_used_mb)}`)}
      sub=${gpu.memory_total_mb != null ? `/ ${megabytes(gpu.memory_total_mb)}` : ""} />
    <${Tile} label=${t("monitor.util")} value=${or(gpu.utilization_percent, number(gpu.utilization_percent, "%"))} testid="gpu-util" />
    ${full && html`<${Tile} label=${t("monitor.temp")} value=${or(gpu.temperature_c, number(gpu.temperature_c, " °C"))} testid="gpu-temp" />`}
    ${full && html`<${Tile} label=${t("monitor.power")} value=${or(gpu.power_w, number(gpu.power_w, " W"))} testid="gpu-power"
      sub=${gpu.power_limit_w != null ? `/ ${number(gpu.power_limit_w, " W")}` : ""} />`}
  </div>`;
}

export function GpuCard({ gpu, t }) {
  return html`<article class="rounded-xl border border-slate-200 bg-white p-4 shadow-sm" data-testid="gpu-card">
    <h3 class="mb-2 font-semibold">GPU ${gpu.index}: ${gpu.name || t("monitor.unavailable")}</h3>
    <${GpuTiles} gpu=${gpu} t=${t} />
    ${gpu.errors && gpu.errors.length > 0 && html`<p class="mt-2 text-xs text-slate-500">${gpu.errors.join(" · ")}</p>`}
  </article>`;
}
