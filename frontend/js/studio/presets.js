// Presets (GET/POST/PATCH/DELETE /api/presets: stored on the server, so every browser has them)
// and "settings from a video" (POST /api/settings-from-video with the file's start).
import { html, useState, useEffect } from "../lib/react.js";
import { useLang } from "../lib/i18n.js";
import { api } from "../lib/api.js";

// The studio writes its tags at the start of the file (+faststart): the start is enough.
export const VIDEO_HEAD_BYTES = 512 * 1024;

export function isVideoFile(file) {
  return (file.type || "").startsWith("video/") || /\.(mp4|mov|m4v|webm|mkv)$/i.test(file.name || "");
}

// The composer's settings in a video the studio made; rejects with the server's error.
export async function settingsFromVideo(file) {
  const form = new FormData();
  form.append("file", file.slice(0, VIDEO_HEAD_BYTES), file.name);
  return api.post("/api/settings-from-video", form);
}

export function presetLabel(preset, te) {
  return preset.name_message ? te(preset.name_message, preset.name) : preset.name;
}

// `current()` gives the composer's settings to save; `onApply(settings, name)` loads one.
export function PresetPicker({ current, onApply }) {
  const { t, te } = useLang();
  const [presets, setPresets] = useState([]);
  const [chosen, setChosen] = useState("");
  const [name, setName] = useState("");
  const [error, setError] = useState("");
  const [note, setNote] = useState("");

  const load = () => api.get("/api/presets").then((body) => setPresets(body.presets)).catch(setError);
  useEffect(() => { load(); }, []);

  async function act(call, done) {
    setError(""); setNote("");
    try { const answer = await call(); await load(); if (done) done(answer); } catch (err) { setError(err); }
  }
  const pick = (id) => {
    setChosen(id);
    const preset = presets.find((p) => p.id === id);
    if (!preset) return;
    onApply(preset.settings);
    setNote(t("presets.applied", { name: presetLabel(preset, te) }));
    if (!preset.builtin) setName(preset.name);
  };
  const save = () => act(() => api.post("/api/presets", { name, settings: current() }), (p) => {
    setChosen(p.id); setNote(t("presets.saved", { name: p.name }));
  });
  const rename = () => act(() => api.patch(`/api/presets/${chosen}`, { name }));
  const remove = () => act(() => api.del(`/api/presets/${chosen}`), () => { setChosen(""); setName(""); });

  const button = "rounded-md border border-slate-300 px-2 py-1 text-xs hover:bg-slate-100 disabled:opacity-50";
  return html`<div class="space-y-1" data-testid="presets">
    <div class="flex flex-wrap items-end gap-2">
      <label class="text-sm font-medium">${t("presets.title")}
        <select value=${chosen} data-testid="preset-select" onChange=${(e) => pick(e.target.value)}
          class="mt-1 block rounded-md border border-slate-300 px-2 py-1.5 text-sm">
          <option value="">${t("presets.choose")}</option>
          ${presets.map((p) => html`<option key=${p.id} value=${p.id}>${presetLabel(p, te)}${p.builtin ? ` (${t("presets.builtin")})` : ""}</option>`)}
        </select></label>
      <input type="text" value=${name} onInput=${(e) => setName(e.target.value)} data-testid="preset-name"
        placeholder=${t("presets.name")} aria-label=${t("presets.name")}
        class="w-40 rounded-md border border-slate-300 px-2 py-1.5 text-sm" />
      <button type="button" class=${button} data-testid="preset-save" onClick=${save}>${t("presets.save")}</button>
      <button type="button" class=${button} data-testid="preset-rename" disabled=${!chosen} onClick=${rename}>${t("presets.rename")}</button>
      <button type="button" class=${button} data-testid="preset-delete" disabled=${!chosen} onClick=${remove}>${t("presets.delete")}</button>
    </div>
    ${note && html`<p class="text-xs text-emerald-800" role="status" data-testid="preset-note">${note}</p>`}
    ${error && html`<p class="text-xs text-red-700" role="alert" data-testid="preset-error">${te(error)}</p>`}
  </div>`;
}
