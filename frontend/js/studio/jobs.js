// The job list: one card per job with its live progress, preview, result and controls.
import { html, useState, useEffect } from "../lib/react.js";
import { useLang } from "../lib/i18n.js";
import { api } from "../lib/api.js";
import { duration, percent } from "../lib/format.js";
import { isFinished } from "../lib/jobs-store.js";
import { Storyboard } from "./takes.js";
import { ExportMenu } from "./exports.js";

const STATUS_STYLE = {
  queued: "bg-slate-200 text-slate-800",
  running: "bg-blue-100 text-blue-800",
  completed: "bg-emerald-100 text-emerald-800",
  failed: "bg-red-100 text-red-800",
  cancelled: "bg-amber-100 text-amber-800",
  interrupted: "bg-amber-100 text-amber-800",
};

// Re-renders once a second while `active`, so elapsed/ETA count between progress events.
function useTicker(active) {
  const [, setTick] = useState(0);
  useEffect(() => {
    if (!active) return undefined;
    const id = setInterval(() => setTick((n) => n + 1), 1000);
    return () => clearInterval(id);
  }, [active]);
  return performance.now();
}

// The figures shown for a job: the newest progress event wins over the job record it updates.
function progressOf(job, live, now) {
  const current = job.current || {};
  const since = live ? (now - live.receivedAt) / 1000 : 0;
  const running = job.status === "running";
  const pick = (liveKey, jobValue) => (live && live[liveKey] != null ? live[liveKey] : jobValue);
  const elapsed = pick("elapsed_s", job.elapsed_s);
  const eta = pick("eta_s", job.eta_s);
  return {
    stage: pick("stage", job.stage),
    progress: job.status === "completed" ? 1 : pick("progress", job.progress) ?? 0,
    segment: pick("segment", current.segment), segments: pick("segments", current.segments),
    // On a Ray pool several transitions generate at once: all of them are shown.
    running: pick("running", current.running),
    section: pick("section", current.section), sections: pick("sections", current.sections),
    step: pick("step", current.step), steps: pick("steps", current.steps),
    message: live ? live.message : "",
    elapsed: elapsed != null && running && live ? elapsed + since : elapsed,
    eta: eta != null && running && live ? Math.max(0, eta - since) : (running ? eta : null),
  };
}

function Figure({ label, value, testid }) {
  return html`<div class="min-w-0">
    <div class="text-[11px] uppercase tracking-wide text-slate-500">${label}</div>
    <div class="truncate font-medium tabular-nums" data-testid=${testid}>${value}</div>
  </div>`;
}

// Stages the page has no words for (a new pipeline stage) show as the server names them.
export function stageName(t, stage) {
  if (!stage) return "–";
  const label = t(`stage.${stage}`);
  return label === `stage.${stage}` ? stage : label;
}

function fraction(k, n) {
  return k != null && n != null ? `${k}/${n}` : "–";
}

// Running jobs first, then the waiting ones (queued, interrupted) in the queue's order (their
// stored position: the first one runs next), then the others as before, newest first.
export function queueFirst(jobs) {
  const running = jobs.filter((j) => j.status === "running");
  const waiting = jobs.filter((j) => j.status === "queued" || j.status === "interrupted")
    .sort((a, b) => (a.position ?? Infinity) - (b.position ?? Infinity));
  return [...running, ...waiting, ...jobs.filter((j) => !running.includes(j) && !waiting.includes(j))];
}

