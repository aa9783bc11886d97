// The composer's loop switch: one more transition from the last image back to the first, so the
// video plays seamlessly in a loop (the job request's `loop`, docs/api.md "Loop").
import { html } from "../lib/react.js";
import { useLang } from "../lib/i18n.js";

export function LoopSwitch({ loop, setLoop }) {
  const { t } = useLang();
  return html`<label class="mt-3 flex items-start gap-2 text-sm" title=${t("loop.help")}>
    <input type="checkbox" role="switch" checked=${!!loop} data-testid="loop-switch"
      onChange=${(e) => setLoop(e.target.checked)} class="mt-0.5 h-4 w-4" />
    <span><span class="font-medium">${t("loop.label")}</span>
      <span class="block text-xs text-slate-500">${t("loop.help")}</span></span>
  </label>`;
}
