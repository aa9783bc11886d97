// Korean and English strings of both pages. The language starts from the browser's (ko* → Korean),
// and the toggle's choice is remembered in localStorage.
import { html, createContext, useContext, useState, useEffect } from "./react.js";

const STRINGS = {
  ko: {
    "app.title": "FramePack 비디오 스튜디오",
    "app.monitor": "모니터",
    "app.studio": "스튜디오",
    "app.metaRetry": "서버에 연결할 수 없습니다. 다시 시도하는 중…",
    "lang.toggle": "English",
    "socket.open": "실시간 연결됨",
    "socket.connecting": "연결 중…",
    "socket.reconnecting": "재연결 중…",
    "images.title": "이미지",
    "images.pick": "이미지 선택",
    "images.drop": "여기나 페이지 아무 곳에 이미지를 끌어다 놓으세요. 순서는 끌어서 바꿀 수 있습니다.",
    "images.empty": "이미지를 두 장 이상 올리면 이미지 사이마다 전환 영상이 만들어집니다.",
    "images.moveLeft": "왼쪽으로",
    "images.moveRight": "오른쪽으로",
    "images.remove": "삭제",
    "images.dismiss": "닫기",
    "images.uploading": "업로드 중",
    "images.rejected": "거부됨",
    "images.dragHint": "끌어서 순서 바꾸기",
    "prompt.global": "전체 프롬프트 (모든 전환에 적용)",
    "prompt.globalPlaceholder": "예: 천천히 돌아보며 미소 짓는다",
    "prompt.pair": "전환 {n} 프롬프트",
    "prompt.pairPlaceholder": "비워 두면 전체 프롬프트를 사용 (한국어 또는 영어)",
    "prompt.english": "사용된 영어",
    "settings.title": "설정",
    "settings.length": "영상 길이",
    "settings.lengthHelp": "전환 하나당 초",
    "settings.total": "전체 {s}초 · 전환 {n}개",
    "settings.quality": "품질",
    "settings.qualityHelp": "높을수록 느리고 선명함 · 30 미만은 빠른 모드",
    "settings.qualityFast": "빠른 모드 (MagCache): 품질을 조금 낮추는 대신 더 빠르게 만듭니다",
    "settings.strength": "변환 강도",
    "settings.strengthHelp": "높을수록 움직임이 큼",
    "settings.resolution": "해상도",
    "settings.draftRes": "초안",
    "settings.seed": "시드",
    "settings.takes": "전환당 테이크",
    "settings.takesOne": "1",
    "settings.takesBest": "{k}개 중 최고",
    "settings.takesHelp": "전환마다 다른 시드로 이만큼 만들고 점수가 가장 높은 테이크를 고릅니다 (테이크마다 생성 한 번만큼 걸립니다)",
    "settings.seedRandom": "무작위",
    "settings.dice": "무작위 시드",
    "settings.engine": "엔진",
    "engine.framepack": "FramePack (고품질)",
    "engine.morph": "즉시 모프 미리보기",
    "engine.notReady": "준비 안 됨",
    "engine.planQuality": "이 GPU의 메모리 계획: {notes} — 품질에 약간 영향",
    "engine.q8bit": "8비트 가중치",
    "engine.qfp16": "fp16 계산",
    "engine.notInstalled": "설치 안 됨",
    "engine.missingTitle": "FramePack이 설치되지 않았습니다",
    "engine.missingBody": "고품질 엔진의 모델(약 45 GB)이 아직 이 컴퓨터에 없어서 즉시 모프 미리보기 엔진을 사용합니다. 설치하려면 서버에서 실행하세요:",
    "engine.why": "이유",
    "engine.missing": "없는 모델",
    "engine.loadFailed": "지난번에 FramePack을 불러오지 못했습니다. 다음 FramePack 작업에서 다시 시도합니다 (자세한 내용은 서버 로그).",
    "post.title": "후처리",
    "post.off": "끔",
    "post.auto": "자동",
    "post.manual": "직접 선택",
    "post.face": "얼굴 복원",
    "post.upscale": "업스케일",
    "post.interpolate": "프레임 보간",
    "post.none": "없음",
    "advanced.title": "고급: 엔진 파라미터",
    "advanced.loading": "계산 중…",
    "advanced.segments": "전환 수",
    "advanced.draft": "빠른 모드 (MagCache: 품질을 낮추고 속도를 높임)",
    "advanced.auto": "전환별 길이와 강도는 위의 제안값을 따릅니다 (아래 segments 참고).",
    "settings.auto": "자동",
    "prompt.pairSuggested": "비워 두면: {p}",
    "suggest.title": "이미지 분석 제안",
    "suggest.loading": "분석 중…",
    "suggest.modelLoading": "분석 모델을 불러오는 중… 준비되면 제안이 표시됩니다 (작업은 지금 바로 만들 수 있습니다).",
    "suggest.apply": "제안 사용",
    "suggest.own": "직접 설정",
    "suggest.unavailable": "이미지 분석을 사용할 수 없습니다.",
    "suggest.sizeOnly": "이미지 크기에 따른 제안만 있습니다.",
    "suggest.frame": "해상도 {r}px ({w}×{h}), {fit}",
    "suggest.fit.crop": "잘라서 맞춤",
    "suggest.fit.pad": "여백을 넣어 맞춤",
    "suggest.pair": "전환 {n}: 유사도 {sim} → {s}초, 강도 {k}",
    "suggest.active": "전환마다 제안된 길이와 강도를 사용합니다. 슬라이더를 움직이면 직접 설정한 값이 모든 전환에 적용됩니다.",
    "tag.person": "사람",
    "tag.face": "얼굴",
    "tag.scene.portrait": "인물",
    "tag.scene.landscape": "풍경",
    "tag.scene.cityscape": "도시",
    "tag.scene.indoor": "실내",
    "tag.scene.animal": "동물",
    "tag.scene.object": "사물",
    "tag.scene.artwork": "그림",
    "tag.style.photo": "사진",
    "tag.style.illustration": "일러스트",
    "submit": "영상 만들기",
    "submit.needTwo": "이미지가 두 장 이상 필요합니다",
    "submit.busy": "업로드가 끝나기를 기다리는 중",
    "submit.sending": "보내는 중…",
    "jobs.title": "작업",
    "jobs.details": "기술 정보 (문제 보고용)",
    "jobs.empty": "아직 작업이 없습니다.",
    "jobs.cancel": "취소",
    "jobs.delete": "삭제",
    "jobs.download": "다운로드",
    "jobs.params": "사용된 파라미터",
    "jobs.segment": "구간",
    "jobs.section": "섹션",
    "jobs.step": "단계",
    "jobs.eta": "남은 시간",
    "jobs.elapsed": "경과",
    "jobs.stage": "진행",
    "jobs.preview": "미리보기 (생성 중)",
    "jobs.prompts": "프롬프트",
    "jobs.warnings": "경고",
    "takes.title": "스토리보드: 전환별 테이크",
    "takes.transition": "전환 {n}",
    "takes.seam": "이음새",
    "takes.seamHelp": "이 전환과 다음 전환이 이어지는 곳의 움직임 연속성 (0–100, 마지막 합치기 기준)",
    "takes.rebuild": "영상 다시 만들기",
    "takes.rebuildHelp": "선택한 테이크로 다시 합치고 후처리합니다 (다시 생성하지 않음)",
    "take.name": "테이크 {k}",
    "take.score": "점수",
    "take.scoreHelp": "종합 점수 0–100: 끝 이미지 도달, 도착 곡선, 움직임의 부드러움",
    "take.seed": "시드",
    "take.seconds": "길이 (초)",
    "take.strength": "강도",
    "take.prompt": "프롬프트",
    "take.promptSame": "비워 두면 작업의 프롬프트",
    "take.random": "무작위",
    "take.chosen": "선택됨",
    "take.choose": "선택",
    "take.delete": "삭제",
    "take.reroll": "다시 생성",
    "take.generate": "새 테이크 생성",
    "take.close": "닫기",
    "take.status.pending": "대기 중",
    "take.status.running": "생성 중",
    "take.status.failed": "실패",
    "take.status.done": "완료",
    "status.queued": "대기 중",
    "status.running": "실행 중",
    "status.completed": "완료",
    "status.failed": "실패",
    "status.cancelled": "취소됨",
    "status.interrupted": "중단됨",
    "stage.generate": "생성",
    "stage.join": "합치기",
    "stage.postprocess": "후처리",
    "stage.face_restore": "얼굴 복원",
    "stage.upscale": "업스케일",
    "stage.interpolate": "프레임 보간",
    "stage.encode": "인코딩",
    "stage.load": "모델 불러오기",
    "stage.queued": "대기",
    "stage.done": "완료",
    "stage.cancelled": "취소됨",
    "stage.failed": "실패",
    "login.title": "접근 토큰이 필요합니다",
    "login.help": "서버를 시작할 때 출력된 토큰을 입력하세요.",
    "login.submit": "확인",
    "monitor.title": "시스템 모니터",
    "monitor.gpu": "GPU",
    "monitor.noGpu": "GPU를 사용할 수 없습니다",
    "monitor.vram": "VRAM",
    "monitor.util": "사용률",
    "monitor.temp": "온도",
    "monitor.power": "전력",
    "monitor.unavailable": "알 수 없음",
    "monitor.ram": "시스템 RAM",
    "monitor.cpu": "CPU",
    "monitor.cores": "코어 {n}개",
    "monitor.process": "서버 프로세스",
    "monitor.charts": "최근 10분",
    "monitor.job": "실행 중인 작업",
    "monitor.noJob": "실행 중인 작업이 없습니다.",
    "monitor.driver": "드라이버",
    "monitor.noLocalGpu": "스튜디오 호스트에는 GPU가 없습니다. 풀의 워커와 그 GPU는 아래에 있습니다.",
    "monitor.workers": "워커",
    "monitor.rayLocal": "이 호스트에서 시작됨",
    "monitor.noWorkers": "아직 연결된 워커가 없습니다.",
    "monitor.workerState.starting": "시작 중",
    "monitor.workerState.idle": "대기 중",
    "monitor.workerState.running": "실행 중",
    "monitor.workerState.lost": "연결 끊김",
    "monitor.workerRuns": "작업 {job}… 전환 {n}, 테이크 {k}",
    "monitor.workerPost": "작업 {job}… 후처리",
    "monitor.workerNothing": "실행 중인 전환 없음",
    "monitor.workerNoGpu": "GPU 없음 (CPU 워커)",
    "monitor.workerDone": "완료 {n}건",
  },
  en: {
    "app.title": "FramePack Video Studio",
    "app.monitor": "Monitor",
    "app.studio": "Studio",
    "app.metaRetry": "Cannot reach the server; trying again…",
    "lang.toggle": "한국어",
    "socket.open": "Live",
    "socket.connecting": "Connecting…",
    "socket.reconnecting": "Reconnecting…",
    "images.title": "Images",
    "images.pick": "Choose images",
    "images.drop": "Drop images here or anywhere on the page. Drag to change the order.",
    "images.empty": "Upload two or more images; each consecutive pair becomes one transition.",
    "images.moveLeft": "Move left",
    "images.moveRight": "Move right",
    "images.remove": "Remove",
    "images.dismiss": "Dismiss",
    "images.uploading": "Uploading",
    "images.rejected": "Rejected",
    "images.dragHint": "Drag to reorder",
    "prompt.global": "Prompt for all transitions",
    "prompt.globalPlaceholder": "e.g. turns around slowly and smiles",
    "prompt.pair": "Transition {n} prompt",
    "prompt.pairPlaceholder": "Empty: use the prompt for all (Korean or English)",
    "prompt.english": "English used",
    "settings.title": "Settings",
    "settings.length": "Length",
    "settings.lengthHelp": "seconds per transition",
    "settings.total": "total {s} s · {n} transitions",
    "settings.quality": "Quality",
    "settings.qualityHelp": "higher is slower and sharper · below 30: fast mode",
    "settings.qualityFast": "fast mode (MagCache): trades some quality for speed",
    "settings.strength": "Strength",
    "settings.strengthHelp": "higher moves more",
    "settings.resolution": "Resolution",
    "settings.draftRes": "draft",
    "settings.seed": "Seed",
    "settings.takes": "Takes per transition",
    "settings.takesOne": "1",
    "settings.takesBest": "best of {k}",
    "settings.takesHelp": "Makes this many takes of each transition with different seeds and keeps the best-scoring one (each take costs a full generation)",
    "settings.seedRandom": "random",
    "settings.dice": "Random seed",
    "settings.engine": "Engine",
    "engine.framepack": "FramePack (high quality)",
    "engine.morph": "Instant morph preview",
    "engine.notReady": "not ready",
    "engine.planQuality": "this GPU's memory plan: {notes} — slightly affects quality",
    "engine.q8bit": "8-bit weights",
    "engine.qfp16": "fp16 compute",
    "engine.notInstalled": "not installed",
    "engine.missingTitle": "FramePack is not installed",
    "engine.missingBody": "The high-quality engine's model (about 45 GB) is not on this machine yet, so the instant morph preview engine is used. To install it, run on the server:",
    "engine.why": "Why",
    "engine.missing": "Not on this machine",
    "engine.loadFailed": "FramePack could not be loaded last time; the next FramePack job tries again (details in the server log).",
    "post.title": "Post-processing",
    "post.off": "Off",
    "post.auto": "Auto",
    "post.manual": "Manual",
    "post.face": "Face restore",
    "post.upscale": "Upscale",
    "post.interpolate": "Frame interpolation",
    "post.none": "none",
    "advanced.title": "Advanced: engine parameters",
    "advanced.loading": "Resolving…",
    "advanced.segments": "transitions",
    "advanced.draft": "fast mode (MagCache: trades quality for speed)",
    "advanced.auto": "Length and strength of each transition follow the suggestions above (see segments below).",
    "settings.auto": "Auto",
    "prompt.pairSuggested": "Empty: {p}",
    "suggest.title": "Suggestions from the images",
    "suggest.loading": "Analysing…",
    "suggest.modelLoading": "Loading the analysis model… suggestions appear when it is ready (you can make the video now).",
    "suggest.apply": "Use suggestions",
    "suggest.own": "Use my values",
    "suggest.unavailable": "Image analysis is unavailable.",
    "suggest.sizeOnly": "Only suggestions from the image sizes are available.",
    "suggest.frame": "Resolution {r}px ({w}×{h}), {fit}",
    "suggest.fit.crop": "cropped to fit",
    "suggest.fit.pad": "padded to fit",
    "suggest.pair": "Transition {n}: similarity {sim} → {s} s, strength {k}",
    "suggest.active": "Each transition uses its suggested length and strength. Moving a slider applies your value to every transition.",
    "tag.person": "person",
    "tag.face": "face",
    "tag.scene.portrait": "portrait",
    "tag.scene.landscape": "landscape",
    "tag.scene.cityscape": "city",
    "tag.scene.indoor": "indoor",
    "tag.scene.animal": "animal",
    "tag.scene.object": "object",
    "tag.scene.artwork": "artwork",
    "tag.style.photo": "photo",
    "tag.style.illustration": "illustration",
    "submit": "Make video",
    "submit.needTwo": "Two or more images are needed",
    "submit.busy": "Waiting for uploads to finish",
    "submit.sending": "Sending…",
    "jobs.title": "Jobs",
    "jobs.details": "Technical details (for a bug report)",
    "jobs.empty": "No jobs yet.",
    "jobs.cancel": "Cancel",
    "jobs.delete": "Delete",
    "jobs.download": "Download",
    "jobs.params": "Parameters used",
    "jobs.segment": "Segment",
    "jobs.section": "Section",
    "jobs.step": "Step",
    "jobs.eta": "ETA",
    "jobs.elapsed": "Elapsed",
    "jobs.stage": "Stage",
    "jobs.preview": "Preview (generating)",
    "jobs.prompts": "Prompts",
    "jobs.warnings": "Warnings",
    "takes.title": "Storyboard: takes per transition",
    "takes.transition": "Transition {n}",
    "takes.seam": "Seam",
    "takes.seamHelp": "How continuous the motion is where this transition meets the next (0–100, at the last join)",
    "takes.rebuild": "Rebuild video",
    "takes.rebuildHelp": "Joins the chosen takes again and post-processes (nothing is regenerated)",
    "take.name": "Take {k}",
    "take.score": "Score",
    "take.scoreHelp": "Overall score 0–100: end-image adherence, arrival curve, motion smoothness",
    "take.seed": "Seed",
    "take.seconds": "Length (s)",
    "take.strength": "Strength",
    "take.prompt": "Prompt",
    "take.promptSame": "empty: the job's prompt",
    "take.random": "random",
    "take.chosen": "Chosen",
    "take.choose": "Choose",
    "take.delete": "Delete",
    "take.reroll": "Re-roll",
    "take.generate": "Make a new take",
    "take.close": "Close",
    "take.status.pending": "Waiting",
    "take.status.running": "Generating",
    "take.status.failed": "Failed",
    "take.status.done": "Done",
    "status.queued": "Queued",
    "status.running": "Running",
    "status.completed": "Completed",
    "status.failed": "Failed",
    "status.cancelled": "Cancelled",
    "status.interrupted": "Interrupted",
    "stage.generate": "Generate",
    "stage.join": "Join",
    "stage.postprocess": "Post-process",
    "stage.face_restore": "Face restore",
    "stage.upscale": "Upscale",
    "stage.interpolate": "Interpolate",
    "stage.encode": "Encode",
    "stage.load": "Load model",
    "stage.queued": "Queued",
    "stage.done": "Done",
    "stage.cancelled": "Cancelled",
    "stage.failed": "Failed",
    "login.title": "Access token needed",
    "login.help": "Enter the token the server printed when it started.",
    "login.submit": "OK",
    "monitor.title": "System monitor",
    "monitor.gpu": "GPU",
    "monitor.noGpu": "No GPU available",
    "monitor.vram": "VRAM",
    "monitor.util": "Utilisation",
    "monitor.temp": "Temperature",
    "monitor.power": "Power",
    "monitor.unavailable": "unavailable",
    "monitor.ram": "System RAM",
    "monitor.cpu": "CPU",
    "monitor.cores": "{n} cores",
    "monitor.process": "Server process",
    "monitor.charts": "Last 10 minutes",
    "monitor.job": "Running job",
    "monitor.noJob": "No job is running.",
    "monitor.driver": "driver",
    "monitor.noLocalGpu": "The studio host has no GPU of its own; the pool's workers and their GPUs are below.",
    "monitor.workers": "Workers",
    "monitor.rayLocal": "started on this host",
    "monitor.noWorkers": "No worker has joined yet.",
    "monitor.workerState.starting": "Starting",
    "monitor.workerState.idle": "Idle",
    "monitor.workerState.running": "Running",
    "monitor.workerState.lost": "Lost",
    "monitor.workerRuns": "Job {job}… transition {n}, take {k}",
    "monitor.workerPost": "Job {job}… post-processing",
    "monitor.workerNothing": "No transition running",
    "monitor.workerNoGpu": "No GPU (CPU worker)",
    "monitor.workerDone": "{n} done",
  },
};

