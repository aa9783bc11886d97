// A finished job's storyboard: each transition with its takes (clip, score, seed), the pick,
// a re-roll with its own seed/prompt/length/strength, delete, and "rebuild video" from the picks.
import { html, useState } from "../lib/react.js";
import { useLang } from "../lib/i18n.js";
import { api } from "../lib/api.js";
import { limit } from "../lib/jobs-store.js";
import { ExportMenu } from "./exports.js";
import { LoraPicker, LORA_ENGINES, loraSummary, sentLoras, useLoraList } from "./loras.js";

function score(value) {
  return value == null ? "–" : Math.round(value * 10) / 10;
}

// Holds (docs/scores.md): the clip stands still for a long part; shown apart from the other flags
// with how long it stands, so a person sees why a smooth-looking take scored low.
const HOLDS = new Set(["frozen_head", "frozen_tail"]);

function flagHelp(detail, flag, t) {
  const hold = detail && detail.hold;
  if (flag === "frozen_head" && hold) return t("take.flagHelp.frozen_head", { s: hold.head_s });
  if (flag === "frozen_tail" && hold) return t("take.flagHelp.frozen_tail", { s: hold.tail_s });
  return t(`take.flag.${flag}`);
}

function Take({ job, index, take, busy, act, t }) {
  const base = `/api/jobs/${job.id}/transitions/${index}`;
  const done = take.status === "done";
  const flags = (take.score && take.score.flags) || [];
  return html`<li data-testid="take" data-take=${take.take} data-chosen=${take.chosen ? "true" : "false"}
      class=${`w-44 shrink-0 rounded-lg border p-2 text-xs ${take.chosen ? "border-indigo-500 ring-2 ring-indigo-200" : "border-slate-200"}`}>
    <div class="aspect-video overflow-hidden rounded bg-slate-900">
      ${done && take.video_url
        ? html`<video src=${`${take.video_url}#t=0.001`} controls muted playsinline preload="metadata"
            class="h-full w-full object-contain" data-testid="take-video"></video>`
        : html`<div class="flex h-full items-center justify-center text-slate-300">${t(`take.status.${take.status}`)}</div>`}
    </div>
    <div class="mt-1 flex items-baseline justify-between">
      <span class="font-semibold">${t("take.name", { k: take.take })}</span>
      <span class="tabular-nums" title=${t("take.scoreHelp")} data-testid="take-score">${t("take.score")} ${score(take.overall)}</span>
    </div>
    <div class="truncate text-slate-500">${t("take.seed")} ${take.seed ?? "–"} · ${take.seconds ?? "–"}s · ${take.strength ?? "–"}</div>
    ${take.prompt && html`<div class="truncate text-slate-500" title=${take.prompt}>${take.prompt}</div>`}
    ${(take.loras || []).length > 0 && html`<div class="truncate text-slate-600" data-testid="take-loras"
      title=${loraSummary(take.loras)}>${t("lora.take", { list: loraSummary(take.loras) })}</div>`}
    ${(take.keyframes || []).length > 0 && html`<div class="truncate text-violet-800" data-testid="take-keyframes">
      ${t("keyframe.take", { list: take.keyframes.map((k) => `${k.lands_at}s`).join(", ") })}</div>`}
    ${flags.length > 0 && html`<div class="flex flex-wrap gap-1" data-testid="take-flags">
      ${flags.map((flag) => html`<span key=${flag} data-flag=${flag} title=${flagHelp(take.score, flag, t)}
        class=${`rounded px-1 ${HOLDS.has(flag) ? "bg-sky-100 text-sky-900" : "bg-amber-100 text-amber-900"}`}>${t(`take.flag.${flag}`)}</span>`)}
    </div>`}
    <div class="mt-1 flex gap-1">
      ${take.chosen
        ? html`<span class="rounded bg-indigo-100 px-2 py-0.5 text-indigo-800">${t("take.chosen")}</span>`
        : html`<button type="button" disabled=${busy || !done} data-testid="take-choose"
            onClick=${() => act(() => api.post(`${base}/choose`, { take: take.take }))}
            class="rounded border border-slate-300 px-2 py-0.5 hover:bg-slate-100 disabled:opacity-50">${t("take.choose")}</button>`}
      ${!take.chosen && html`<button type="button" disabled=${busy} data-testid="take-delete"
          onClick=${() => act(() => api.del(`${base}/takes/${take.take}`))}
          class="rounded border border-slate-300 px-2 py-0.5 hover:bg-red-50 disabled:opacity-50">${t("take.delete")}</button>`}
    </div>
    ${done && html`<div class="mt-1"><${ExportMenu} job=${job} take=${{ index, take: take.take }} compact=${true} /></div>`}
  </li>`;
}

