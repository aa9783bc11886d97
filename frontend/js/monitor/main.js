// The /monitor page: GPUs, RAM and CPU now and over the last 10 minutes, the running job, and
// (on a Ray pool) every worker with its GPU and what it runs.
import { html, mount, useState, useEffect, useReducer } from "../lib/react.js";
import { LangProvider, LangToggle, useLang } from "../lib/i18n.js";
import { LoginGate } from "../lib/login.js";
import { api } from "../lib/api.js";
import { connectSocket } from "../lib/socket.js";
import { megabytes, number, percent } from "../lib/format.js";
import { jobsReducer, initialJobs, actionFor, sortedJobs, loadMeta } from "../lib/jobs-store.js";
import { LineChart } from "./chart.js";
import { GpuCard, Tile } from "./gpu.js";
import { Workers, isPool } from "./workers.js";
import { stageName } from "../studio/jobs.js";

const WINDOW_S = 600;

function trim(samples) {
  if (!samples.length) return samples;
  const newest = samples[samples.length - 1].time;
  return samples.filter((s) => s.time > newest - WINDOW_S);
}

function RunningJob({ jobs, live, t }) {
  const running = jobs.filter((job) => job.status === "running");
  const queued = jobs.filter((job) => job.status === "queued").length;
  return html`<section class="rounded-xl border border-slate-200 bg-white p-4 shadow-sm" data-testid="monitor-job">
    <h2 class="mb-2 font-semibold">${t("monitor.job")}${queued ? html` <span class="text-sm font-normal text-slate-500">(+${queued} ${t("status.queued")})</span>` : ""}</h2>
    ${running.length === 0 && html`<p class="text-sm text-slate-500">${t("monitor.noJob")}</p>`}
    ${running.map((job) => {
      const p = live[job.id] || {};
      const stage = p.stage || job.stage;
      const current = job.current || {};
      const segment = p.segment ?? current.segment, segments = p.segments ?? current.segments;
      return html`<div key=${job.id} class="flex flex-wrap items-center gap-x-4 gap-y-1 text-sm tabular-nums">
        <span class="font-mono text-xs text-slate-500">${job.id.slice(0, 8)}</span>
        <span>${job.engine}</span>
        <span data-testid="monitor-job-stage">${stageName(t, stage)}</span>
        <span>${segment != null ? `${t("jobs.segment")} ${segment}/${segments}` : ""}</span>
        <span class="w-16">${percent(p.progress ?? job.progress, 1)}</span>
      </div>`;
    })}
  </section>`;
}

