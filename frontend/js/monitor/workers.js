// The Ray pool's workers, one card each: where it runs, its state, its GPU(s) and what it is making.
// A sample without `cluster` (an older server) or an embedded studio shows nothing here.
import { html } from "../lib/react.js";
import { GpuTiles } from "./gpu.js";

const STATE_STYLE = {
  starting: "bg-sky-100 text-sky-800",
  idle: "bg-slate-200 text-slate-700",
  running: "bg-emerald-100 text-emerald-800",
  lost: "bg-red-100 text-red-800",
};

export function isPool(cluster) {
  return !!cluster && cluster.mode === "ray";
}

function stateLabel(t, state) {
  const key = `monitor.workerState.${state}`;
  const text = t(key);
  return text === key ? String(state || "?") : text;
}

// `transition` and `take` are 1-based, as the storyboard numbers them (the pool sends them so). A
// task of a job that names no transition is its post-processing (restore, upscale, interpolation,
// the final encode).
function runningText(t, running) {
  if (!running) return null;
  const job = String(running.job_id || "").slice(0, 8);
  if (running.transition === null || running.transition === undefined) return t("monitor.workerPost", { job });
  return t("monitor.workerRuns", { job, n: Number(running.transition), k: running.take ?? 1 });
}

function WorkerGpus({ gpu, t }) {
  if (!gpu || !gpu.available || !(gpu.devices || []).length) {
    return html`<p class="text-xs text-slate-500" data-testid="worker-no-gpu">
      ${t("monitor.workerNoGpu")}${gpu && gpu.reason ? ` — ${gpu.reason}` : ""}</p>`;
  }
  return html`<div class="space-y-2">
    ${gpu.devices.map((device) => html`<div key=${device.index} data-testid="worker-gpu">
      <div class="mb-1 truncate text-xs text-slate-600">GPU ${device.index}: ${device.name || t("monitor.unavailable")}</div>
      <${GpuTiles} gpu=${device} t=${t} full=${false} />
    </div>`)}
  </div>`;
}

function WorkerCard({ worker, t }) {
  const running = runningText(t, worker.running);
  return html`<article class="min-w-0 rounded-xl border border-slate-200 bg-white p-4 shadow-sm"
      data-testid="worker-card" data-worker=${worker.name} data-state=${worker.state}>
    <header class="mb-2 flex flex-wrap items-baseline gap-x-2 gap-y-1">
      <h3 class="font-semibold" data-testid="worker-name">${worker.name}</h3>
      <span class="font-mono text-xs text-slate-500" data-testid="worker-node">${worker.node || ""}${worker.pid != null ? ` · pid ${worker.pid}` : ""}</span>
      <span class=${`ml-auto rounded-full px-2 py-0.5 text-xs font-medium ${STATE_STYLE[worker.state] || STATE_STYLE.idle}`}
        data-testid="worker-state">${stateLabel(t, worker.state)}</span>
    </header>
    <p class="mb-2 truncate text-sm tabular-nums" data-testid="worker-running">
      ${running ? html`${running}${worker.running.engine ? html` <span class="text-slate-500">· ${worker.running.engine}</span>` : ""}`
        : html`<span class="text-slate-500">${t("monitor.workerNothing")}</span>`}
    </p>
    <${WorkerGpus} gpu=${worker.gpu} t=${t} />
    <p class="mt-2 text-xs text-slate-500 tabular-nums" data-testid="worker-done">${t("monitor.workerDone", { n: worker.done ?? 0 })}</p>
    ${worker.error && html`<p class="mt-2 break-words rounded-md bg-red-50 p-2 text-xs text-red-800" data-testid="worker-error">${worker.error}</p>`}
  </article>`;
}

export function Workers({ cluster, t }) {
  if (!isPool(cluster)) return null;
  const workers = cluster.workers || [];
  return html`<section class="space-y-3" data-testid="workers">
    <h2 class="flex flex-wrap items-baseline gap-x-2 font-semibold">
      <span>${t("monitor.workers")} (${workers.length})</span>
      <span class="font-mono text-xs font-normal text-slate-500" data-testid="cluster-address">
        Ray${cluster.address ? ` · ${cluster.address}` : ` · ${t("monitor.rayLocal")}`}</span>
    </h2>
    ${cluster.error && html`<p class="break-words rounded-md bg-red-50 p-2 text-sm text-red-800" role="alert" data-testid="cluster-error">${cluster.error}</p>`}
    ${workers.length === 0 && html`<p class="text-sm text-slate-500" data-testid="no-workers">${t("monitor.noWorkers")}</p>`}
    <div class="grid gap-4 md:grid-cols-2">
      ${workers.map((worker) => html`<${WorkerCard} key=${worker.name} worker=${worker} t=${t} />`)}
    </div>
  </section>`;
}
