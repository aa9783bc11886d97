// Image-analysis suggestions (POST /api/analyze) for the composer: per-transition length and
// strength, resolution and fit, the reasons in the user's language, tags per image and the prompt
// a blank pair would get.
//
// "Use suggestions" does not copy one number into the global sliders: the job request leaves
// seconds/strength empty (null) and the server fills each transition with its own suggestion, which
// is how a similar pair gets a short transition and a very different pair a long one. Resolution is
// one value for the whole video, so it is set on the select as an explicit value.
import { html, useState, useEffect, useRef } from "../lib/react.js";
import { useLang } from "../lib/i18n.js";
import { api } from "../lib/api.js";

export const NO_AUTO = { seconds: false, strength: false };
const DEBOUNCE_MS = 400;
// While the server says "loading" (the model or the embeddings are not ready), ask again this often.
const POLL_MS = 1500;

// The analysis of the current image order. `ids` says which order an answer belongs to, so a
// stale answer (the user reordered meanwhile) is never read as the current one.
export function useAnalysis(imageIds) {
  const [state, setState] = useState({ loading: false, result: null, error: "", ids: [] });
  const latest = useRef(0);
  const joined = imageIds.join(",");
  useEffect(() => {
    const ticket = ++latest.current;
    const ids = joined ? joined.split(",") : [];
    if (!ids.length) {
      setState({ loading: false, result: null, error: "", ids: [] });
      return undefined;
    }
    setState((s) => ({ ...s, loading: true }));
    let timer = null;
    // The server never waits for the model: it answers "loading" at once, with the suggestions
    // from the image sizes, and this asks again until the analysis is ready or unavailable.
    const ask = async () => {
      try {
        const result = await api.post("/api/analyze", { images: ids });
        if (ticket !== latest.current) return;
        const pending = result.state === "loading";
        setState({ loading: pending, result, error: "", ids });
        if (pending) timer = setTimeout(ask, POLL_MS);
      } catch (err) {
        if (ticket === latest.current) setState({ loading: false, result: null, error: err, ids });
      }
    };
    timer = setTimeout(ask, DEBOUNCE_MS);
    return () => clearTimeout(timer);
  }, [joined]);
  return state;
}

// Lookups by upload id / pair key, valid only for the order the answer was made for.
export function indexAnalysis(analysis, imageIds) {
  const empty = { current: false, perPair: {}, tags: {}, seconds: null, strength: null, available: false };
  const { result, ids } = analysis;
  if (!result || ids.join(",") !== imageIds.join(",")) return empty;
  const perPair = {};
  const pairs = result.pairs || [];
  const suggested = (result.suggestions && result.suggestions.pairs) || [];
  for (let i = 0; i + 1 < ids.length; i += 1) {
    // The same key as images.js pairKey(): upload ids joined by ">".
    perPair[`${ids[i]}>${ids[i + 1]}`] = {
      index: i,
      similarity: pairs[i] ? pairs[i].similarity : null,
      seconds: suggested[i] ? suggested[i].seconds : null,
      strength: suggested[i] ? suggested[i].strength : null,
      prompt: (result.default_prompts || [])[i] || "",
    };
  }
  const tags = {};
  for (const image of result.images || []) tags[image.id] = image.tags;
  const complete = (key) => suggested.length === ids.length - 1 && suggested.every((p) => p && p[key] != null);
  return {
    current: true,
    available: !!result.available,
    perPair,
    tags,
    seconds: complete("seconds") ? suggested.map((p) => p.seconds) : null,
    strength: complete("strength") ? suggested.map((p) => p.strength) : null,
  };
}

// Small labels on a thumbnail: what the model saw in the image.
export function TagChips({ tags }) {
  const { t } = useLang();
  if (!tags) return null;
  const chips = [];
  if (tags.face) chips.push(t("tag.face"));
  else if (tags.person) chips.push(t("tag.person"));
  if (tags.scene) chips.push(t(`tag.scene.${tags.scene}`));
  if (tags.style) chips.push(t(`tag.style.${tags.style}`));
  return html`<div class="mt-1 flex flex-wrap gap-0.5" data-testid="image-tags">
    ${chips.map((c) => html`<span key=${c} class="rounded bg-sky-50 px-1 text-[10px] text-sky-800">${c}</span>`)}</div>`;
}

