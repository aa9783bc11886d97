// User LoRAs (GET /api/loras): a picker of the folder's files that fit the engine, each with its
// weight, for a job (the composer) and for a re-roll (takes.js). Files for another engine, or none,
// are shown disabled with why; the server checks the chosen ones again at submit.
import { html, useState, useEffect } from "../lib/react.js";
import { useLang } from "../lib/i18n.js";
import { api } from "../lib/api.js";

// Engines with model weights a LoRA applies to (morph has none: the server refuses LoRAs for it).
export const LORA_ENGINES = ["framepack", "wan"];

// One listing for the whole page, asked again on "refresh".
let listing = null;
const listeners = new Set();

function load(again = false) {
  if (again || !listing) {
    listing = api.get("/api/loras")
      .then((body) => ({ ...body, error: "" }))
      .catch((error) => ({ folder: "", items: [], max_per_take: 4, weight_min: -2, weight_max: 2, error }));
    listing.then((value) => listeners.forEach((listener) => listener(value)));
  }
  return listing;
}

export function useLoraList() {
  const [list, setList] = useState(null);
  useEffect(() => {
    listeners.add(setList);
    load().then(setList);
    return () => listeners.delete(setList);
  }, []);
  return { list, refresh: () => load(true) };
}

function fits(item, engine) {
  return !!item && !item.reason_code && item.engine === engine;
}

// What goes in `loras` for `engine`: the picks that fit it (a pick the listing no longer has goes
// too, so the server says it is missing); none for an engine without weights.
export function sentLoras(engine, picks, list) {
  if (!LORA_ENGINES.includes(engine) || !Array.isArray(picks)) return [];
  const items = list && list.items ? list.items : null;
  return picks.filter((pick) => {
    const item = items && items.find((i) => i.name === pick.name);
    return !items || !item || fits(item, engine);
  }).map(({ name, weight }) => ({ name, weight }));
}

export function loraSummary(loras) {
  return (loras || []).map((l) => `${l.name} × ${Number(l.weight).toFixed(2)}`).join(", ");
}

