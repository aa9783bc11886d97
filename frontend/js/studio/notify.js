// Told when it is done: the tab's title says "✓ Done — …" / "✗ Failed — …" when a job this page saw
// running finishes, a browser notification says the same when the user has allowed them (asked
// only on a click of the bell button, never on load), and the favicon is a progress ring drawn on
// a canvas while a job runs.
import { html, useState, useEffect, useRef } from "../lib/react.js";
import { useLang } from "../lib/i18n.js";

const SIZE = 32;

function iconLink() {
  let link = document.querySelector("link[rel~='icon']");
  if (!link) {
    link = document.createElement("link");
    link.rel = "icon";
    document.head.appendChild(link);
  }
  return link;
}

// The favicon: a ring that fills with `progress` (0..1) while running, a check or a cross at the end.
export function drawIcon(kind, progress = 0) {
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = SIZE;
  const g = canvas.getContext("2d");
  const c = SIZE / 2, r = SIZE / 2 - 3;
  g.lineWidth = 5;
  g.lineCap = "round";
  if (kind === "running") {
    g.strokeStyle = "#cbd5e1";
    g.beginPath(); g.arc(c, c, r, 0, 2 * Math.PI); g.stroke();
    g.strokeStyle = "#4f46e5";
    g.beginPath(); g.arc(c, c, r, -Math.PI / 2, -Math.PI / 2 + 2 * Math.PI * Math.max(0.02, Math.min(1, progress))); g.stroke();
  } else {
    g.fillStyle = kind === "failed" ? "#dc2626" : "#059669";
    g.beginPath(); g.arc(c, c, SIZE / 2, 0, 2 * Math.PI); g.fill();
    g.strokeStyle = "#fff";
    g.lineWidth = 4;
    g.beginPath();
    if (kind === "failed") { g.moveTo(10, 10); g.lineTo(22, 22); g.moveTo(22, 10); g.lineTo(10, 22); }
    else { g.moveTo(8, 17); g.lineTo(14, 23); g.lineTo(24, 10); }
    g.stroke();
  }
  return canvas.toDataURL("image/png");
}

function progressOf(job, live) {
  const p = live && live.progress != null ? live.progress : job.progress;
  return Number.isFinite(p) ? p : 0;
}

// Watches the job list: title, favicon and notification. `jobs` and `live` are the job store's.
export function useDoneSignals(jobs, live) {
  const { t, lang } = useLang();
  const seen = useRef(null); // job id → status last seen; null until the first list arrives
  const [ended, setEnded] = useState(null); // {kind: "done"|"failed", id}
  const baseTitle = useRef(document.title);
  const lastIcon = useRef("");

  // Finished jobs this page saw unfinished: the newest ending wins.
  useEffect(() => {
    const before = seen.current;
    const now = {};
    for (const job of jobs) now[job.id] = job.status;
    seen.current = now;
    if (before === null) return;
    for (const job of jobs) {
      const was = before[job.id];
      if (!was || was === job.status || ["completed", "failed", "cancelled"].includes(was)) continue;
      if (job.status !== "completed" && job.status !== "failed") continue;
      const kind = job.status === "completed" ? "done" : "failed";
      setEnded({ kind, id: job.id });
      if ("Notification" in window && Notification.permission === "granted") {
        try {
          new Notification(t(`notify.${kind}`, { title: t("app.title") }), {
            body: t(`notify.body.${kind}`, { id: job.id.slice(0, 8) }), tag: `studio-${job.id}`,
          });
        } catch (_) { /* some browsers allow notifications only from a service worker */ }
      }
    }
  }, [jobs]);

  // A new job running clears the last ending, as does the user's next click or key.
  const running = jobs.filter((j) => j.status === "running");
  useEffect(() => {
    if (running.length) setEnded(null);
  }, [running.length]);
  useEffect(() => {
    if (!ended) return undefined;
    const clear = () => setEnded(null);
    const timer = setTimeout(() => {
      window.addEventListener("pointerdown", clear, { once: true });
      window.addEventListener("keydown", clear, { once: true });
    }, 500);
    return () => {
      clearTimeout(timer);
      window.removeEventListener("pointerdown", clear);
      window.removeEventListener("keydown", clear);
    };
  }, [ended]);

  // The title, in the page's language.
  useEffect(() => {
    const appTitle = t("app.title");
    document.title = ended ? t(`notify.${ended.kind}`, { title: appTitle }) : appTitle;
    document.documentElement.dataset.ended = ended ? ended.kind : "";
  }, [ended, lang]);
  useEffect(() => () => { document.title = baseTitle.current; }, []);

  // The favicon: the running jobs' mean progress, in 2 % steps; the ending; else the page's own.
  const mean = running.length ? running.reduce((sum, j) => sum + progressOf(j, live[j.id]), 0) / running.length : 0;
  const step = Math.floor(mean * 50) / 50;
  useEffect(() => {
    const link = iconLink();
    const href = running.length ? drawIcon("running", step) : ended ? drawIcon(ended.kind) : "data:,";
    if (href !== lastIcon.current) {
      lastIcon.current = href;
      link.href = href;
      link.dataset.state = running.length ? `running-${Math.round(step * 100)}` : ended ? ended.kind : "idle";
    }
  }, [running.length, step, ended]);
}

// The bell: asks for permission only when clicked; says what the browser decided.
export function NotifyButton() {
  const { t } = useLang();
  const supported = typeof window !== "undefined" && "Notification" in window;
  const [permission, setPermission] = useState(supported ? Notification.permission : "unsupported");
  if (!supported) return null;
  const ask = async () => {
    try {
      setPermission(await Notification.requestPermission());
    } catch (_) {
      setPermission(Notification.permission);
    }
  };
  if (permission === "granted") {
    return html`<span class="text-xs text-emerald-700" data-testid="notify-state" data-permission="granted">${t("notify.on")}</span>`;
  }
  if (permission === "denied") {
    return html`<span class="text-xs text-slate-500" data-testid="notify-state" data-permission="denied"
      title=${t("notify.deniedHelp")}>${t("notify.denied")}</span>`;
  }
  return html`<button type="button" onClick=${ask} data-testid="notify-ask"
    class="rounded-md border border-slate-300 px-3 py-1 text-sm hover:bg-slate-100">${t("notify.ask")}</button>`;
}
