// The image sequence: upload (picker or drop anywhere), reorder by dragging (pointer events, so
// mouse, touch and pen all work) or with the move buttons, remove, and a prompt box on each arrow
// between two consecutive images.
import { html, useRef, useState, useEffect } from "../lib/react.js";
import { useLang } from "../lib/i18n.js";
import { TagChips } from "./suggestions.js";
import { MotionPresets } from "./motion.js";

// Prompts belong to a pair of images, not to a position: after a reorder a pair that still exists
// keeps its text.
export function pairKey(left, right) {
  return `${left.upload.id}>${right.upload.id}`;
}

const DRAG_THRESHOLD_PX = 6;

function useDragReorder(items, onMove) {
  const drag = useRef(null);
  const cards = useRef(new Map());
  const [draggingKey, setDraggingKey] = useState(null);

  function register(key) {
    return (element) => (element ? cards.current.set(key, element) : cards.current.delete(key));
  }

  function onPointerDown(event, key) {
    if (event.button !== 0 || event.target.closest("button, textarea, input, a")) return;
    drag.current = { key, x: event.clientX, y: event.clientY, active: false, pointerId: event.pointerId };
    event.currentTarget.setPointerCapture(event.pointerId);
  }

  function onPointerMove(event) {
    const d = drag.current;
    if (!d || d.pointerId !== event.pointerId) return;
    if (!d.active) {
      if (Math.hypot(event.clientX - d.x, event.clientY - d.y) < DRAG_THRESHOLD_PX) return;
      d.active = true;
      setDraggingKey(d.key);
    }
    event.preventDefault();
    // Move only when the pointer is inside another card: no flip-flopping between neighbours of
    // different width.
    for (const [key, element] of cards.current) {
      if (key === d.key) continue;
      const r = element.getBoundingClientRect();
      if (event.clientX >= r.left && event.clientX <= r.right && event.clientY >= r.top && event.clientY <= r.bottom) {
        const to = items.findIndex((item) => item.key === key);
        if (to >= 0) onMove(d.key, to);
        break;
      }
    }
  }

  function onPointerUp(event) {
    const d = drag.current;
    if (!d || d.pointerId !== event.pointerId) return;
    drag.current = null;
    setDraggingKey(null);
  }

  return { register, draggingKey, handlers: { onPointerMove, onPointerUp, onPointerCancel: onPointerUp }, onPointerDown };
}

function ImageCard({ item, index, count, dragging, cardRef, onPointerDown, handlers, onMove, onRemove, tags, t }) {
  const uploading = item.status !== "ready";
  const source = item.upload ? item.upload.url : item.preview;
  return html`<div ref=${cardRef} data-testid="image-card" data-upload-id=${item.upload ? item.upload.id : ""}
      data-filename=${item.filename}
      class=${`relative w-32 shrink-0 select-none rounded-lg border bg-white p-1.5 shadow-sm sm:w-36 ${dragging ? "opacity-60 ring-2 ring-indigo-500" : "border-slate-200"}`}
      onPointerDown=${(e) => onPointerDown(e, item.key)} ...${handlers}>
    <div class="relative aspect-square cursor-grab overflow-hidden rounded-md bg-slate-100" style=${{ touchAction: "none" }}
      title=${t("images.dragHint")}>
      <img src=${source} alt=${item.filename} draggable="false" class="h-full w-full object-cover" />
      <span class="absolute left-1 top-1 rounded bg-slate-900/70 px-1.5 text-xs font-semibold text-white tabular-nums">${index + 1}</span>
      ${uploading && html`<div class="absolute inset-x-0 bottom-0 bg-slate-900/60 p-1">
        <div class="text-[10px] text-white">${t("images.uploading")} ${Math.round((item.progress || 0) * 100)}%</div>
        <div class="h-1 rounded bg-white/30"><div class="h-1 rounded bg-white" style=${{ width: `${(item.progress || 0) * 100}%` }}></div></div>
      </div>`}
    </div>
    <div class="mt-1 truncate text-[11px] text-slate-600" title=${item.filename}>${item.filename}</div>
    <${TagChips} tags=${tags} />
    <div class="mt-1 flex justify-between gap-1">
      <button type="button" aria-label=${t("images.moveLeft")} title=${t("images.moveLeft")} disabled=${index === 0}
        data-testid="move-left" onClick=${() => onMove(item.key, index - 1)}
        class="rounded border border-slate-300 px-2 text-sm disabled:opacity-30">◀</button>
      <button type="button" aria-label=${t("images.remove")} title=${t("images.remove")} data-testid="remove-image"
        onClick=${() => onRemove(item.key)} class="rounded border border-slate-300 px-2 text-sm hover:bg-red-50">✕</button>
      <button type="button" aria-label=${t("images.moveRight")} title=${t("images.moveRight")} disabled=${index === count - 1}
        data-testid="move-right" onClick=${() => onMove(item.key, index + 1)}
        class="rounded border border-slate-300 px-2 text-sm disabled:opacity-30">▶</button>
    </div>
  </div>`;
}

