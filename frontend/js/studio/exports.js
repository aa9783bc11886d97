// The "Export / 내보내기" menu of a finished job and of one take: pick a format (GIF with its width
// and frame rate, WebM, ping-pong loop, one frame as PNG, every frame as PNG in a zip), the server
// makes it (POST /api/jobs/{id}/exports), its progress arrives over /ws (`job.export`) and a
// download link appears when it is done.
import { html, useState, useEffect } from "../lib/react.js";
import { useLang } from "../lib/i18n.js";
import { api } from "../lib/api.js";

// `job.export` events from the page's one socket (main.js) reach every open menu through here.
const bus = new EventTarget();

export function publishExport(view) {
  bus.dispatchEvent(new CustomEvent("export", { detail: view }));
}

const FORMATS = ["gif", "webm", "pingpong_mp4", "frame_png", "frames_zip"];
const WIDTHS = ["", "320", "480", "640", "720", "1280"];
const RATES = ["", "10", "12", "15", "24", "30"];
const FINAL = new Set(["done", "failed"]);

function sizeText(bytes) {
  if (bytes == null) return "";
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1e3))} kB`;
}

// The newest view of one export: the socket's events, and a slow poll in case the socket is away.
function useExport(jobId, initial) {
  const [view, setView] = useState(initial);
  useEffect(() => setView(initial), [initial]);
  const id = view && view.id;
  const final = !view || FINAL.has(view.state);
  useEffect(() => {
    if (!id) return undefined;
    const listener = (event) => {
      const next = event.detail;
      if (next.id !== id) return;
      setView((old) => (old && FINAL.has(old.state) && !FINAL.has(next.state) ? old
        : old && !FINAL.has(next.state) && next.progress < old.progress ? old : next));
    };
    bus.addEventListener("export", listener);
    return () => bus.removeEventListener("export", listener);
  }, [id]);
  useEffect(() => {
    if (!id || final) return undefined;
    const timer = setInterval(() => {
      api.get(`/api/jobs/${jobId}/exports/${id}`).then((next) => setView((old) =>
        (old && FINAL.has(old.state) ? old : next))).catch(() => {});
    }, 2000);
    return () => clearInterval(timer);
  }, [id, final, jobId]);
  return view;
}

export function ExportMenu({ job, take = null, compact = false }) {
  const { t, te } = useLang();
  const [open, setOpen] = useState(false);
  const [format, setFormat] = useState("gif");
  const [width, setWidth] = useState("");
  const [fps, setFps] = useState("");
  const [frame, setFrame] = useState("last");
  const [started, setStarted] = useState(null);
  const [sending, setSending] = useState(false);
  const [error, setError] = useState("");
  const view = useExport(job.id, started);

  const scaled = format !== "frame_png";
  const timed = format !== "frame_png";
  async function make(event) {
    event.preventDefault();
    setError("");
    setSending(true);
    const body = { format };
    if (take) body.take = take;
    if (width) body.width = Number(width);
    if (fps && timed) body.fps = Number(fps);
    if (format === "frame_png") body.frame = frame;
    try {
      setStarted(await api.post(`/api/jobs/${job.id}/exports`, body));
    } catch (err) {
      setError(err);
    } finally {
      setSending(false);
    }
  }

  const button = compact
    ? "rounded border border-slate-300 px-2 py-0.5 text-xs hover:bg-slate-100"
    : "rounded-md border border-slate-300 px-3 py-1.5 text-sm hover:bg-slate-100";
  const scope = take ? "take" : "job";
  if (!open) {
    return html`<button type="button" class=${button} data-testid=${`export-open-${scope}`}
      onClick=${() => setOpen(true)}>${t("export.open")}</button>`;
  }
  const field = "max-w-full rounded border border-slate-300 bg-white px-1 py-0.5";
  const state = view ? view.state : null;
  const busy = sending || (view && !FINAL.has(view.state));
  return html`<form onSubmit=${make} data-testid=${`export-menu-${scope}`}
      class=${`mt-2 space-y-2 rounded-lg border border-slate-200 bg-slate-50 p-2 text-xs ${compact ? "w-full" : "max-w-md"}`}>
    <div class="flex items-center gap-2">
      <span class="font-semibold">${take ? t("export.titleTake", { n: take.index + 1, k: take.take }) : t("export.title")}</span>
      <button type="button" class="ml-auto rounded px-1 text-slate-500 hover:bg-slate-200" aria-label=${t("export.close")}
        onClick=${() => setOpen(false)}>✕</button>
    </div>
    <label class="block">${t("export.format")}
      <select class=${`${field} ml-1`} value=${format} onChange=${(e) => setFormat(e.target.value)} data-testid="export-format">
        ${FORMATS.map((f) => html`<option key=${f} value=${f}>${t(`export.format.${f}`)}</option>`)}
      </select></label>
    <div class="flex flex-wrap gap-3">
      ${scaled && html`<label>${t("export.width")}
        <select class=${`${field} ml-1`} value=${width} onChange=${(e) => setWidth(e.target.value)} data-testid="export-width">
          ${WIDTHS.map((w) => html`<option key=${w} value=${w}>${w ? `${w} px` : t(format === "gif" ? "export.gifWidth" : "export.original")}</option>`)}
        </select></label>`}
      ${timed && html`<label>${t("export.fps")}
        <select class=${`${field} ml-1`} value=${fps} onChange=${(e) => setFps(e.target.value)} data-testid="export-fps">
          ${RATES.map((r) => html`<option key=${r} value=${r}>${r ? `${r} fps` : t(format === "gif" ? "export.gifFps" : "export.original")}</option>`)}
        </select></label>`}
      ${format === "frame_png" && html`<label>${t("export.frame")}
        <select class=${`${field} ml-1`} value=${frame} onChange=${(e) => setFrame(e.target.value)} data-testid="export-frame">
          <option value="last">${t("export.frame.last")}</option>
          <option value="first">${t("export.frame.first")}</option>
        </select></label>`}
    </div>
    <p class="text-slate-500">${t(`export.help.${format}`)}</p>
    <div class="flex items-center gap-2">
      <button type="submit" disabled=${busy} data-testid="export-submit"
        class="rounded bg-indigo-600 px-2 py-1 font-medium text-white hover:bg-indigo-700 disabled:opacity-50">
        ${t("export.make")}</button>
      ${view && html`<span data-testid="export-state" data-state=${state}>${t(`export.state.${state}`)}</span>`}
    </div>
    ${view && !FINAL.has(state) && html`<div class="h-1.5 overflow-hidden rounded-full bg-slate-200" data-testid="export-progress"
        role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow=${Math.round((view.progress || 0) * 100)}>
      <div class="h-full rounded-full bg-indigo-500 transition-[width] duration-200"
        style=${{ width: `${Math.round((view.progress || 0) * 100)}%` }}></div></div>`}
    ${view && state === "done" && html`<a href=${view.url} download=${view.filename} data-testid="export-download"
        data-format=${view.format}
        class="inline-block rounded bg-emerald-600 px-2 py-1 font-medium text-white hover:bg-emerald-700">
      ${t("export.download", { name: view.filename, size: sizeText(view.bytes) })}</a>`}
    ${view && state === "failed" && html`<p class="text-red-700" role="alert" data-testid="export-error">
      ${te(view.error_message, view.error)}</p>`}
    ${error && html`<p class="text-red-700" role="alert" data-testid="export-error">${te(error)}</p>`}
  </form>`;
}
