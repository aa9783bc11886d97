// Asks for the access token once when the API answers 401 (the access-token check), then retries.
// POST /api/login sets a cookie that fetches, <video> and WebSockets of this origin all carry.
import { html, useState, useEffect, useRef } from "./react.js";
import { onUnauthorized, login } from "./api.js";
import { loadMessages, useLang } from "./i18n.js";

export function LoginGate() {
  const { t, te } = useLang();
  const [pending, setPending] = useState(null); // resolve() of the waiting requests
  const [error, setError] = useState("");
  const waiters = useRef([]);
  const input = useRef(null);

  useEffect(() => {
    onUnauthorized(() => new Promise((resolve) => {
      waiters.current.push(resolve);
      setPending(true);
    }));
    return () => onUnauthorized(null);
  }, []);

  if (!pending) return null;
  async function submit(event) {
    event.preventDefault();
    try {
      await login(input.current.value.trim());
      loadMessages({ again: true });
      setError("");
      setPending(null);
      waiters.current.splice(0).forEach((resolve) => resolve());
    } catch (err) {
      setError(err);
    }
  }
  return html`<div class="fixed inset-0 z-50 flex items-center justify-center bg-slate-900/60 p-4">
    <form onSubmit=${submit} class="w-full max-w-sm space-y-3 rounded-xl bg-white p-5 shadow-xl">
      <h2 class="text-lg font-semibold">${t("login.title")}</h2>
      <p class="text-sm text-slate-600">${t("login.help")}</p>
      <input ref=${input} type="password" autocomplete="current-password" data-testid="login-token"
        class="w-full rounded-md border border-slate-300 px-3 py-2" />
      ${error && html`<p class="text-sm text-red-700" role="alert">${te(error)}</p>`}
      <button class="w-full rounded-md bg-indigo-600 px-3 py-2 font-medium text-white">${t("login.submit")}</button>
    </form>
  </div>`;
}
