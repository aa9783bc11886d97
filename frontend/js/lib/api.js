// Every call to the studio's API goes through here: JSON in and out, the server's `detail` message
// surfaced as the Error's message, its `code` and `params` kept so the UI can say it in the page's
// language (`te` in i18n.js), and one place that handles 401 (the access token: the page asks for
// it once, POST /api/login sets a cookie).

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.code = body && typeof body.code === "string" ? body.code : null;
    this.params = (body && body.params) || {};
  }
}

let loginPrompt = null; // (retry) => Promise<void>; set by the page that can ask for the token

export function onUnauthorized(handler) {
  loginPrompt = handler;
}

function detailOf(body) {
  if (body && typeof body.detail === "string") return body.detail;
  if (body && body.detail) return JSON.stringify(body.detail);
  return null;
}

async function errorOf(response) {
  const text = await response.text();
  let body = null;
  try { body = JSON.parse(text); } catch (_) { /* not JSON: the text itself */ }
  const message = detailOf(body) ?? (text.trim() || `${response.status} ${response.statusText}`);
  return new ApiError(response.status, message, body);
}

export async function request(method, path, body, { retried = false } = {}) {
  const options = { method, headers: {}, credentials: "same-origin" };
  if (body instanceof FormData) {
    options.body = body; // multipart: the browser sets the boundary
  } else if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    throw new ApiError(0, `network error: ${err.message}`);
  }
  if (response.status === 401 && loginPrompt && !retried) {
    await loginPrompt();
    return request(method, path, body, { retried: true });
  }
  if (!response.ok) throw await errorOf(response);
  if (response.status === 204) return null;
  return response.json();
}

export const api = {
  get: (path) => request("GET", path),
  post: (path, body) => request("POST", path, body ?? {}),
  del: (path) => request("DELETE", path),
  patch: (path, body) => request("PATCH", path, body ?? {}),
  request,
};

export async function login(token) {
  return request("POST", "/api/login", { token }, { retried: true });
}

// One file per request so each thumbnail gets its own progress bar and its own rejection reason
// (the API rejects a whole request when one file is bad). XHR because fetch has no upload progress.
export function uploadFile(file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/uploads");
    xhr.responseType = "text";
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onerror = () => reject(new ApiError(0, "network error while uploading"));
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (_) { /* keep null */ }
      if (xhr.status >= 200 && xhr.status < 300 && body && body.uploads && body.uploads.length) {
        resolve(body.uploads[0]);
      } else {
        reject(new ApiError(xhr.status, detailOf(body) ?? `${xhr.status} ${xhr.statusText}`, body));
      }
    };
    const form = new FormData();
    form.append("files", file, file.name);
    xhr.send(form);
  });
}
