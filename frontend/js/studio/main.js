// The studio page: the image sequence and its prompts, the settings, and the live job list.
import { html, mount, useState, useEffect, useReducer, useRef, useCallback, useMemo, Fragment } from "../lib/react.js";
import { LangProvider, LangToggle, useLang } from "../lib/i18n.js";
import { LoginGate } from "../lib/login.js";
import { api, uploadFile } from "../lib/api.js";
import { connectSocket } from "../lib/socket.js";
import { ImageStrip, useWindowDrop, pairKey } from "./images.js";
import { KeyframeEditor, sentKeyframes, useKeyframePlan } from "./keyframes.js";
import { SettingsPanel, AdvancedPanel, defaultSettings, defaultPost, serverResolution, resolutionAfterHealth } from "./settings.js";
import { JobList } from "./jobs.js";
import { publishExport } from "./exports.js";
import { useDoneSignals, NotifyButton } from "./notify.js";
import { PresetPicker, isVideoFile, settingsFromVideo } from "./presets.js";
import { SuggestionsPanel, useAnalysis, indexAnalysis, NO_AUTO } from "./suggestions.js";
import { LoopSwitch } from "./loop.js";
import { LoraPicker, useLoraList, sentLoras } from "./loras.js";
import { jobsReducer, initialJobs, actionFor, sortedJobs, loadMeta } from "../lib/jobs-store.js";

const DRAFT_KEY = "studio.draft";
const PARALLEL_UPLOADS = 3;
let nextKey = 1;

// The composer survives a reload: uploads are on the server, their order and texts live here.
function loadDraft() {
  try {
    const draft = JSON.parse(localStorage.getItem(DRAFT_KEY) || "null");
    if (!draft) return null;
    draft.items = (draft.uploads || []).map((upload) => ({
      key: `k${nextKey++}`, status: "ready", upload, filename: upload.filename || upload.id, progress: 1,
    }));
    return draft;
  } catch (_) {
    return null;
  }
}

function SocketBadge({ status }) {
  const { t } = useLang();
  const colour = status === "open" ? "bg-emerald-500" : "bg-amber-500";
  return html`<span class="flex w-32 items-center gap-1.5 text-xs text-slate-600" data-testid="socket-status" data-state=${status}>
    <span class=${`h-2 w-2 rounded-full ${colour}`}></span>${t(`socket.${status}`)}</span>`;
}

// A job's keyframes back into the composer (duplicate, edit), by the pair keys of its images: each
// transition's first take holds the transition's own.
function jobKeyframes(job, pairItems, withLoop) {
  const keys = pairItems.slice(1).map((item, i) => pairKey(pairItems[i], item));
  if (withLoop && pairItems.length > 1) keys.push(pairKey(pairItems[pairItems.length - 1], pairItems[0]));
  const out = {};
  (job.transitions || []).forEach((tr) => {
    const own = ((tr.takes || [])[0] || {}).keyframes || [];
    if (own.length && keys[tr.index]) {
      out[keys[tr.index]] = own.map((k) => ({ id: `job-${tr.index}-${k.point}`, status: "ready", at: k.at,
        upload: { id: k.image, url: k.url, filename: k.image } }));
    }
  });
  return out;
}

// The draft keeps uploaded keyframes only (one still uploading is gone after a reload).
function keptKeyframes(all) {
  return Object.fromEntries(Object.entries(all).map(([key, list]) => [key, list.filter((k) => k.upload)]));
}