function size(bytes) {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1024))} KB`;
}

// `picks` [{name, weight}] may hold files of other engines (kept for when the engine changes back);
// only those that fit `engine` are shown chosen and counted.
export function LoraPicker({ engine, picks = [], onChange, testid = "lora-picker", compact = false }) {
  const { t, te } = useLang();
  const { list, refresh } = useLoraList();
  const text = compact ? "text-xs" : "text-sm";
  const header = html`<div class="flex flex-wrap items-baseline gap-2">
    <h3 class=${`${text} font-medium`}>${t("lora.title")}</h3>
    ${list && LORA_ENGINES.includes(engine) && list.items.length > 0 && html`<span class="text-xs text-slate-500"
      data-testid="lora-count">${t("lora.count", { n: sentLoras(engine, picks, list).length, max: list.max_per_take })}</span>`}
    <button type="button" onClick=${refresh} data-testid="lora-refresh"
      class="ml-auto rounded border border-slate-300 px-2 py-0.5 text-xs hover:bg-slate-100">${t("lora.refresh")}</button>
  </div>`;
  if (!LORA_ENGINES.includes(engine)) {
    return html`<section class="space-y-1" data-testid=${testid}>${header}
      <p class="text-xs text-slate-600" data-testid="lora-morph">${t("lora.morph")}</p></section>`;
  }
  if (!list) return html`<section class="space-y-1" data-testid=${testid}>${header}</section>`;
  if (list.error) {
    return html`<section class="space-y-1" data-testid=${testid}>${header}
      <p class="text-xs text-red-700" role="alert" data-testid="lora-error">${te(list.error)}</p></section>`;
  }
  const chosen = sentLoras(engine, picks, list);
  const full = chosen.length >= list.max_per_take;
  const pickOf = (name) => chosen.find((p) => p.name === name);
  const others = picks.filter((p) => !chosen.some((c) => c.name === p.name));
  const set = (next) => onChange([...others, ...next]);
  const add = (name) => set([...chosen, { name, weight: 1.0 }]);
  const remove = (name) => set(chosen.filter((p) => p.name !== name));
  const weigh = (name, weight) => set(chosen.map((p) => (p.name === name ? { ...p, weight } : p)));
  // A pick the folder no longer has: shown so it can be removed (the server would refuse it).
  const gone = chosen.filter((p) => !list.items.some((i) => i.name === p.name));
  const reason = (item) => (item.reason_code
    ? te({ code: item.reason_code, params: item.reason_params || {} }, item.reason)
    : t("lora.otherEngine", { engine: t(`engine.${item.engine}`) }));

  const weightRow = (pick) => html`<div class="mt-1 flex items-center gap-2 pl-6">
    <input type="range" min=${list.weight_min} max=${list.weight_max} step="0.05" value=${pick.weight}
      aria-label=${t("lora.weightOf", { name: pick.name })} data-testid="lora-weight"
      onInput=${(e) => weigh(pick.name, Math.round(Number(e.target.value) * 100) / 100)}
      class="min-w-0 flex-1 accent-indigo-600" />
    <span class="w-12 text-right text-xs tabular-nums text-slate-700" data-testid="lora-weight-value">${Number(pick.weight).toFixed(2)}</span>
    <button type="button" onClick=${() => remove(pick.name)} data-testid="lora-remove"
      class="rounded border border-slate-300 px-2 py-0.5 text-xs hover:bg-red-50">${t("lora.remove")}</button>
  </div>`;

  return html`<section class="space-y-1" data-testid=${testid}>${header}
    ${list.items.length === 0
      ? html`<p class="text-xs text-slate-600" data-testid="lora-empty">${t("lora.empty")}
          <code class="ml-1 break-all rounded bg-slate-100 px-1 font-mono" data-testid="lora-folder">${list.folder}</code></p>`
      : html`<p class="text-[11px] text-slate-500">${t("lora.help", { max: list.max_per_take })}</p>`}
    <ul class="space-y-1" data-testid="lora-list">
      ${list.items.map((item) => {
        const ok = fits(item, engine);
        const pick = pickOf(item.name);
        const meta = [item.rank != null ? `rank ${item.rank}` : null, item.format, size(item.size_bytes)].filter(Boolean).join(" · ");
        return html`<li key=${item.name} data-testid="lora-item" data-name=${item.name} data-fits=${ok ? "true" : "false"}
            class=${`rounded-md border px-2 py-1 ${pick ? "border-indigo-300 bg-indigo-50/40" : "border-slate-200"}`}>
          <label class=${`flex min-w-0 items-baseline gap-2 ${text} ${ok ? "cursor-pointer" : "cursor-not-allowed text-slate-400"}`}>
            <input type="checkbox" class="shrink-0 self-center" checked=${!!pick} disabled=${!ok || (full && !pick)} data-testid="lora-pick"
              onChange=${(e) => (e.target.checked ? add(item.name) : remove(item.name))} />
            <span class="min-w-0 break-all font-medium">${item.name}</span>
            <span class="ml-auto shrink-0 text-[11px] text-slate-500">${meta}</span>
          </label>
          ${!ok && html`<p class="pl-6 text-[11px] text-slate-500" data-testid="lora-reason">${reason(item)}</p>`}
          ${pick && weightRow(pick)}
        </li>`;
      })}
      ${gone.map((pick) => html`<li key=${pick.name} data-testid="lora-item" data-name=${pick.name} data-fits="false"
          class="rounded-md border border-amber-300 bg-amber-50 px-2 py-1">
        <span class=${`${text} break-all font-medium`}>${pick.name}</span>
        <p class="pl-6 text-[11px] text-amber-800" data-testid="lora-reason">${t("lora.gone")}</p>
        ${weightRow(pick)}</li>`)}
    </ul>
    ${full && html`<p class="text-[11px] text-slate-500" data-testid="lora-full">${t("lora.full", { max: list.max_per_take })}</p>`}
  </section>`;
}