const STORAGE_KEY = "studio.lang";

export function initialLang() {
  const saved = localStorage.getItem(STORAGE_KEY);
  if (saved === "ko" || saved === "en") return saved;
  return (navigator.language || "en").toLowerCase().startsWith("ko") ? "ko" : "en";
}

export function translate(lang, key, vars) {
  let text = (STRINGS[lang] && STRINGS[lang][key]) ?? STRINGS.en[key] ?? key;
  if (vars) for (const [name, value] of Object.entries(vars)) text = text.replaceAll(`{${name}}`, value);
  return text;
}

// The server's sentences by code (GET /api/messages, backend/contracts/messages.py): errors carry a code
// and its parameters, and are shown in the page's language from here. Until the catalogue has
// arrived (it needs the access token, so a locked studio gets it after the login), or for a code
// it does not know, the server's own text is shown.
let serverMessages = {};
let catalogueRequest = null;
const catalogueListeners = new Set();

export function loadMessages({ again = false } = {}) {
  if (again) catalogueRequest = null;
  catalogueRequest ??= fetch("/api/messages", { credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`${r.status}`))))
    .then((body) => {
      serverMessages = body.messages || {};
      catalogueListeners.forEach((listener) => listener(serverMessages));
      return serverMessages;
    })
    .catch(() => { catalogueRequest = null; return serverMessages; });
  return catalogueRequest;
}