function number(text) {
  const value = Number(text);
  return text === "" || !Number.isFinite(value) ? undefined : value;
}

function Reroll({ job, index, count, busy, act, t }) {
  const [open, setOpen] = useState(false);
  const most = limit("max_takes_kept");
  const [form, setForm] = useState({ seed: "", prompt: "", seconds: "", strength: "" });
  // LoRAs: "keep" sends nothing (the transition's own), "none" sends [], "pick" sends the picks.
  const [loraMode, setLoraMode] = useState("keep");
  const own = (((job.params || {}).segments || [])[index] || {}).loras || [];
  const [picks, setPicks] = useState(own);
  const { list: loraList } = useLoraList();
  const takesLoras = LORA_ENGINES.includes(job.engine);
  // Every hook above: the form's hooks run whether or not the take limit hides it.
  if (most && count >= most) {
    return html`<span class="text-xs text-amber-700" data-testid="take-limit">${t("take.limit", { n: most })}</span>`;
  }
  const set = (key) => (e) => setForm({ ...form, [key]: e.target.value });
  const submit = (e) => {
    e.preventDefault();
    const body = {};
    if (number(form.seed) != null) body.seed = number(form.seed);
    if (form.prompt.trim()) body.prompt = form.prompt.trim();
    if (number(form.seconds) != null) body.seconds = number(form.seconds);
    if (number(form.strength) != null) body.strength = number(form.strength);
    if (takesLoras && loraMode === "none") body.loras = [];
    if (takesLoras && loraMode === "pick") body.loras = sentLoras(job.engine, picks, loraList);
    act(() => api.post(`/api/jobs/${job.id}/transitions/${index}/takes`, body)).then(() => setOpen(false));
  };
  if (!open) {
    return html`<button type="button" disabled=${busy} onClick=${() => setOpen(true)} data-testid="take-reroll"
      class="rounded border border-slate-300 px-2 py-1 text-xs hover:bg-slate-100 disabled:opacity-50">${t("take.reroll")}</button>`;
  }
  const field = "w-full rounded border border-slate-300 px-1 py-0.5";
  return html`<form onSubmit=${submit} class="grid grid-cols-2 gap-1 text-xs sm:grid-cols-5" data-testid="take-reroll-form">
    <label>${t("take.seed")}<input class=${field} inputmode="numeric" value=${form.seed} onInput=${set("seed")}
      placeholder=${t("take.random")} data-testid="reroll-seed" /></label>
    <label>${t("take.seconds")}<input class=${field} inputmode="decimal" value=${form.seconds} onInput=${set("seconds")}
      data-testid="reroll-seconds" /></label>
    <label>${t("take.strength")}<input class=${field} inputmode="numeric" value=${form.strength} onInput=${set("strength")}
      data-testid="reroll-strength" /></label>
    <label class="col-span-2">${t("take.prompt")}<input class=${field} value=${form.prompt} onInput=${set("prompt")}
      placeholder=${t("take.promptSame")} data-testid="reroll-prompt" /></label>
    ${takesLoras && html`<div class="col-span-2 space-y-1 sm:col-span-5" data-testid="reroll-loras">
      <label class="flex flex-wrap items-center gap-2">${t("lora.reroll")}
        <select value=${loraMode} onChange=${(e) => setLoraMode(e.target.value)} data-testid="reroll-lora-mode"
          class="rounded border border-slate-300 px-1 py-0.5">
          <option value="keep">${t("lora.rerollKeep")}${own.length ? ` (${loraSummary(own)})` : ""}</option>
          <option value="none">${t("lora.rerollNone")}</option>
          <option value="pick">${t("lora.rerollPick")}</option>
        </select></label>
      ${loraMode === "pick" && html`<div class="rounded border border-slate-200 p-2">
        <${LoraPicker} engine=${job.engine} picks=${picks} onChange=${setPicks} testid="reroll-lora-picker" compact=${true} /></div>`}
    </div>`}
    <div class="col-span-2 flex gap-1 sm:col-span-5">
      <button type="submit" disabled=${busy} data-testid="reroll-submit"
        class="rounded bg-indigo-600 px-2 py-1 font-medium text-white hover:bg-indigo-700 disabled:opacity-50">${t("take.generate")}</button>
      <button type="button" onClick=${() => setOpen(false)} class="rounded border border-slate-300 px-2 py-1">${t("take.close")}</button>
    </div>
  </form>`;
}