function range(values, unit) {
  const lo = Math.min(...values), hi = Math.max(...values);
  return lo === hi ? `${lo}${unit}` : `${lo}–${hi}${unit}`;
}

export function autoDisplay(values, unit) {
  return values && values.length ? range(values, unit) : "";
}

export function SuggestionsPanel({ analysis, index, imageIds, auto, onApply, onOwnValues }) {
  const { t, te, lang } = useLang();
  if (imageIds.length === 0) return null;
  const { loading, result, error } = analysis;
  const s = index.current && result ? result.suggestions || {} : null;
  const usingAuto = auto.seconds || auto.strength;
  const canApply = !!s && (s.resolution != null || index.seconds || index.strength);
  const pairs = [];
  for (let i = 0; i + 1 < imageIds.length; i += 1) {
    const entry = index.perPair[`${imageIds[i]}>${imageIds[i + 1]}`];
    if (entry) pairs.push(entry);
  }
  return html`<section class="rounded-xl border border-sky-200 bg-sky-50/60 p-4 text-sm" data-testid="suggestions"
      data-state=${loading ? "loading" : error ? "error" : s ? (index.available ? "available" : "limited") : "idle"}
      aria-labelledby="suggestions-title">
    <div class="flex flex-wrap items-center gap-2">
      <h2 id="suggestions-title" class="text-base font-semibold">${t("suggest.title")}</h2>
      ${loading && html`<span class="text-xs text-slate-500" data-testid="suggestions-loading">${
        result && result.state === "loading" ? t("suggest.modelLoading") : t("suggest.loading")}</span>`}
      ${result && result.model && index.current && html`<span class="max-w-[16rem] truncate text-xs text-slate-500" title=${result.model} data-testid="suggestions-model">${result.model}</span>`}
      <span class="ml-auto flex gap-2">
        ${canApply && html`<button type="button" data-testid="apply-suggestions" onClick=${() => onApply(s, index)}
          class="rounded-md bg-sky-700 px-3 py-1 text-xs font-medium text-white hover:bg-sky-800">${t("suggest.apply")}</button>`}
        ${usingAuto && html`<button type="button" data-testid="own-values" onClick=${onOwnValues}
          class="rounded-md border border-slate-300 bg-white px-3 py-1 text-xs hover:bg-slate-100">${t("suggest.own")}</button>`}
      </span>
    </div>
    ${error && html`<p class="mt-2 rounded-md bg-red-50 p-2 text-red-800" role="alert" data-testid="suggestions-error">${te(error)}</p>`}
    ${s && !index.available && result.state !== "loading" && html`<p class="mt-2 rounded-md bg-amber-50 p-2 text-amber-900" data-testid="suggestions-unavailable">
      ${te({ code: result.reason_code, params: {} }, result.reason) || t("suggest.unavailable")} ${t("suggest.sizeOnly")}</p>`}
    ${s && html`<div class="mt-2 space-y-2">
      <p data-testid="suggested-frame">${t("suggest.frame", {
        r: s.resolution, w: (s.bucket || [])[0], h: (s.bucket || [])[1], fit: t(`suggest.fit.${s.fit}`),
      })}</p>
      ${index.available && pairs.length > 0 && html`<ol class="space-y-0.5" data-testid="suggested-pairs">
        ${pairs.map((p) => html`<li key=${p.index} data-testid="suggestion-pair" data-seconds=${p.seconds} data-strength=${p.strength}
            class="tabular-nums">${t("suggest.pair", {
              n: p.index + 1, sim: p.similarity != null ? p.similarity.toFixed(2) : "–", s: p.seconds, k: p.strength,
            })}</li>`)}</ol>`}
      ${(s.reasons || []).length > 0 && html`<ul class="list-disc space-y-0.5 pl-5 text-xs text-slate-700" data-testid="suggestion-reasons">
        ${s.reasons.map((r, i) => html`<li key=${i} data-testid="suggestion-reason" data-field=${r.field}>${lang === "ko" ? r.ko : r.en}</li>`)}</ul>`}
      ${usingAuto && html`<p class="text-xs font-medium text-sky-900" data-testid="suggestions-active">${t("suggest.active")}</p>`}
    </div>`}
  </section>`;
}