// `suggested`: the prompt the server would use for this pair if it stays blank (from the analysis),
// shown as the placeholder so a blank box is not a mystery.
// `wrap`: the loop's closing pair (last image → first), shown after the last image.
// `extra`: what else belongs to this transition (its keyframes), under the prompt.
function PairArrow({ index, value, english, suggested, onChange, t, wrap = false, extra = null }) {
  return html`<div class="flex w-44 shrink-0 flex-col justify-center gap-1 sm:w-48" data-testid="pair"
      data-wrap=${wrap ? "true" : "false"}>
    <div class="flex items-center gap-1 text-indigo-600" aria-hidden="true">
      <span class="h-0.5 flex-1 bg-indigo-300"></span><span class="text-lg leading-none">➜</span>
    </div>
    <label class="text-[11px] text-slate-600">${t(wrap ? "prompt.pairWrap" : "prompt.pair", { n: index + 1 })}
      <textarea rows="3" value=${value} data-testid="pair-prompt" placeholder=${suggested ? t("prompt.pairSuggested", { p: suggested }) : t("prompt.pairPlaceholder")}
        onInput=${(e) => onChange(e.target.value)}
        class="mt-0.5 block w-full resize-none rounded-md border border-slate-300 p-1.5 text-xs"></textarea>
    </label>
    <${MotionPresets} value=${value} onChange=${onChange} />
    <div class="min-h-[1rem] text-[11px] text-emerald-700" data-testid="pair-english">
      ${english ? html`<span class="font-medium">${t("prompt.english")}:</span> ${english}` : ""}</div>
    ${extra}
  </div>`;
}

export function ImageStrip({ items, rejected, pairPrompts, englishFor, onFiles, onMove, onRemove, onDismiss, onPairPrompt,
  tagsFor = () => null, suggestedPromptFor = () => "", loop = false, pairExtra = () => null }) {
  const { t, te } = useLang();
  const input = useRef(null);
  const { register, draggingKey, handlers, onPointerDown } = useDragReorder(items, onMove);
  const nodes = [];
  items.forEach((item, index) => {
    if (index > 0) {
      const left = items[index - 1];
      const both = left.status === "ready" && item.status === "ready";
      const key = both ? pairKey(left, item) : null;
      nodes.push(both
        ? html`<${PairArrow} key=${`pair-${key}`} index=${index - 1} value=${pairPrompts[key] || ""}
            english=${englishFor(key)} suggested=${suggestedPromptFor(key)} onChange=${(v) => onPairPrompt(key, v)} t=${t}
            extra=${pairExtra(key, index - 1)} />`
        : html`<div key=${`gap-${item.key}`} class="flex w-10 items-center justify-center text-slate-400">➜</div>`);
    }
    nodes.push(html`<${ImageCard} key=${item.key} item=${item} index=${index} count=${items.length}
      dragging=${draggingKey === item.key} cardRef=${register(item.key)} onPointerDown=${onPointerDown}
      handlers=${handlers} onMove=${onMove} onRemove=${onRemove} tags=${item.upload ? tagsFor(item.upload.id) : null} t=${t} />`);
  });
  const ready = items.filter((item) => item.status === "ready");
  if (loop && ready.length >= 2 && ready.length === items.length) {
    const key = pairKey(ready[ready.length - 1], ready[0]);
    nodes.push(html`<${PairArrow} key=${`wrap-${key}`} index=${ready.length - 1} value=${pairPrompts[key] || ""} wrap=${true}
      english=${englishFor(key)} suggested=${suggestedPromptFor(key)} onChange=${(v) => onPairPrompt(key, v)} t=${t}
      extra=${pairExtra(key, ready.length - 1)} />`);
  }

  return html`<section aria-labelledby="images-title">
    <div class="mb-2 flex flex-wrap items-center gap-3">
      <h2 id="images-title" class="text-lg font-semibold">${t("images.title")}</h2>
      <button type="button" onClick=${() => input.current.click()} data-testid="pick-images"
        class="rounded-md bg-indigo-600 px-3 py-1.5 text-sm font-medium text-white hover:bg-indigo-700">${t("images.pick")}</button>
      <input ref=${input} type="file" accept="image/*" multiple class="hidden" data-testid="file-input"
        onChange=${(e) => { onFiles([...e.target.files]); e.target.value = ""; }} />
    </div>
    <p class="mb-3 text-sm text-slate-500">${items.length ? t("images.drop") : t("images.empty")}</p>
    ${rejected.length > 0 && html`<ul class="mb-3 space-y-1" data-testid="rejected-list">
      ${rejected.map((r) => html`<li key=${r.key} class="flex items-start gap-2 rounded-md bg-red-50 p-2 text-sm text-red-800" role="alert" data-testid="rejected">
        <span class="font-medium">${t("images.rejected")}: ${r.filename}</span>
        <span class="flex-1 break-words" data-testid="rejected-reason">${te(r.error)}</span>
        <button type="button" onClick=${() => onDismiss(r.key)} aria-label=${t("images.dismiss")} class="px-1">✕</button>
      </li>`)}</ul>`}
    <div class="flex flex-wrap items-stretch gap-2" data-testid="image-strip">${nodes}</div>
  </section>`;
}

// Files dropped anywhere on the page; `dragging` drives the full-page overlay.
export function useWindowDrop(onFiles) {
  const [dragging, setDragging] = useState(false);
  useEffect(() => {
    let depth = 0;
    const hasFiles = (e) => e.dataTransfer && [...e.dataTransfer.types].includes("Files");
    const enter = (e) => { if (hasFiles(e)) { depth += 1; setDragging(true); } };
    const leave = (e) => { if (hasFiles(e)) { depth = Math.max(0, depth - 1); if (!depth) setDragging(false); } };
    const over = (e) => { if (hasFiles(e)) e.preventDefault(); };
    const drop = (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth = 0;
      setDragging(false);
      // Every file goes to the server, which names the reason for the ones it refuses.
      const files = [...e.dataTransfer.files];
      if (files.length) onFiles(files);
    };
    window.addEventListener("dragenter", enter);
    window.addEventListener("dragleave", leave);
    window.addEventListener("dragover", over);
    window.addEventListener("drop", drop);
    return () => {
      window.removeEventListener("dragenter", enter);
      window.removeEventListener("dragleave", leave);
      window.removeEventListener("dragover", over);
      window.removeEventListener("drop", drop);
    };
  }, [onFiles]);
  return dragging;
}