export function Storyboard({ job, finished }) {
  const { t, te } = useLang();
  const [error, setError] = useState("");
  const [pending, setPending] = useState(false);
  const transitions = job.transitions || [];
  if (!transitions.length) return null;
  const busy = pending || !finished;
  // A loop job's last transition goes back to image 1; its seam is the wrap, where playback goes round.
  const wrapIndex = job.params && job.params.loop ? transitions.length - 1 : -1;
  async function act(call) {
    setError("");
    setPending(true);
    try { await call(); } catch (err) { setError(err); throw err; } finally { setPending(false); }
  }
  const quiet = (call) => act(call).catch(() => {});
  return html`<details class="mt-3 text-sm" data-testid="storyboard" open>
    <summary class="cursor-pointer font-medium text-slate-700">${t("takes.title")}</summary>
    <ol class="mt-2 space-y-3">
      ${transitions.map((tr) => html`<li key=${tr.index} data-testid="transition" data-index=${tr.index}>
        <div class="mb-1 flex items-center gap-2">
          <span class="font-medium">${t(tr.index === wrapIndex ? "takes.transitionWrap" : "takes.transition", { n: tr.index + 1 })}</span>
          ${tr.seam_after && html`<span class="text-xs text-slate-500" data-testid="seam"
            data-wrap=${tr.index === wrapIndex ? "true" : "false"} title=${t(tr.index === wrapIndex ? "takes.seamWrapHelp" : "takes.seamHelp")}>
            ${t(tr.index === wrapIndex ? "takes.seamWrap" : "takes.seam")} ${score(tr.seam_after.score * 100)}</span>`}
          <span class="ml-auto"><${Reroll} job=${job} index=${tr.index} count=${tr.takes.length} busy=${busy} act=${act} t=${t} /></span>
        </div>
        <ul class="flex gap-2 overflow-x-auto pb-1">
          ${tr.takes.map((take) => html`<${Take} key=${take.take} job=${job} index=${tr.index} take=${take}
            busy=${busy} act=${quiet} t=${t} />`)}
        </ul>
      </li>`)}
    </ol>
    <div class="mt-2 flex items-center gap-2">
      <button type="button" disabled=${busy} data-testid="job-rebuild"
        onClick=${() => quiet(() => api.post(`/api/jobs/${job.id}/rebuild`))}
        class="rounded-md bg-indigo-600 px-3 py-1.5 text-sm font-medium text-white hover:bg-indigo-700 disabled:opacity-50">
        ${t("takes.rebuild")}</button>
      <span class="text-xs text-slate-500">${t("takes.rebuildHelp")}</span>
    </div>
    ${error && html`<p class="mt-2 text-sm text-red-700" role="alert" data-testid="takes-error">${te(error)}</p>`}
  </details>`;
}
