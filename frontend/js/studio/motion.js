// Motion presets: short camera and motion phrases, in Korean and English, that a click adds to a
// transition's prompt box as plain text. Nothing is hidden: what the box shows is what is sent (the
// server translates a Korean prompt as it does any other), and the phrase can be edited like any text.
import { html } from "../lib/react.js";
import { useLang } from "../lib/i18n.js";

// id → the phrase in each language (the button's label is the phrase's short name, from i18n.js).
export const MOTION_PRESETS = [
  { id: "pan_left", ko: "카메라가 천천히 왼쪽으로 팬", en: "the camera pans slowly to the left" },
  { id: "pan_right", ko: "카메라가 천천히 오른쪽으로 팬", en: "the camera pans slowly to the right" },
  { id: "zoom_in", ko: "카메라가 천천히 줌 인", en: "the camera slowly zooms in" },
  { id: "zoom_out", ko: "카메라가 천천히 줌 아웃", en: "the camera slowly zooms out" },
  { id: "orbit", ko: "카메라가 피사체 주위를 천천히 회전", en: "the camera slowly orbits around the subject" },
  { id: "dolly_in", ko: "카메라가 피사체 쪽으로 천천히 전진 (돌리 인)", en: "slow dolly in toward the subject" },
  { id: "dolly_out", ko: "카메라가 피사체에서 천천히 후진 (돌리 아웃)", en: "slow dolly out away from the subject" },
  { id: "hold", ko: "카메라 고정, 피사체만 자연스럽게 움직임", en: "static camera, only the subject moves naturally" },
];

// The box's text with the phrase added: appended after a comma, never twice.
export function withPhrase(text, phrase) {
  const current = (text || "").trim();
  if (!current) return phrase;
  if (current.includes(phrase)) return current;
  return `${current.replace(/[,.\s]+$/, "")}, ${phrase}`;
}

export function MotionPresets({ value, onChange }) {
  const { lang, t } = useLang();
  return html`<div class="flex flex-wrap gap-0.5" data-testid="motion-presets" role="group" aria-label=${t("motion.title")}>
    ${MOTION_PRESETS.map((preset) => html`<button type="button" key=${preset.id} data-preset=${preset.id}
      title=${preset[lang] || preset.en} onClick=${() => onChange(withPhrase(value, preset[lang] || preset.en))}
      class="rounded border border-slate-200 px-1 text-[10px] leading-4 text-slate-600 hover:bg-indigo-50">${t(`motion.${preset.id}`)}</button>`)}
  </div>`;
}
