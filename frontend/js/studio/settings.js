// Job settings: sliders with plain labels, resolution, seed, engine and post-processing, and the
// advanced panel that shows what the server resolves them to (POST /api/params).
import { html, useState, useEffect, useRef, Fragment } from "../lib/react.js";
import { useLang, messageText } from "../lib/i18n.js";
import { api } from "../lib/api.js";
import { autoDisplay } from "./suggestions.js";

// Drawn, not an emoji: phones and servers without an emoji font would show an empty box.
const DIE = html`<svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="1.8">
  <rect x="3" y="3" width="18" height="18" rx="4" /><circle cx="8" cy="8" r="1.4" fill="currentColor" />
  <circle cx="16" cy="16" r="1.4" fill="currentColor" /><circle cx="12" cy="12" r="1.4" fill="currentColor" />
  <circle cx="16" cy="8" r="1.4" fill="currentColor" /><circle cx="8" cy="16" r="1.4" fill="currentColor" /></svg>`;

export const RESOLUTIONS = [256, 384, 480, 512, 640, 768];
// Where the quality slider's fast mode starts, for the hint under the slider only (the server
// decides the job's cache): smart_params.DRAFT_QUALITY_BELOW, which a test keeps equal.
export const FAST_MODE_BELOW = 30;

// What a job gets for a value it leaves unset is the server's (GET /api/meta), never a copy here.
export function defaultSettings(meta) {
  const { seconds, quality, strength, resolution, seed } = meta.defaults.settings;
  return { seconds, quality, strength, resolution, seed };
}

export function defaultPost(meta) {
  return { ...meta.defaults.postprocess };
}

// Once /api/health answers, its `defaults.resolution` (the memory plan's bucket for the server's
// GPU: 480 on a T4 and on GPUs under 16 GB) takes the place of the default resolution.
export function serverResolution(health) {
  const r = health && health.defaults && health.defaults.resolution;
  return Number.isInteger(r) && r >= 128 && r <= 1536 ? r : null;
}

// The resolution once the server has answered. A saved resolution equal to the default it was
// saved under is no choice of the user's: it follows the server's default; any other stays.
export function resolutionAfterHealth(current, savedUnder, health) {
  const planned = serverResolution(health);
  return planned != null && current === savedUnder ? planned : current;
}

function Slider({ id, label, help, value, min, max, step, display, onChange }) {
  return html`<div>
    <div class="flex items-baseline justify-between gap-2">
      <label for=${id} class="text-sm font-medium">${label}</label>
      <span class="min-w-24 text-right text-sm tabular-nums text-slate-700" data-testid=${`${id}-value`}>${display}</span>
    </div>
    <input id=${id} type="range" min=${min} max=${max} step=${step} value=${value} data-testid=${id}
      onInput=${(e) => onChange(Number(e.target.value))} class="w-full accent-indigo-600" />
    <div class="text-[11px] text-slate-500">${help}</div>
  </div>`;
}

function Segmented({ name, value, options, onChange, testid, disabled = [] }) {
  return html`<div class="inline-flex overflow-hidden rounded-md border border-slate-300" role="radiogroup" data-testid=${testid}>
    ${options.map(([optionValue, label]) => {
      const off = disabled.includes(optionValue);
      const look = value === optionValue ? "bg-indigo-600 text-white" : off ? "cursor-not-allowed bg-slate-50 text-slate-400" : "bg-white hover:bg-slate-100";
      return html`<label key=${optionValue} class=${`${off ? "" : "cursor-pointer "}px-3 py-1 text-sm ${look}`} data-disabled=${off ? "true" : null}>
      <input type="radio" name=${name} class="sr-only" checked=${value === optionValue} disabled=${off}
        value=${String(optionValue)} onChange=${() => onChange(optionValue)} />${label}</label>`;
    })}
  </div>`;
}