function Monitor() {
  const { t, te } = useLang();
  const [samples, setSamples] = useState([]);
  const [error, setError] = useState("");
  const [jobsState, dispatch] = useReducer(jobsReducer, initialJobs);
  const [statusesKnown, setStatusesKnown] = useState(false); // the server's finished set, for the reducer

  useEffect(() => {
    // The snapshot first so the page has figures before the socket's first sample.
    api.get("/api/system").then((s) => setSamples((list) => (list.length ? list : [s]))).catch((err) => setError(err));
    return connectSocket("/ws/monitor", {
      onMessage: (message) => {
        if (message.type === "history") setSamples(trim(message.samples || []));
        else if (message.type === "sample") setSamples((list) => trim([...list, message.sample]));
      },
    });
  }, []);

  useEffect(() => { loadMeta(api.get).then(() => setStatusesKnown(true)); }, []);
  useEffect(() => (statusesKnown ? connectSocket("/ws", {
    onOpen: () => api.get("/api/jobs").then((body) => dispatch({ type: "list", jobs: body.jobs })).catch(() => {}),
    onMessage: (message) => { const action = actionFor(message); if (action) dispatch(action); },
  }) : undefined), [statusesKnown]);

  const latest = samples[samples.length - 1];
  const pool = !!latest && isPool(latest.cluster);
  const valid = samples.filter((s) => s.memory && s.cpu);
  const times = valid.map((s) => s.time);
  const devices = latest && latest.gpu ? latest.gpu.devices || [] : [];
  const gpuSeries = devices.flatMap((d) => [
    { label: `GPU ${d.index} ${t("monitor.util")}`, values: valid.map((s) => s.gpu?.devices?.[d.index]?.utilization_percent ?? null) },
    { label: `GPU ${d.index} ${t("monitor.vram")}`, values: valid.map((s) => {
      const g = s.gpu?.devices?.[d.index];
      return g && g.memory_total_mb ? (100 * g.memory_used_mb) / g.memory_total_mb : null;
    }) },
  ]);
  const systemSeries = [
    { label: "CPU %", values: valid.map((s) => s.cpu.percent) },
    { label: "RAM %", values: valid.map((s) => s.memory.percent) },
  ];

  return html`<div class="mx-auto max-w-6xl space-y-4 p-3 sm:p-6">
    <header class="flex flex-wrap items-center gap-3">
      <h1 class="text-xl font-bold sm:text-2xl">${t("monitor.title")}</h1>
      <nav class="ml-auto flex items-center gap-2">
        <a href="/" class="rounded-md px-3 py-1 text-sm text-indigo-700 hover:bg-indigo-50">${t("app.studio")}</a>
        <${LangToggle} />
      </nav>
    </header>
    ${error && html`<p class="rounded-md bg-red-50 p-2 text-sm text-red-800" role="alert">${te(error)}</p>`}
    ${latest && html`<${RunningJob} jobs=${sortedJobs(jobsState)} live=${jobsState.live} t=${t} />`}
    ${latest && latest.gpu && !latest.gpu.available && (pool
      // A pool's studio host often has no GPU of its own (`ray start --head --num-gpus=0`): that is no fault.
      ? html`<p class="rounded-xl border border-slate-200 bg-white p-4 text-sm text-slate-600" data-testid="no-gpu">
          ${t("monitor.noLocalGpu")}</p>`
      : html`<p class="rounded-xl border border-amber-300 bg-amber-50 p-4 text-sm text-amber-900" data-testid="no-gpu">
          <span class="font-semibold">${t("monitor.noGpu")}</span> — ${latest.gpu.reason || ""}</p>`)}
    ${devices.map((gpu) => html`<${GpuCard} key=${gpu.index} gpu=${gpu} t=${t} />`)}
    ${pool && html`<${Workers} cluster=${latest.cluster} t=${t} />`}
    ${latest && latest.memory && html`<section class="grid gap-4 md:grid-cols-2">
      <article class="rounded-xl border border-slate-200 bg-white p-4 shadow-sm" data-testid="ram-card">
        <h2 class="mb-2 font-semibold">${t("monitor.ram")}</h2>
        <div class="grid grid-cols-3 gap-2">
          <${Tile} label="used" value=${megabytes(latest.memory.used_mb)} testid="ram-used" sub=${`/ ${megabytes(latest.memory.total_mb)}`} />
          <${Tile} label="%" value=${number(latest.memory.percent, "%", 1)} testid="ram-percent" />
          <${Tile} label=${t("monitor.process")} value=${megabytes(latest.process && latest.process.rss_mb)} testid="process-rss" />
        </div>
      </article>
      <article class="rounded-xl border border-slate-200 bg-white p-4 shadow-sm" data-testid="cpu-card">
        <h2 class="mb-2 font-semibold">${t("monitor.cpu")}</h2>
        <div class="grid grid-cols-2 gap-2">
          <${Tile} label="%" value=${number(latest.cpu.percent, "%", 1)} testid="cpu-percent"
            sub=${latest.cpu.count ? t("monitor.cores", { n: latest.cpu.count }) : ""} />
        </div>
      </article>
    </section>`}
    <h2 class="pt-2 text-sm font-semibold uppercase tracking-wide text-slate-500">${t("monitor.charts")}</h2>
    <div class="grid gap-4 md:grid-cols-2">
      <${LineChart} title=${`${t("monitor.cpu")} · ${t("monitor.ram")}`} times=${times} series=${systemSeries} testid="chart-system" />
      ${gpuSeries.length > 0 && html`<${LineChart} title=${t("monitor.gpu")} times=${times} series=${gpuSeries} testid="chart-gpu" />`}
    </div>
    ${latest && latest.gpu && latest.gpu.driver && html`<p class="text-xs text-slate-500">${t("monitor.driver")} ${latest.gpu.driver}</p>`}
    <${LoginGate} />
  </div>`;
}

mount(() => html`<${LangProvider}><${Monitor} /><//>`, document.getElementById("root"));