// A parameter is plain text, a text in both languages ({en, ko}), or another message ({code, params}).
function paramText(lang, value) {
  if (value && typeof value === "object") {
    if (typeof value.code === "string") return messageText(lang, value.code, value.params) ?? "";
    if (lang in value) return String(value[lang]);
  }
  return value === null || value === undefined ? "" : String(value);
}

// The sentence `code` in `lang`, or null when this page has no such code.
export function messageText(lang, code, params) {
  const entry = serverMessages[code];
  const template = entry && (entry[lang] ?? entry.en);
  if (typeof template !== "string") return null;
  return template.replace(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (whole, name) =>
    (params && name in params ? paramText(lang, params[name]) : whole));
}

// What to show for an error: an Error/ApiError with `code`/`params`, a job's `error_message`
// ({code, params}) with its stored text as the fallback, or a plain string.
export function errorText(lang, error, fallback) {
  if (!error) return fallback || "";
  if (typeof error === "string") return error;
  const shown = error.code ? messageText(lang, error.code, error.params) : null;
  return shown ?? fallback ?? error.message ?? String(error);
}

const LangContext = createContext({ lang: "en", t: (k) => k, te: (e, f) => errorText("en", e, f), setLang: () => {} });

export function LangProvider({ children }) {
  const [lang, setLang] = useState(initialLang);
  const [, setCatalogue] = useState(serverMessages);
  useEffect(() => {
    localStorage.setItem(STORAGE_KEY, lang);
    document.documentElement.lang = lang;
    loadMessages(); // again, when an earlier try was refused (no token yet)
  }, [lang]);
  useEffect(() => {
    catalogueListeners.add(setCatalogue);
    loadMessages();
    return () => catalogueListeners.delete(setCatalogue);
  }, []);
  const value = { lang, setLang, t: (key, vars) => translate(lang, key, vars),
    te: (error, fallback) => errorText(lang, error, fallback) };
  return html`<${LangContext.Provider} value=${value}>${children}<//>`;
}

export function useLang() {
  return useContext(LangContext);
}

export function LangToggle() {
  const { lang, setLang, t } = useLang();
  return html`<button type="button" data-testid="lang-toggle"
      class="rounded-md border border-slate-300 px-3 py-1 text-sm hover:bg-slate-100"
      onClick=${() => setLang(lang === "ko" ? "en" : "ko")}>${t("lang.toggle")}</button>`;
}