// `auto` marks sliders that follow the per-transition suggestions (sent as null, filled in by the
// server per pair); `suggested` holds those per-pair values for the display. Moving such a slider
// makes it the user's own value again.
export function SettingsPanel({ settings, setSettings, engine, setEngine, post, setPost, pairs, health, limits,
  auto = { seconds: false, strength: false }, setAuto = () => {}, suggested = {} }) {
  const { t, lang } = useLang();
  const maxSeconds = limits.max_seconds_per_transition;
  const set = (key) => (value) => {
    setSettings({ ...settings, [key]: value });
    if (auto[key]) setAuto({ ...auto, [key]: false });
  };
  const autoSeconds = auto.seconds && suggested.seconds;
  const autoStrength = auto.strength && suggested.strength;
  const total = autoSeconds
    ? Math.round(suggested.seconds.reduce((a, b) => a + b, 0) * 10) / 10
    : Math.round(settings.seconds * Math.max(pairs, 0) * 10) / 10;
  const resolutions = RESOLUTIONS.includes(settings.resolution)
    ? RESOLUTIONS : [...RESOLUTIONS, settings.resolution].sort((a, b) => a - b);
  const autoLabel = (values, unit) => `${t("settings.auto")} ${autoDisplay(values, unit)}`;
  const engineState = (name) => health && health.engines && health.engines[name];
  // Choices the memory plan made that change the pictures (8-bit weights, fp16 on GPUs without bf16).
  const plan = engineState("framepack") && engineState("framepack").plan;
  const planNotes = plan ? [plan.weights === "8bit" && t("engine.q8bit"), plan.dtype === "fp16" && t("engine.qfp16")]
    .filter(Boolean) : [];
  const notReady = (name) => { const state = engineState(name); return !!state && state.ready === false; };
  // Only an engine that is not installed cannot be chosen; one whose last load failed can be
  // tried again (its reason is shown).
  const notInstalled = (name) => { const state = engineState(name); return !!state && state.installed === false; };
  const engineLabel = (name) => {
    const state = engineState(name);
    const tag = state && state.installed === false ? t("engine.notInstalled") : t("engine.notReady");
    return html`${t(`engine.${name}`)}${notReady(name) ? html` <span class=${`text-xs ${engine === name ? "text-amber-100" : "text-amber-700"}`}
      data-testid=${`engine-${name}-state`} title=${state.reason || ""}>(${tag})</span>` : ""}`;
  };
  const framepack = engineState("framepack");
  // The engines in the server's order (/api/health lists every engine the studio has).
  const engineNames = health && health.engines ? Object.keys(health.engines) : ["framepack", "morph"];
  // Each engine's licence as its spec declares it (/api/health), in the page's language from the
  // catalogue: the name, linked to the licence text, and the note beside it (for FramePack, where
  // the licence text says it does not apply), visible rather than in a tooltip.
  const licenceLine = (name) => {
    const licence = engineState(name) && engineState(name).licence;
    if (!licence) return null;
    const said = (code) => (code && messageText(lang, code)) || "";
    const title = licence.url ? html`<a href=${licence.url} target="_blank" rel="noopener noreferrer"
      class="underline">${said(licence.name)}</a>` : said(licence.name);
    return html`<p key=${name} class="mt-1 text-xs text-slate-600" data-testid=${`engine-licence-${name}`}>
      ${t(`engine.${name}`)}${engineState(name).model_label ? ` (${engineState(name).model_label})` : ""}: ${title}${licence.note ? html` — <span data-testid=${`engine-licence-note-${name}`}>${said(licence.note)}</span>` : ""}</p>`;
  };

  return html`<section aria-labelledby="settings-title" class="space-y-4">
    <h2 id="settings-title" class="text-lg font-semibold">${t("settings.title")}</h2>
    <div class="grid gap-4 sm:grid-cols-3">
      <${Slider} id="seconds" label=${`${t("settings.length")}`} value=${settings.seconds} min="0.5" max=${maxSeconds} step="0.5"
        display=${autoSeconds ? autoLabel(suggested.seconds, " s") : `${settings.seconds.toFixed(1)} s`} onChange=${set("seconds")}
        help=${html`${t("settings.lengthHelp")} · <span data-testid="total-length" class="tabular-nums">${t("settings.total", { s: total.toFixed(1), n: pairs })}</span>`} />
      <${Slider} id="quality" label=${t("settings.quality")} value=${settings.quality} min="0" max="100" step="1"
        display=${settings.quality} onChange=${set("quality")}
        help=${settings.quality < FAST_MODE_BELOW
          ? html`<span class="text-amber-800" data-testid="quality-fast-mode">${t(engine === "wan" ? "settings.qualityFastWan" : "settings.qualityFast")}</span>`
          : t("settings.qualityHelp")} />
      <${Slider} id="strength" label=${t("settings.strength")} value=${settings.strength} min="0" max="100" step="1"
        display=${autoStrength ? autoLabel(suggested.strength, "") : settings.strength} onChange=${set("strength")}
        help=${t("settings.strengthHelp")} />
    </div>
    <div class="flex flex-wrap items-end gap-4">
      <label class="text-sm font-medium">${t("settings.resolution")}
        <select value=${settings.resolution} data-testid="resolution"
          onChange=${(e) => set("resolution")(Number(e.target.value))}
          class="mt-1 block rounded-md border border-slate-300 px-2 py-1.5 text-sm">
          ${resolutions.map((r) => html`<option key=${r} value=${r}>${r}px${r < 384 ? ` (${t("settings.draftRes")})` : ""}</option>`)}
        </select></label>
      <label class="text-sm font-medium">${t("settings.seed")}
        <span class="mt-1 flex">
          <input type="number" min="0" step="1" value=${settings.seed ?? ""} placeholder=${t("settings.seedRandom")}
            data-testid="seed" onInput=${(e) => set("seed")(e.target.value === "" ? null : Math.max(0, Math.floor(Number(e.target.value))))}
            class="w-36 rounded-l-md border border-slate-300 px-2 py-1.5 text-sm tabular-nums" />
          <button type="button" title=${t("settings.dice")} aria-label=${t("settings.dice")} data-testid="seed-dice"
            onClick=${() => set("seed")(Math.floor(Math.random() * 2 ** 31))}
            class="rounded-r-md border border-l-0 border-slate-300 px-2 hover:bg-slate-100">${DIE}</button>
        </span></label>
      ${(limits.max_takes_per_transition || 1) > 1 && html`<label class="text-sm font-medium" title=${t("settings.takesHelp")}>
        ${t("settings.takes")}
        <select value=${settings.takes_per_transition ?? 1} data-testid="takes-per-transition"
          onChange=${(e) => set("takes_per_transition")(Number(e.target.value))}
          class="mt-1 block rounded-md border border-slate-300 px-2 py-1.5 text-sm">
          ${Array.from({ length: limits.max_takes_per_transition }, (_, i) => i + 1).map((k) =>
            html`<option key=${k} value=${k}>${k === 1 ? t("settings.takesOne") : t("settings.takesBest", { k })}</option>`)}
        </select></label>`}
    </div>
    <fieldset class="min-w-0">
      <legend class="mb-1 text-sm font-medium">${t("settings.engine")}</legend>
      <${Segmented} name="engine" value=${engine} onChange=${setEngine} testid="engine"
        disabled=${engineNames.filter(notInstalled)}
        options=${engineNames.map((name) => [name, engineLabel(name)])} />
      ${engineNames.map(licenceLine)}
      ${planNotes.length > 0 && html`<p class="mt-1 text-xs text-amber-700" data-testid="engine-plan-quality">
        ${t("engine.planQuality", { notes: planNotes.join(", ") })}</p>`}
      ${notReady("framepack") && html`<div class="mt-2 rounded-md border border-amber-200 bg-amber-50 p-2 text-sm text-amber-900"
          role="status" data-testid="engine-notice">
        <p class="font-medium">${framepack.installed === false ? t("engine.missingTitle") : `FramePack: ${t("engine.notReady")}`}</p>
        <p class="mt-0.5">${framepack.installed === false ? t("engine.missingBody") : t("engine.loadFailed")}</p>
        ${framepack.fix && html`<code class="mt-1 block select-all whitespace-pre-wrap break-all rounded bg-white px-2 py-1 font-mono text-xs text-slate-800"
          data-testid="engine-fix">${framepack.fix}</code>`}
        <p class="mt-1 text-xs text-amber-800" data-testid="engine-reason"
          title=${(lang === "ko" && framepack.reason_ko) || framepack.reason}>${framepack.missing
            ? `${t("engine.missing")}: ${framepack.missing}`
            : `${t("engine.why")}: ${(lang === "ko" && framepack.reason_ko) || framepack.reason}`}</p>
      </div>`}
    </fieldset>
    <fieldset class="space-y-2">
      <legend class="mb-1 text-sm font-medium">${t("post.title")}</legend>
      <${Segmented} name="post-mode" value=${post.mode} onChange=${(mode) => setPost({ ...post, mode })} testid="post-mode"
        options=${[["off", t("post.off")], ["auto", t("post.auto")], ["manual", t("post.manual")]]} />
      ${post.mode === "manual" && html`<div class="flex flex-wrap items-center gap-4 text-sm" data-testid="post-manual">
        <label class="flex items-center gap-2"><input type="checkbox" checked=${post.face_restore} data-testid="post-face"
          onChange=${(e) => setPost({ ...post, face_restore: e.target.checked })} />${t("post.face")}</label>
        <span class="flex items-center gap-2">${t("post.upscale")}
          <${Segmented} name="post-upscale" value=${post.upscale} onChange=${(upscale) => setPost({ ...post, upscale })}
            testid="post-upscale" options=${[[1, t("post.none")], [2, "×2"], [4, "×4"]]} /></span>
        <span class="flex items-center gap-2">${t("post.interpolate")}
          <${Segmented} name="post-interpolate" value=${post.interpolate} onChange=${(interpolate) => setPost({ ...post, interpolate })}
            testid="post-interpolate" options=${[[1, t("post.none")], [2, "×2"], [4, "×4"]]} /></span>
      </div>`}
    </fieldset>
  </section>`;
}

