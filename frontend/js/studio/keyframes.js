// Keyframes inside one transition: an extra image the motion passes through at a time, within one
// generation (contracts/keyframes.py). Each pair arrow has its own; where each lands (the engine's
// grid: FramePack's section boundaries, Wan's latent frames) is the server's answer to
// POST /api/params, drawn on the transition's timeline. Not an image added to the storyboard: that
// makes two transitions that meet at it, with a seam — the help says so (folded: one line per pair,
// so a phone's storyboard stays short).
import { html, useEffect, useRef, useState } from "../lib/react.js";
import { useLang } from "../lib/i18n.js";
import { api, uploadFile } from "../lib/api.js";

let nextId = 1;

// The request's `keyframes`: every pair's, each with its transition's 0-based index.
export function sentKeyframes(keys, keyframes) {
  return keys.flatMap((key, transition) => (keyframes[key] || [])
    .filter((k) => k.upload)
    .map((k) => ({ transition, image: k.upload.id, at: Number(k.at) })));
}

// Where the server places the keyframes (segments[i].keyframes, .seconds), or why it refuses them.
export function useKeyframePlan({ images, settings, engine, keys, keyframes }) {
  const [state, setState] = useState({ segments: null, error: "" });
  const latest = useRef(0);
  const sent = sentKeyframes(keys, keyframes);
  const body = JSON.stringify({ images, settings, engine, keyframes: sent });
  useEffect(() => {
    const ticket = ++latest.current;
    if (!sent.length || images.length < 2) {
      setState({ segments: null, error: "" });
      return undefined;
    }
    const timer = setTimeout(async () => {
      try {
        const answer = await api.post("/api/params", JSON.parse(body));
        if (ticket === latest.current) setState({ segments: answer.params.segments, error: "" });
      } catch (err) {
        if (ticket === latest.current) setState({ segments: null, error: err });
      }
    }, 250);
    return () => clearTimeout(timer);
  }, [body]);
  return state;
}

const pct = (x) => `${Math.max(0, Math.min(100, x * 100))}%`;

// `items`: [{id, upload, at, status}]; `segment`: this transition's planned segment when the
// server placed its keyframes; `error`: the server's refusal (shown under the pair that has keyframes).
export function KeyframeEditor({ index, items, segment, error, engine, onChange }) {
  const { t, te } = useLang();
  const input = useRef(null);
  const [uploadError, setUploadError] = useState("");
  const placed = (segment && segment.keyframes) || [];
  const seconds = segment ? segment.seconds : null;

  function add(file) {
    setUploadError("");
    const id = `kf${nextId++}`;
    const at = seconds ? Math.round(seconds * 5) / 10 : 1.2; // the middle of the transition
    onChange((list) => [...list, { id, upload: null, at, status: "uploading", filename: file.name }]);
    uploadFile(file, () => {})
      .then((upload) => onChange((list) => list.map((k) => (k.id === id ? { ...k, upload, status: "ready" } : k))))
      .catch((err) => { onChange((list) => list.filter((k) => k.id !== id)); setUploadError(err); });
  }

  return html`<div class="rounded-md border border-dashed border-violet-300 bg-violet-50/60 p-1.5 text-[11px]"
      data-testid="keyframes" data-transition=${index}>
    <div class="flex items-center justify-between gap-1">
      <span class="font-medium text-violet-900">${t("keyframe.title")}</span>
      <button type="button" data-testid="keyframe-add" onClick=${() => input.current.click()}
        class="rounded border border-violet-300 bg-white px-1.5 text-violet-800 hover:bg-violet-100">${t("keyframe.add")}</button>
      <input ref=${input} type="file" accept="image/*" class="hidden" data-testid="keyframe-file"
        onChange=${(e) => { if (e.target.files[0]) add(e.target.files[0]); e.target.value = ""; }} />
    </div>
    ${items.length > 0 && html`<div class="relative mt-1 h-3 rounded bg-violet-200" data-testid="keyframe-timeline"
        title=${seconds != null ? t("keyframe.timeline", { s: seconds }) : ""}>
      <span class="absolute left-0 top-0 h-3 w-1 rounded-l bg-slate-500"></span>
      <span class="absolute right-0 top-0 h-3 w-1 rounded-r bg-slate-500"></span>
      ${seconds != null && placed.map((p) => html`<span key=${`${p.image}-${p.point}`} data-testid="keyframe-marker"
        data-lands=${p.lands_at} class="absolute top-[-2px] h-4 w-1.5 -translate-x-1/2 rounded bg-violet-700"
        style=${{ left: pct(p.lands_at / seconds) }}></span>`)}
    </div>`}
    <ul class="mt-1 space-y-1">
      ${items.map((k) => {
        const where = k.upload ? placed.find((p) => p.image === k.upload.id && p.at === Number(k.at)) : null;
        return html`<li key=${k.id} class="flex flex-wrap items-center gap-1" data-testid="keyframe">
          ${k.upload
            ? html`<img src=${k.upload.url} alt=${k.filename || ""} class="h-8 w-8 shrink-0 rounded object-cover" />`
            : html`<span class="h-8 w-8 shrink-0 rounded bg-violet-200"></span>`}
          <label class="flex items-center gap-0.5 whitespace-nowrap">${t("keyframe.at")}
            <input type="number" min="0.1" step="0.1" value=${k.at} data-testid="keyframe-at"
              onInput=${(e) => onChange((list) => list.map((x) => (x.id === k.id ? { ...x, at: e.target.value } : x)))}
              class="w-14 rounded border border-slate-300 px-1 py-0.5" />s</label>
          <button type="button" aria-label=${t("keyframe.remove")} title=${t("keyframe.remove")} data-testid="keyframe-remove"
            onClick=${() => onChange((list) => list.filter((x) => x.id !== k.id))} class="px-1">✕</button>
          <span class="basis-full text-violet-900" data-testid="keyframe-lands">${where
            ? t(engine === "wan" ? "keyframe.landsWan" : "keyframe.lands", { s: where.lands_at, point: where.point })
            : k.status === "uploading" ? t("images.uploading") : ""}</span>
        </li>`;
      })}
    </ul>
    ${items.length > 0 && engine === "wan" && html`<p class="mt-1 text-amber-800" data-testid="keyframe-wan-note">${t("keyframe.wanNote")}</p>`}
    ${items.length > 0 && error && html`<p class="mt-1 text-red-700" role="alert" data-testid="keyframe-error">${te(error)}</p>`}
    ${uploadError && html`<p class="mt-1 text-red-700" role="alert">${te(uploadError)}</p>`}
    <details class="mt-1 text-slate-500" data-testid="keyframe-help-box">
      <summary class="cursor-pointer select-none text-violet-800">${t("keyframe.what")}</summary>
      <p class="mt-0.5" data-testid="keyframe-help">${t("keyframe.help")}</p>
    </details>
  </div>`;
}