function Studio({ meta }) {
  const { t, te } = useLang();
  const draft = useMemo(loadDraft, []);
  const [items, setItems] = useState(draft ? draft.items : []);
  const [rejected, setRejected] = useState([]);
  const [pairPrompts, setPairPrompts] = useState(draft ? draft.pairPrompts || {} : {});
  const [prompt, setPrompt] = useState(draft ? draft.prompt || "" : "");
  // Each pair's keyframes, by pair key (like its prompt): [{id, upload, at, status}].
  const [keyframes, setKeyframes] = useState(draft ? draft.keyframes || {} : {});
  const [loop, setLoop] = useState(!!(draft && draft.loop));
  const [settings, setSettings] = useState({ ...defaultSettings(meta), ...(draft ? draft.settings : {}) });
  // The default resolution the settings were last given (the server's): see resolutionAfterHealth.
  const [resolutionDefault, setResolutionDefault] = useState(
    (draft && draft.resolutionDefault) || defaultSettings(meta).resolution);
  // Until /api/health answers: morph works everywhere, FramePack only once installed.
  const [engine, setEngine] = useState(draft && draft.engine ? draft.engine : "morph");
  const [post, setPost] = useState({ ...defaultPost(meta), ...(draft ? draft.post : {}) });
  // Sliders that follow the per-transition suggestions (see suggestions.js).
  const [auto, setAuto] = useState({ ...NO_AUTO, ...(draft ? draft.auto : {}) });
  const [health, setHealth] = useState(null);
  const [jobsState, dispatch] = useReducer(jobsReducer, initialJobs);
  const [socketStatus, setSocketStatus] = useState("connecting");
  const [submitting, setSubmitting] = useState(false);
  const [submitError, setSubmitError] = useState("");
  // {id, keys: pair keys in order}: whose translations the pair boxes show as "English used".
  const [lastJob, setLastJob] = useState(draft ? draft.lastJob || null : null);
  const queue = useRef([]);
  const active = useRef(0);
  // The queued job the composer edits (PATCH on submit), or null.
  const [editing, setEditing] = useState(null);
  const [composerNote, setComposerNote] = useState("");
  const [composerError, setComposerError] = useState("");

  const ready = items.filter((item) => item.status === "ready");
  const imageIds = ready.map((item) => item.upload.id);
  const pairs = Math.max(0, ready.length - 1);
  const analysis = useAnalysis(imageIds);
  const analysed = indexAnalysis(analysis, imageIds);
  // The LoRAs a job gets: the picks that fit its engine (picks for another engine stay for later).
  const { list: loraList } = useLoraList();
  const loras = sentLoras(engine, settings.loras, loraList);
  const pairKeys = ready.slice(1).map((item, i) => pairKey(ready[i], item));
  if (loop && ready.length > 1) pairKeys.push(pairKey(ready[ready.length - 1], ready[0])); // the wrap pair comes last
  const keyframePlan = useKeyframePlan({ images: imageIds, engine, keys: pairKeys, keyframes,
    settings: { ...settings, loras, seconds: auto.seconds ? null : settings.seconds,
      strength: auto.strength ? null : settings.strength, ...(engine === "wan" ? { end_influence: null } : {}) } });

  useEffect(() => {
    localStorage.setItem(DRAFT_KEY, JSON.stringify({
      uploads: ready.map((item) => item.upload), pairPrompts, prompt, settings, engine, post, lastJob, auto,
      resolutionDefault, loop, keyframes: keptKeyframes(keyframes),
    }));
  }, [items, pairPrompts, prompt, settings, engine, post, lastJob, auto, resolutionDefault, loop, keyframes]);

  // An answer for the current order that has no per-pair suggestion (model unavailable) ends the
  // auto mode: the server would fall back to its defaults, which the sliders would not show.
  useEffect(() => {
    if (!analysed.current || analysis.loading) return;
    const next = { seconds: auto.seconds && !!analysed.seconds, strength: auto.strength && !!analysed.strength };
    if (next.seconds !== auto.seconds || next.strength !== auto.strength) setAuto(next);
  }, [analysis, auto]);

  function applySuggestions(s, index) {
    if (s.resolution != null) setSettings((current) => ({ ...current, resolution: s.resolution }));
    setAuto({ seconds: !!index.seconds, strength: !!index.strength });
  }

  // A restored draft may name uploads the server no longer has (data dir wiped): drop those.
  useEffect(() => {
    if (!draft) return;
    draft.items.forEach(async (item) => {
      try { await api.get(`/api/uploads/${item.upload.id}`); } catch (err) {
        if (err.status === 404) setItems((list) => list.filter((i) => i.key !== item.key));
      }
    });
  }, []);

  useEffect(() => {
    api.get("/api/health").then((body) => {
      setHealth(body);
      const planned = serverResolution(body);
      if (planned != null) {
        setSettings((current) => ({ ...current, resolution: resolutionAfterHealth(current.resolution, resolutionDefault, body) }));
        setResolutionDefault(planned);
      }
      // The server's default engine (morph while FramePack is not installed), unless this
      // browser's saved draft chose one that is ready.
      const fallback = body && body.defaults && body.defaults.engine;
      const engines = (body && body.engines) || {};
      const saved = draft && draft.engine;
      const usable = saved && !(engines[saved] && engines[saved].installed === false);
      if (fallback && !usable) setEngine(fallback);
    }).catch(() => setHealth(null));
  }, []);

  // Jobs: the full list on every (re)connect, then the socket's snapshot and events on top.
  useEffect(() => connectSocket("/ws", {
    onStatus: setSocketStatus,
    onOpen: () => api.get("/api/jobs").then((body) => dispatch({ type: "list", jobs: body.jobs })).catch(() => {}),
    onMessage: (message) => {
      if (message.type === "job.export") publishExport(message.export);
      const action = actionFor(message);
      if (action) dispatch(action);
    },
  }), []);

  const update = (key, patch) => setItems((list) => list.map((item) => (item.key === key ? { ...item, ...patch } : item)));

  const pump = useCallback(() => {
    while (active.current < PARALLEL_UPLOADS && queue.current.length) {
      const { key, file } = queue.current.shift();
      active.current += 1;
      update(key, { status: "uploading" });
      uploadFile(file, (progress) => update(key, { progress }))
        .then((upload) => update(key, { status: "ready", upload, progress: 1 }))
        .catch((err) => {
          setItems((list) => list.filter((item) => item.key !== key));
          setRejected((list) => [...list, { key, filename: file.name, error: err }]);
        })
        .finally(() => {
          active.current -= 1;
          pump();
        });
    }
  }, []);

  // A preset, a video's or a job's settings into the composer: what it has replaces the
  // composer's, the rest stays. `prompts` go to the pairs in order when their count matches.
  function applyComposer(cs, pairItems = ready, withLoop = loop) {
    if (!cs) return;
    if (cs.engine) setEngine(cs.engine);
    if (cs.settings) {
      const given = Object.fromEntries(Object.entries(cs.settings).filter(([, v]) => v !== null && v !== undefined));
      setSettings((current) => ({ ...current, ...given, ...("seed" in cs.settings ? { seed: cs.settings.seed } : {}) }));
      if ("seconds" in given || "strength" in given) setAuto(NO_AUTO);
    }
    if (cs.postprocess) setPost({ ...defaultPost(meta), ...cs.postprocess });
    if ("prompt" in cs || cs.prompts) setPrompt(cs.prompt || "");
    if (cs.prompts) {
      const keys = pairItems.slice(1).map((item, i) => pairKey(pairItems[i], item));
      if (withLoop && pairItems.length > 1) keys.push(pairKey(pairItems[pairItems.length - 1], pairItems[0]));
      if (keys.length === cs.prompts.length) {
        setPairPrompts((p) => ({ ...p, ...Object.fromEntries(keys.map((k, i) => [k, cs.prompts[i] || ""])) }));
      }
    }
  }

  function jobComposer(job) {
    const own = (job.prompts || []).map((p) => (p && p.original) || null);
    return { engine: job.engine, settings: job.settings || {}, postprocess: job.postprocess || undefined,
      prompt: "", prompts: own };
  }

  // From a job card: "settings" (finished jobs), "duplicate" (images too), "edit" (a queued job).
  function takeJob(job, mode) {
    setComposerError("");
    let pairItems = ready;
    if (mode !== "settings") {
      pairItems = (job.images || []).map((image) => ({
        key: `k${nextKey++}`, status: "ready", progress: 1, filename: image.id,
        upload: { id: image.id, url: image.url, width: image.width, height: image.height, filename: image.id },
      }));
      setItems(pairItems);
    }
    // With its images comes its storyboard: a loop job's wrap pair (and its prompt) too.
    const withLoop = mode === "settings" ? loop : !!(job.params && job.params.loop);
    if (mode !== "settings") setLoop(withLoop);
    applyComposer(jobComposer(job), pairItems, withLoop);
    if (mode !== "settings") setKeyframes(jobKeyframes(job, pairItems, withLoop));
    setEditing(mode === "edit" ? job.id : null);
    setComposerNote(mode === "edit" ? "" : t(mode === "settings" ? "jobs.useSettings" : "jobs.duplicate") + " ✓");
    window.scrollTo({ top: 0, behavior: "smooth" });
  }

  async function fromVideo(file) {
    setComposerError(""); setComposerNote("");
    try {
      const answer = await settingsFromVideo(file);
      applyComposer(answer.settings);
      setComposerNote(t("fromVideo.done"));
    } catch (err) {
      setComposerError(err);
    }
  }

  const fromVideoRef = useRef(fromVideo);
  fromVideoRef.current = fromVideo; // the drop handler is made once; it reads the latest
  const addFiles = useCallback((all) => {
    const videos = all.filter(isVideoFile);
    if (videos.length) fromVideoRef.current(videos[0]);
    const files = all.filter((file) => !isVideoFile(file));
    if (!files.length) return;
    const added = files.map((file) => ({
      key: `k${nextKey++}`, status: "queued", progress: 0, filename: file.name,
      preview: URL.createObjectURL(file), file,
    }));
    setItems((list) => [...list, ...added]);
    queue.current.push(...added.map(({ key, file }) => ({ key, file })));
    pump();
  }, [pump]);
  const droppingFiles = useWindowDrop(addFiles);

  const move = useCallback((key, to) => setItems((list) => {
    const from = list.findIndex((item) => item.key === key);
    if (from < 0 || to < 0 || to >= list.length || from === to) return list;
    const next = [...list];
    const [item] = next.splice(from, 1);
    next.splice(to, 0, item);
    return next;
  }), []);
  const remove = (key) => setItems((list) => list.filter((item) => item.key !== key));

  const jobs = sortedJobs(jobsState);
  useDoneSignals(jobs, jobsState.live);
  const englishFor = (key) => {
    if (!lastJob) return "";
    const job = jobsState.jobs[lastJob.id];
    const index = lastJob.keys.indexOf(key);
    return job && job.prompts && index >= 0 && job.prompts[index] ? job.prompts[index].english || "" : "";
  };

  async function submit(event) {
    event.preventDefault();
    setSubmitError("");
    setSubmitting(true);
    const keys = pairKeys;
    const body = {
      images: imageIds,
      loop,
      prompt,
      prompts: keys.map((key) => (pairPrompts[key] || "").trim() || null),
      engine,
      // null = "not set": the server gives each transition its suggested value.
      settings: { ...settings, seconds: auto.seconds ? null : settings.seconds, strength: auto.strength ? null : settings.strength,
        ...(engine === "wan" ? { end_influence: null } : {}), // as the slider shows: Wan has no end-frame weight
        loras },
      postprocess: post,
      keyframes: sentKeyframes(keys, keyframes),
    };
    try {
      if (editing) {
        // A queued job keeps its images and its loop (PATCH takes neither): the rest is edited.
        const { images, loop: _loop, ...edit } = body;
        const job = await api.patch(`/api/jobs/${editing}`, edit);
        dispatch({ type: "job", job });
        setEditing(null);
        return;
      }
      const answer = await api.post("/api/jobs", body);
      setLastJob({ id: answer.id, keys });
      // The socket brings the job too; fetching it now makes the card appear without waiting.
      api.get(`/api/jobs/${answer.id}`).then((job) => dispatch({ type: "job", job })).catch(() => {});
    } catch (err) {
      setSubmitError(err);
    } finally {
      setSubmitting(false);
    }
  }

  const uploading = items.some((item) => item.status !== "ready")
    || Object.values(keyframes).some((list) => list.some((k) => !k.upload));
  const blocked = ready.length < 2 ? t("submit.needTwo") : uploading ? t("submit.busy") : "";

  return html`<div class="mx-auto max-w-7xl p-3 sm:p-6">
    <header class="mb-4 flex flex-wrap items-center gap-3">
      <h1 class="text-xl font-bold sm:text-2xl">${t("app.title")}</h1>
      <${SocketBadge} status=${socketStatus} />
      <nav class="ml-auto flex items-center gap-2">
        <${NotifyButton} />
        <a href="/monitor" class="rounded-md px-3 py-1 text-sm text-indigo-700 hover:bg-indigo-50" data-testid="monitor-link">${t("app.monitor")}</a>
        <${LangToggle} />
      </nav>
    </header>
    <div class="grid gap-6 lg:grid-cols-[minmax(0,3fr)_minmax(0,2fr)]">
      <form onSubmit=${submit} class="min-w-0 space-y-6">
        <div class="rounded-xl border border-slate-200 bg-white p-4 shadow-sm">
          <${ImageStrip} items=${items} rejected=${rejected} pairPrompts=${pairPrompts} englishFor=${englishFor}
            onFiles=${addFiles} onMove=${move} onRemove=${remove}
            onDismiss=${(key) => setRejected((list) => list.filter((r) => r.key !== key))}
            onPairPrompt=${(key, value) => setPairPrompts((p) => ({ ...p, [key]: value }))}
            tagsFor=${(id) => analysed.tags[id] || null}
            suggestedPromptFor=${(key) => (prompt.trim() || !analysed.perPair[key] ? "" : analysed.perPair[key].prompt)}
            loop=${loop}
            pairExtra=${(key, index) => html`<${KeyframeEditor} index=${index} items=${keyframes[key] || []} engine=${engine}
              segment=${keyframePlan.segments ? keyframePlan.segments[index] : null} error=${keyframePlan.error}
              onChange=${(change) => setKeyframes((all) => ({ ...all, [key]: change(all[key] || []) }))} />`} />
          <${LoopSwitch} loop=${loop} setLoop=${setLoop} />
          <label class="mt-4 block text-sm font-medium">${t("prompt.global")}
            <textarea rows="2" value=${prompt} onInput=${(e) => setPrompt(e.target.value)} data-testid="global-prompt"
              placeholder=${t("prompt.globalPlaceholder")}
              class="mt-1 block w-full rounded-md border border-slate-300 p-2 text-sm"></textarea></label>
          <p class="mt-1 text-[11px] text-slate-500" data-testid="timed-prompt-help">${t("prompt.timedHelp")}</p>
        </div>
        <${SuggestionsPanel} analysis=${analysis} index=${analysed} imageIds=${imageIds} auto=${auto}
          onApply=${applySuggestions} onOwnValues=${() => setAuto(NO_AUTO)} />
        <div class="space-y-2 rounded-xl border border-slate-200 bg-white p-4 shadow-sm">
          <div class="flex flex-wrap items-end gap-3">
            <${PresetPicker} onApply=${(cs) => applyComposer(cs)}
              current=${() => ({ engine, settings, postprocess: post, prompt })} />
            <label class="cursor-pointer rounded-md border border-slate-300 px-2 py-1 text-xs hover:bg-slate-100">
              ${t("fromVideo.button")}
              <input type="file" accept="video/*" class="sr-only" data-testid="settings-from-video"
                onChange=${(e) => { if (e.target.files[0]) fromVideo(e.target.files[0]); e.target.value = ""; }} /></label>
          </div>
          ${composerNote && html`<p class="text-xs text-emerald-800" role="status" data-testid="composer-note">${composerNote}</p>`}
          ${composerError && html`<p class="text-xs text-red-700" role="alert" data-testid="composer-error">${te(composerError)}</p>`}
        </div>
        <div class="rounded-xl border border-slate-200 bg-white p-4 shadow-sm">
          <${SettingsPanel} settings=${settings} setSettings=${setSettings} engine=${engine} setEngine=${setEngine}
            post=${post} setPost=${setPost} pairs=${pairs + (loop && pairs > 0 ? 1 : 0)} health=${health} limits=${meta.limits}
            auto=${auto} setAuto=${setAuto} suggested=${{ seconds: analysed.seconds, strength: analysed.strength }} />
        </div>
        <div class="rounded-xl border border-slate-200 bg-white p-4 shadow-sm">
          <${LoraPicker} engine=${engine} picks=${settings.loras || []}
            onChange=${(picks) => setSettings((s) => ({ ...s, loras: picks }))} />
        </div>
        <${AdvancedPanel} images=${imageIds} settings=${{ ...settings, loras }} engine=${engine} auto=${auto} setSettings=${setSettings}
          prompt=${prompt} prompts=${ready.slice(1).map((item, i) => (pairPrompts[pairKey(ready[i], item)] || "").trim() || null)} />
        ${editing && html`<p class="rounded-md bg-amber-50 p-2 text-sm text-amber-900" data-testid="editing-banner">
          ${t("edit.banner", { id: editing.slice(0, 8) })}
          <button type="button" class="ml-2 underline" data-testid="edit-stop" onClick=${() => setEditing(null)}>${t("edit.stop")}</button></p>`}
        <div class="flex flex-wrap items-center gap-3">
          <button type="submit" disabled=${!!blocked || submitting} data-testid="submit"
            class="rounded-lg bg-indigo-600 px-5 py-2.5 font-semibold text-white shadow hover:bg-indigo-700 disabled:cursor-not-allowed disabled:opacity-50">
            ${submitting ? t("submit.sending") : editing ? t("edit.save") : t("submit")}</button>
          <span class="text-sm text-slate-500">${blocked}</span>
        </div>
        ${submitError && html`<p class="rounded-md bg-red-50 p-2 text-sm text-red-800" role="alert" data-testid="submit-error">${te(submitError)}</p>`}
      </form>
      <div class="min-w-0"><${JobList} jobs=${jobs} live=${jobsState.live} onUse=${takeJob} /></div>
    </div>
    ${droppingFiles && html`<div class="pointer-events-none fixed inset-0 z-40 flex items-center justify-center border-4 border-dashed border-indigo-500 bg-indigo-50/80 text-lg font-semibold text-indigo-800">
      ${t("images.drop")}</div>`}
  </div>`;
}

// The studio renders once the server has said its statuses, defaults and limits (GET /api/meta):
// the page copies none of them. A failed fetch is tried again; the login gate stays mounted so a
// token can be given while it waits.
function App() {
  const { t } = useLang();
  const [meta, setMeta] = useState(null);
  const [error, setError] = useState("");
  useEffect(() => { loadMeta(api.get, (err) => setError(err.message)).then(setMeta); }, []);
  return html`<${Fragment}>
    ${meta ? html`<${Studio} meta=${meta} />` : html`<p class="p-6 text-sm text-slate-600" data-testid="meta-loading"
      role="status">${error ? `${t("app.metaRetry")} (${error})` : t("socket.connecting")}</p>`}
    <${LoginGate} /><//>`;
}

mount(() => html`<${LangProvider}><${App} /><//>`, document.getElementById("root"));