function JobCard({ job, live, lang, t, place, onUse }) {
  const running = job.status === "running";
  const now = useTicker(running);
  const [error, setError] = useState("");
  const { te } = useLang();
  const p = progressOf(job, live, now);
  const finished = isFinished(job);
  const stageLabel = stageName(t, p.stage);

  async function act(call) {
    setError("");
    try { await call(); } catch (err) { setError(err); }
  }
  const cancel = () => act(() => api.post(`/api/jobs/${job.id}/cancel`));
  const remove = () => act(() => api.del(`/api/jobs/${job.id}`));
  const move = (direction) => act(() => api.post(`/api/jobs/${job.id}/move`, { direction }));
  const waiting = job.status === "queued" || job.status === "interrupted";
  const editable = job.status === "queued" && !job.video_url && !(job.current && job.current.run);
  const small = "rounded-md border border-slate-300 px-2 py-1 text-xs hover:bg-slate-100";

  return html`<li class="rounded-xl border border-slate-200 bg-white p-4 shadow-sm" data-testid="job-card"
      data-job-id=${job.id} data-status=${job.status}>
    <div class="flex items-center gap-2">
      <span class=${`rounded-full px-2 py-0.5 text-xs font-semibold ${STATUS_STYLE[job.status] || ""}`}
        data-testid="job-status">${t(`status.${job.status}`)}</span>
      ${waiting && place && html`<span class="text-xs font-semibold text-slate-700" data-testid="job-queue-place">${t("jobs.queuePos", { n: place })}</span>`}
      <span class="truncate text-xs text-slate-500">${job.engine} · ${(job.images || []).length} img · ${job.id.slice(0, 8)}</span>
      <span class="ml-auto flex gap-2">
        ${!finished && html`<button type="button" onClick=${cancel} data-testid="job-cancel"
          class="rounded-md border border-slate-300 px-2 py-1 text-xs hover:bg-slate-100">${t("jobs.cancel")}</button>`}
        ${waiting && html`<button type="button" onClick=${() => move("up")} data-testid="job-up" title=${t("jobs.up")}
          aria-label=${t("jobs.up")} class=${small}>↑</button>
          <button type="button" onClick=${() => move("down")} data-testid="job-down" title=${t("jobs.down")}
          aria-label=${t("jobs.down")} class=${small}>↓</button>`}
        ${editable && html`<button type="button" onClick=${() => onUse(job, "edit")} data-testid="job-edit" class=${small}>${t("jobs.edit")}</button>`}
        <button type="button" onClick=${() => onUse(job, "duplicate")} data-testid="job-duplicate" class=${small}>${t("jobs.duplicate")}</button>
        ${finished && html`<button type="button" onClick=${remove} data-testid="job-delete"
          class="rounded-md border border-slate-300 px-2 py-1 text-xs hover:bg-red-50">${t("jobs.delete")}</button>`}
      </span>
    </div>

    <div class="mt-3 h-2 overflow-hidden rounded-full bg-slate-100">
      <div class="h-full rounded-full bg-indigo-500 transition-[width] duration-300"
        style=${{ width: `${Math.round((p.progress || 0) * 1000) / 10}%` }}></div>
    </div>
    <div class="mt-2 grid grid-cols-3 gap-x-3 gap-y-2 text-sm sm:grid-cols-7" data-testid="job-progress">
      <${Figure} label=${t("jobs.stage")} value=${stageLabel} testid="job-stage" />
      <${Figure} label="%" value=${percent(p.progress, 1)} testid="job-percent" />
      <${Figure} label=${t("jobs.segment")} value=${p.running && p.running.length > 1 && p.segments != null
        ? `${p.running.join(", ")}/${p.segments}` : fraction(p.segment, p.segments)} testid="job-segment" />
      <${Figure} label=${t("jobs.section")} value=${fraction(p.section, p.sections)} testid="job-section" />
      <${Figure} label=${t("jobs.step")} value=${fraction(p.step, p.steps)} testid="job-step" />
      <${Figure} label=${t("jobs.eta")} value=${duration(p.eta)} testid="job-eta" />
      <${Figure} label=${t("jobs.elapsed")} value=${duration(p.elapsed)} testid="job-elapsed" />
    </div>

    ${running && job.preview_url && html`<figure class="mt-3">
      <figcaption class="mb-1 text-xs text-slate-500">${t("jobs.preview")}</figcaption>
      <div class="aspect-video overflow-hidden rounded-lg bg-slate-900">
        <video key=${job.preview_url} src=${job.preview_url} autoplay muted loop playsinline
          class="h-full w-full object-contain" data-testid="job-preview"></video>
      </div></figure>`}

    ${job.status === "completed" && job.video_url && html`<div class="mt-3 space-y-2">
      <div class="aspect-video overflow-hidden rounded-lg bg-slate-900">
        <video src=${job.video_url} controls playsinline preload="auto"
          class="h-full w-full object-contain" data-testid="job-video"></video>
      </div>
      <a href=${job.video_url} download=${`framepack-${job.id.slice(0, 8)}.mp4`} data-testid="job-download"
        class="inline-block rounded-md bg-emerald-600 px-3 py-1.5 text-sm font-medium text-white hover:bg-emerald-700">
        ${t("jobs.download")}</a>
      <button type="button" onClick=${() => onUse(job, "settings")} data-testid="job-use-settings"
        class="ml-2 inline-block rounded-md border border-indigo-300 px-3 py-1.5 text-sm text-indigo-800 hover:bg-indigo-50">
        ${t("jobs.useSettings")}</button>
      <${ExportMenu} job=${job} />
    </div>`}

    ${job.stage !== "broken" && (job.transitions || []).some((tr) => tr.takes.some((k) => k.status === "done"))
      && html`<${Storyboard} job=${job} finished=${finished} />`}

    ${job.status === "failed" && html`<p class="mt-3 whitespace-pre-wrap break-words rounded-md bg-red-50 p-2 text-sm text-red-800"
      role="alert" data-testid="job-error">${job.error || t("status.failed")}</p>`}
    ${job.status === "failed" && job.details && html`<details class="mt-1 text-xs text-slate-600" data-testid="job-details">
      <summary class="cursor-pointer">${t("jobs.details")}</summary>
      <pre class="mt-1 whitespace-pre-wrap break-all rounded bg-slate-50 p-2 font-mono">${job.details}</pre></details>`}
    ${error && html`<p class="mt-2 text-sm text-red-700" role="alert">${te(error)}</p>`}
    ${(job.warnings || []).length > 0 && html`<ul class="mt-2 list-disc pl-5 text-xs text-amber-800" data-testid="job-warnings">
      ${job.warnings.map((w, i) => html`<li key=${i}>${w}</li>`)}</ul>`}

    ${(job.prompts || []).some((p) => p && (p.original || p.english)) && html`<details class="mt-2 text-xs">
      <summary class="cursor-pointer text-slate-600">${t("jobs.prompts")}</summary>
      <ol class="mt-1 space-y-1 pl-4">${job.prompts.map((p, i) => html`<li key=${i} class="list-decimal">
        <span>${p.original}</span>${p.english && p.english !== p.original && html` → <span class="text-slate-600">${p.english}</span>`}
      </li>`)}</ol></details>`}
    ${finished && html`<details class="mt-2 text-xs" data-testid="job-params">
      <summary class="cursor-pointer text-slate-600">${t("jobs.params")}</summary>
      <pre class="mt-1 max-h-64 overflow-auto rounded bg-slate-50 p-2">${JSON.stringify(
        { settings: job.settings, postprocess: job.postprocess, params: job.params,
          postprocess_report: job.postprocess_report }, null, 2)}</pre></details>`}
  </li>`;
}