// Debounced POST /api/params: the panel shows exactly what the engine will be given.
// A cache (the fast mode's MagCache, or Wan's LightX2V LoRA) marks the quality-for-speed trade; "off"/"none" (or absent) is full quality.
function isDraft(params) {
  const cache = params.cache;
  return params.draft === true || (cache != null && cache !== false && !["off", "none", ""].includes(String(cache)));
}

export function AdvancedPanel({ images, settings, engine, auto = { seconds: false, strength: false }, setSettings = null,
  prompt = "", prompts = [] }) {
  const { t, te } = useLang();
  const [state, setState] = useState({ loading: false, params: null, segments: null, error: "" });
  const latest = useRef(0);
  // The same settings the job will be sent with: Auto sliders go as null, so the server shows the
  // per-transition values its suggestions give.
  const sent = { ...settings, ...(auto.seconds ? { seconds: null } : {}), ...(auto.strength ? { strength: null } : {}),
    ...(engine === "wan" ? { end_influence: null } : {}) }; // Wan has no end-frame weight: the slider shows 1.0
  // The prompts go too, so a timed prompt's sections (or why it is refused) show here as typed.
  const body = JSON.stringify({ images, settings: sent, engine, prompt: prompt.trim() || null, prompts });
  useEffect(() => {
    const ticket = ++latest.current;
    setState((s) => ({ ...s, loading: true }));
    const timer = setTimeout(async () => {
      try {
        const answer = await api.post("/api/params", JSON.parse(body));
        if (ticket === latest.current) setState({ loading: false, params: answer.params, segments: answer.segments, error: "" });
      } catch (err) {
        if (ticket === latest.current) setState({ loading: false, params: null, segments: null, error: err });
      }
    }, 250);
    return () => clearTimeout(timer);
  }, [body]);

  const entries = state.params ? Object.entries(state.params) : [];
  const influence = engine === "wan" ? 1 : settings.end_influence ?? 1;
  const timed = (state.params && state.params.segments ? state.params.segments : []).flatMap((seg, i) =>
    (seg.prompt_sections || []).map((p) => ({ n: i + 1, at: p.at, section: p.section + 1, text: p.text })));
  const show = (v) => (v !== null && typeof v === "object" ? JSON.stringify(v) : String(v));
  return html`<details class="rounded-lg border border-slate-200 bg-white p-3" data-testid="advanced">
    <summary class="cursor-pointer text-sm font-medium">${t("advanced.title")}
      <span class="ml-2 text-xs text-slate-500">${state.loading ? t("advanced.loading") : ""}</span></summary>
    ${setSettings && html`<div class="mt-2 max-w-sm"><${Slider} id="end-influence" label=${t("advanced.endInfluence")}
      value=${influence} min="0.05" max="1" step="0.05" display=${influence.toFixed(2)}
      onChange=${(v) => engine !== "wan" && setSettings((s) => ({ ...s, end_influence: v }))}
      help=${engine === "wan" ? t("advanced.endInfluenceWan") : t("advanced.endInfluenceHelp")} /></div>`}
    ${state.error && html`<p class="mt-2 text-sm text-red-700" role="alert" data-testid="advanced-error">${te(state.error)}</p>`}
    ${(auto.seconds || auto.strength) && html`<p class="mt-2 text-xs text-sky-900" data-testid="advanced-auto">${t("advanced.auto")}</p>`}
    ${state.params && html`<div class="mt-2">
      ${isDraft(state.params) && html`<p class="mb-2 inline-block rounded bg-amber-100 px-2 py-0.5 text-xs font-medium text-amber-900"
        data-testid="draft-label">${t("advanced.draft")} · ${String(state.params.cache)}</p>`}
      <dl class="grid grid-cols-[max-content_1fr] gap-x-4 gap-y-0.5 text-xs" data-testid="advanced-params">
        ${state.segments != null && html`<dt class="text-slate-500">${t("advanced.segments")}</dt><dd class="tabular-nums" data-param="segments">${state.segments}</dd>`}
        ${entries.map(([k, v]) => html`<${Fragment} key=${k}><dt class="text-slate-500">${k}</dt>
          <dd class="break-all font-mono tabular-nums" data-param=${k}>${show(v)}</dd><//>`)}
      </dl>
      ${timed.length > 0 && html`<ul class="mt-2 text-xs text-slate-700" data-testid="prompt-sections">
        ${timed.map((p) => html`<li key=${`${p.n}-${p.section}`}>${t("advanced.promptSections", p)}</li>`)}</ul>`}
      </div>`}
  </details>`;
}

