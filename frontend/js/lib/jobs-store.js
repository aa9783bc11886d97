// The job list's state: GET /api/jobs for every job, then WS /ws events on top of it. After a
// reconnect the list is fetched again and the snapshot applied, so nothing missed while away sticks.

// Which statuses are finished is the server's word (GET /api/meta: `statuses.finished`); the page
// sets it before the job list renders. An interrupted job is not finished: it resumes by itself.
let finished = new Set();
// The server's limits (GET /api/meta: `limits`), for parts of the page that have no props for them.
let limits = {};

export function setStatuses(statuses) {
  finished = new Set(statuses.finished);
}

export function limit(name) {
  return limits[name];
}

// GET /api/meta (through `get`, the page's API client), asked again every 2 s until it answers;
// resolves with its body once the statuses are set.
export async function loadMeta(get, onError = () => {}) {
  for (;;) {
    try {
      const body = await get("/api/meta");
      setStatuses(body.statuses);
      limits = body.limits || {};
      return body;
    } catch (err) {
      onError(err);
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
}

export const initialJobs = { jobs: {}, live: {} };

export function isFinished(job) {
  return finished.has(job.status);
}

function upsert(state, job) {
  const previous = state.jobs[job.id] || {};
  // A job record can carry an older preview than the last job.preview event; keep the newer one.
  const merged = { ...previous, ...job };
  if (!job.preview_url && previous.preview_url && !isFinished(job)) merged.preview_url = previous.preview_url;
  const live = { ...state.live };
  if (isFinished(job)) delete live[job.id];
  return { jobs: { ...state.jobs, [job.id]: merged }, live };
}

export function jobsReducer(state, action) {
  switch (action.type) {
    case "list": {
      const jobs = {};
      for (const job of action.jobs) jobs[job.id] = job;
      const live = {};
      for (const id of Object.keys(state.live)) if (jobs[id] && !isFinished(jobs[id])) live[id] = state.live[id];
      return { jobs, live };
    }
    case "snapshot":
      return action.jobs.reduce(upsert, state);
    case "job":
      return upsert(state, action.job);
    case "deleted": {
      const jobs = { ...state.jobs }, live = { ...state.live };
      delete jobs[action.id];
      delete live[action.id];
      return { jobs, live };
    }
    case "progress": {
      const job = state.jobs[action.message.job_id];
      if (!job || isFinished(job)) return state;
      const live = { ...state.live, [job.id]: { ...action.message, receivedAt: action.receivedAt } };
      return { jobs: { ...state.jobs, [job.id]: { ...job, status: "running" } }, live };
    }
    case "preview": {
      const job = state.jobs[action.message.job_id];
      if (!job) return state;
      return { ...state, jobs: { ...state.jobs, [job.id]: { ...job, preview_url: action.message.url } } };
    }
    case "warning": {
      const job = state.jobs[action.message.job_id];
      if (!job) return state;
      const warnings = [...(job.warnings || []), action.message.message];
      return { ...state, jobs: { ...state.jobs, [job.id]: { ...job, warnings } } };
    }
    default:
      return state;
  }
}

// One WS message → one reducer action (or none).
export function actionFor(message) {
  const t = message.type || "";
  if (t === "snapshot") return { type: "snapshot", jobs: message.jobs || [] };
  if (t === "job.deleted") return { type: "deleted", id: message.job_id };
  if (t === "job.progress") return { type: "progress", message, receivedAt: performance.now() };
  if (t === "job.preview") return { type: "preview", message };
  if (t === "job.warning") return { type: "warning", message };
  if (t.startsWith("job.") && message.job) return { type: "job", job: message.job };
  return null;
}

export function sortedJobs(state) {
  return Object.values(state.jobs).sort((a, b) => (b.created_at || 0) - (a.created_at || 0));
}