export function JobList({ jobs, live, onUse = () => {} }) {
  const { t, te, lang } = useLang();
  const [error, setError] = useState("");
  const ordered = queueFirst(jobs);
  const waiting = ordered.filter((j) => j.status === "queued" || j.status === "interrupted");
  const cancelQueued = async () => {
    setError("");
    try { await api.post("/api/jobs/cancel-queued"); } catch (err) { setError(err); }
  };
  return html`<section aria-labelledby="jobs-title">
    <div class="mb-3 flex items-center gap-2">
      <h2 id="jobs-title" class="text-lg font-semibold">${t("jobs.title")}</h2>
      ${waiting.length > 0 && html`<button type="button" onClick=${cancelQueued} data-testid="jobs-cancel-queued"
        class="ml-auto rounded-md border border-slate-300 px-2 py-1 text-xs hover:bg-amber-50">${t("jobs.cancelQueued")}</button>`}
    </div>
    ${error && html`<p class="mb-2 text-sm text-red-700" role="alert">${te(error)}</p>`}
    ${jobs.length === 0 && html`<p class="text-sm text-slate-500">${t("jobs.empty")}</p>`}
    <ul class="space-y-3" data-testid="job-list">
      ${ordered.map((job) => html`<${JobCard} key=${job.id} job=${job} live=${live[job.id]} lang=${lang} t=${t}
        place=${waiting.indexOf(job) + 1} onUse=${onUse} />`)}
    </ul>
  </section>`;
}
