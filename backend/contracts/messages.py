"""Every sentence the studio says to a person, in English and Korean, keyed by a code.

Services raise `backend.contracts.errors.StudioError(code, **params)`; the web layer picks the HTTP status
(`backend.web.error_responses`) and answers `{"detail": <both languages>, "code", "params"}`. The page gets
this catalogue from `GET /api/messages` and shows the sentence of its own language from the code,
falling back to `detail`.

Templates use plain `{name}` fields only (no format spec, no conversion), so the page fills them
in the same way (`translate` in frontend/js/lib/i18n.js): numbers are formatted by the caller
(`num`). A parameter may itself be a text in both languages (`{"en": ..., "ko": ...}`) or another
message (`{"code": ..., "params": {...}}`); it is rendered in the language of the sentence.
No imports from the rest of the studio: every layer may use this module.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

LANGS = ("en", "ko")

_RIFE_EXPECTED_EN = "expected a Practical-RIFE 4.25/4.26 or ECCV2022-RIFE HDv3 flownet.pkl"
_RIFE_EXPECTED_KO = "RIFE 4.25/4.26 또는 HDv3 flownet.pkl을 두세요."
_MODEL_FIX_KO = "후처리 또는 모델 파일 문제로 작업이 멈췄습니다. 위 안내대로 해결한 뒤 다시 시도하세요."

CATALOGUE: dict[str, dict[str, str]] = {
    # --- requests ---------------------------------------------------------------------------
    "invalid_request": {
        "en": "invalid request: {errors}",
        "ko": "요청 값이 올바르지 않습니다: {errors}",
    },
    "too_many_images": {
        "en": "images: at most {limit} images per job, got {count}",
        "ko": "작업당 이미지는 최대 {limit}장입니다 ({count}장 받음)",
    },
    # What the web framework itself refuses (a body that is no JSON, a path or method it lacks).
    "body_unreadable": {
        "en": "There was an error parsing the body",
        "ko": "요청 본문을 읽을 수 없습니다 (올바른 JSON이 아닙니다)",
    },
    "not_found": {"en": "{text}", "ko": "찾을 수 없습니다"},
    "method_not_allowed": {"en": "{text}", "ko": "이 주소는 이 요청 방식을 받지 않습니다"},
    "http_error": {"en": "{text}", "ko": "요청을 처리할 수 없습니다"},
    # --- uploads ----------------------------------------------------------------------------
    "upload_too_large": {
        "en": "upload too large: at most {files} files of {mb} MB each",
        "ko": "업로드가 너무 큽니다",
    },
    "upload_not_found": {
        "en": "image {upload_id} not found",
        "ko": "이미지 {upload_id}을(를) 찾을 수 없습니다",
    },
    "upload_in_use": {
        "en": "image {upload_id} is used by job {jobs}: delete the job first",
        "ko": "이미지 {upload_id}은(는) 작업 {jobs}에서 사용 중입니다: 먼저 작업을 삭제하세요",
    },
    "upload_too_many_fields": {
        "en": "too many form fields: at most {limit} besides the files",
        "ko": "폼 필드가 너무 많습니다 (파일 외 최대 {limit}개)",
    },
    "upload_too_many_files": {
        "en": "too many files: at most {limit} per upload",
        "ko": "파일이 너무 많습니다: 한 번에 최대 {limit}개",
    },
    "upload_field_too_large": {
        "en": "form field too large",
        "ko": "폼 필드가 너무 큽니다",
    },
    "upload_file_too_large": {
        "en": "'{name}': file is larger than {mb} MB",
        "ko": "파일이 {mb} MB보다 큽니다",
    },
    "image_pixel_bomb": {
        "en": "'{name}': the image declares far too many pixels (at most {megapixels} megapixels); too large",
        "ko": "이미지가 너무 큽니다",
    },
    "image_corrupt_format": {
        "en": "'{name}': the {format} image is corrupt or truncated",
        "ko": "{format} 이미지가 손상되었거나 잘렸습니다",
    },
    "image_not_an_image": {
        "en": "'{name}': not a PNG, JPEG or WebP image",
        "ko": "PNG, JPEG, WebP 이미지가 아닙니다",
    },
    "image_format_unsupported": {
        "en": "'{name}': {format} images are not supported (use PNG, JPEG or WebP)",
        "ko": "{format} 형식은 지원하지 않습니다 (PNG, JPEG, WebP 사용)",
    },
    "image_too_large": {
        "en": "'{name}': {width}x{height} is too large (at most {megapixels} megapixels and {edge} px per edge)",
        "ko": "이미지가 너무 큽니다 (최대 {megapixels} 메가픽셀, 한 변 {edge} px)",
    },
    "image_too_small": {
        "en": "'{name}': {width}x{height} is too small (at least 16x16 px)",
        "ko": "이미지가 너무 작습니다 (최소 16x16)",
    },
    "image_empty": {
        "en": "'{name}': the file is empty",
        "ko": "빈 파일입니다",
    },
    "image_corrupt": {
        "en": "'{name}': the image is corrupt or truncated ({error})",
        "ko": "손상되었거나 잘린 이미지입니다",
    },
    "upload_not_multipart": {
        "en": "send the images as multipart/form-data in the field 'files'",
        "ko": "이미지를 multipart/form-data의 'files' 필드로 보내 주세요",
    },
    "upload_no_image": {
        "en": "no image received: send one or more files in the field 'files'",
        "ko": "받은 이미지가 없습니다",
    },
    "upload_store_failed": {
        "en": "the server could not store the upload (see the server log)",
        "ko": "서버가 업로드를 저장하지 못했습니다",
    },
    "upload_malformed": {
        "en": "malformed upload: {error}",
        "ko": "업로드 형식이 잘못되었습니다",
    },
    "upload_unterminated": {
        "en": "the upload ended before its closing multipart boundary (it was cut off); nothing was kept, "
        "send it again",
        "ko": "업로드가 multipart 닫는 경계 전에 끝났습니다(전송이 끊겼습니다). 아무것도 저장하지 않았으니 다시 보내 주세요",
    },
    # --- disk space -------------------------------------------------------------------------
    "disk_full": {
        "en": "the studio's disk is full: free space where STUDIO_DATA_DIR lives (delete old jobs or uploads) "
        "and try again",
        "ko": "저장 공간이 가득 찼습니다: 오래된 작업이나 업로드를 삭제한 뒤 다시 시도하세요",
    },
    "disk_low": {
        "en": "not enough free disk space: {free_mb} MB free, and the studio keeps at least {min_mb} MB free "
        "(STUDIO_MIN_FREE_MB); delete old jobs or uploads",
        "ko": "저장 공간이 부족합니다: {free_mb} MB 남음, 최소 {min_mb} MB를 남겨 둡니다 (STUDIO_MIN_FREE_MB). "
        "오래된 작업이나 업로드를 삭제하세요",
    },
    "quota_used": {
        "en": "the studio's storage quota is used up: {used_mb} of {quota_mb} MB (STUDIO_DATA_QUOTA_MB); "
        "delete old jobs or uploads",
        "ko": "저장 한도를 다 썼습니다: {used_mb} / {quota_mb} MB (STUDIO_DATA_QUOTA_MB). "
        "오래된 작업이나 업로드를 삭제하세요",
    },
    # --- request bodies ---------------------------------------------------------------------
    "body_too_large": {
        "en": "request body too large: at most {kb} KB",
        "ko": "요청 본문이 너무 큽니다 (최대 {kb} KB)",
    },
    "body_too_slow": {
        "en": "the request body arrived too slowly (at least {rate_kb_s} KB/s, no pause over {idle_s} s, "
        "at most {max_s} s in all); send it again",
        "ko": "요청 본문이 너무 느리게 도착했습니다. 다시 보내 주세요",
    },
    "uploads_per_client": {
        "en": "too many uploads at once from this client (at most {limit}); wait for one to finish",
        "ko": "동시에 올리는 파일이 너무 많습니다. 잠시 후 다시 시도하세요",
    },
    "header_too_slow": {
        "en": "the request head (request line and headers) did not arrive within {s} s; send it again",
        "ko": "요청 헤더가 {s}초 안에 도착하지 않았습니다. 다시 보내 주세요",
    },
    "connections_per_address": {
        "en": "too many open connections from this address (at most {limit}); close some and try again",
        "ko": "이 주소에서 열린 연결이 너무 많습니다 (최대 {limit}개). 일부를 닫고 다시 시도하세요",
    },
    "uploads_busy": {
        "en": "the server is busy with other uploads; try again in a few seconds",
        "ko": "서버가 다른 업로드를 처리 중입니다. 잠시 후 다시 시도하세요",
    },
    # --- access -----------------------------------------------------------------------------
    "token_missing": {"en": "An access token is required.", "ko": "접근 토큰이 필요합니다."},
    "token_wrong": {"en": "The access token is wrong.", "ko": "접근 토큰이 올바르지 않습니다."},
    "login_limited": {
        "en": "Too many failed attempts. Try again in {s} s.",
        "ko": "로그인 시도가 너무 많습니다. {s}초 후 다시 시도하세요.",
    },
    "file_not_found": {"en": "File not found.", "ko": "파일을 찾을 수 없습니다."},
    "cross_site": {"en": "Cross-site requests are refused.", "ko": "다른 사이트에서 온 요청은 거부됩니다."},
    "bad_host": {
        "en": "The studio is not served as '{host}'. To use this address, add it to STUDIO_ALLOWED_HOSTS.",
        "ko": "이 주소({host})로는 스튜디오에 접속할 수 없습니다. 이 주소를 쓰려면 STUDIO_ALLOWED_HOSTS에 추가하세요.",
    },
    "loopback_only": {
        "en": "This studio has no access token, so it answers only on this computer. Start it with "
        "`python -m backend` (which creates a token) or set STUDIO_TOKEN.",
        "ko": "접근 토큰이 없어 이 컴퓨터에서만 접속할 수 있습니다. `python -m backend` 로 시작하거나 "
        "STUDIO_TOKEN을 설정하세요.",
    },
    # --- jobs -------------------------------------------------------------------------------
    "job_not_found": {"en": "job {job_id} not found", "ko": "작업 {job_id}을(를) 찾을 수 없습니다"},
    "job_image_missing": {
        "en": "image {upload_id} not found: upload it again",
        "ko": "이미지 {upload_id}이(가) 없습니다: 다시 올려 주세요",
    },
    "job_too_many_images": {
        "en": "at most {limit} images per job",
        "ko": "작업당 이미지는 최대 {limit}장",
    },
    "job_too_many_seconds": {
        "en": "at most {limit} seconds per transition",
        "ko": "전환당 최대 {limit}초",
    },
    "unknown_engine": {"en": "unknown engine '{engine}'", "ko": "알 수 없는 엔진입니다: {engine}"},
    # End-frame influence and prompts over time (jobs/transition_options.py).
    "engine_no_end_influence": {
        "en": "the {engine} engine cannot weaken the last image: end frame influence below 1.0 needs "
        "FramePack (or the morph preview)",
        "ko": "{engine} 엔진은 끝 이미지의 영향을 줄일 수 없습니다: 1.0 미만의 끝 프레임 영향은 FramePack"
        "(또는 모프 미리보기)에서만 됩니다",
    },
    "lora_missing": {
        "en": "LoRA {name} is not in the LoRA folder (STUDIO_LORA_DIR); the job was not started",
        "ko": "LoRA {name} 파일이 LoRA 폴더(STUDIO_LORA_DIR)에 없습니다. 작업을 시작하지 않았습니다",
    },
    "lora_unreadable": {
        "en": "LoRA {name} cannot be read as a safetensors file ({why}); it may be incomplete or corrupt",
        "ko": "LoRA {name} 파일을 safetensors로 읽을 수 없습니다({why}). 덜 받았거나 손상된 파일일 수 있습니다",
    },
    "lora_no_engine": {
        "en": "LoRA {name} fits no engine: its layer names are neither HunyuanVideo/FramePack's nor Wan's",
        "ko": "LoRA {name}은(는) 맞는 엔진이 없습니다: 레이어 이름이 HunyuanVideo/FramePack도 Wan도 아닙니다",
    },
    "lora_wrong_width": {
        "en": "LoRA {name} was trained for a {engine} model of width {width}; the installed model has {model}",
        "ko": "LoRA {name}은(는) 폭 {width}인 {engine} 모델용입니다. 설치된 모델의 폭은 {model}입니다",
    },
    "lora_wrong_engine": {
        "en": "LoRA {name} is for the {fits} engine, not {engine}; pick another LoRA or engine",
        "ko": "LoRA {name}은(는) {engine}이(가) 아니라 {fits} 엔진용입니다. 다른 LoRA나 엔진을 고르세요",
    },
    "engine_no_loras": {
        "en": "the {engine} engine has no model weights, so it cannot apply LoRAs; use FramePack or Wan",
        "ko": "{engine} 엔진에는 모델 가중치가 없어 LoRA를 적용할 수 없습니다. FramePack이나 Wan을 쓰세요",
    },
    "lora_failed": {
        "en": "LoRA {name} could not be applied ({why}); nothing of it was kept, the next job runs without it",
        "ko": "LoRA {name}을(를) 적용하지 못했습니다({why}). 아무것도 남기지 않았으며 다음 작업은 LoRA 없이 실행됩니다",
    },
    "engine_no_timed_prompts": {
        "en": "transition {n}: the {engine} engine makes a transition with one prompt; timed prompts need FramePack",
        "ko": "전환 {n}: {engine} 엔진은 전환 하나를 프롬프트 하나로 만듭니다. 시간별 프롬프트는 FramePack에서만 됩니다",
    },
    "timed_prompt_malformed": {
        "en": "transition {n}: a timed prompt is written as {expected} (start times in seconds, each with its text)",
        "ko": "전환 {n}: 시간별 프롬프트는 {expected} 형식으로 씁니다 (시작 시각(초)과 내용을 짝지어)",
    },
    "timed_prompt_too_late": {
        "en": "transition {n}: the prompt at {at}s starts after the last section; this transition "
        "is {seconds}s long, so the latest start is {limit}s",
        "ko": "전환 {n}: {at}초의 프롬프트가 마지막 구간 뒤에 시작합니다. 이 전환은 {seconds}초라 "
        "가장 늦은 시작은 {limit}초입니다",
    },
    "timed_prompt_same_section": {
        "en": "transition {n}: two prompts start in section {section} (sections are 1.2s); move one to another section",
        "ko": "전환 {n}: 두 프롬프트가 같은 구간 {section}에서 시작합니다 (구간은 1.2초). "
        "하나를 다른 구간으로 옮기세요",
    },
    # Keyframes inside a transition (contracts/keyframes.py, jobs/transition_options.py).
    "engine_no_keyframes": {
        "en": "transition {n}: the {engine} engine cannot pass through a keyframe inside a transition; "
        "keyframes need FramePack or Wan (or add the image to the storyboard: two transitions with a seam)",
        "ko": "전환 {n}: {engine} 엔진은 전환 안에서 키프레임을 지나가게 할 수 없습니다. 키프레임은 FramePack이나 "
        "Wan에서만 됩니다 (또는 이미지를 스토리보드에 넣으세요: 이음새가 있는 전환 두 개가 됩니다)",
    },
    "keyframe_no_transition": {
        "en": "a keyframe names transition {n}, but this job has {count} transitions",
        "ko": "키프레임이 전환 {n}을(를) 가리키지만 이 작업의 전환은 {count}개입니다",
    },
    "keyframe_image_missing": {
        "en": "transition {n}: the keyframe image {upload_id} is not among the uploads; upload it again",
        "ko": "전환 {n}: 키프레임 이미지 {upload_id}이(가) 업로드에 없습니다. 다시 올려 주세요",
    },
    "keyframe_too_many": {
        "en": "transition {n}: at most {limit} keyframes per transition",
        "ko": "전환 {n}: 전환당 키프레임은 최대 {limit}개입니다",
    },
    "keyframe_transition_too_short": {
        "en": "transition {n} is {seconds}s long: too short for a keyframe on {engine}, which conditions every "
        "{step}s; make it at least {min}s",
        "ko": "전환 {n}은(는) {seconds}초라 {engine}에서 키프레임을 넣기에 너무 짧습니다 ({step}초 간격으로 "
        "조건을 겁니다). 최소 {min}초로 늘리세요",
    },
    "keyframe_outside": {
        "en": "transition {n}: the keyframe at {at}s lands at {lands}s, not inside the transition; on {engine} "
        "a keyframe of this {seconds}s transition may land from {first}s to {last}s",
        "ko": "전환 {n}: {at}초의 키프레임이 {lands}초에 놓여 전환 안이 아닙니다. {engine}에서 이 {seconds}초 "
        "전환의 키프레임은 {first}초에서 {last}초 사이에 놓일 수 있습니다",
    },
    "keyframe_same_point": {
        "en": "transition {n}: the keyframes at {a}s and {b}s both land at {lands}s; move one",
        "ko": "전환 {n}: {a}초와 {b}초의 키프레임이 둘 다 {lands}초에 놓입니다. 하나를 옮기세요",
    },
    "wan_keyframes_unsupported_model": {
        "en": "this Wan model conditions on its first image only (expand_timesteps), so it cannot take a keyframe",
        "ko": "이 Wan 모델은 첫 이미지만으로 조건을 걸어(expand_timesteps) 키프레임을 받을 수 없습니다",
    },
    # `reason` is the engine's own account (a text in both languages, or `engine_unavailable`).
    "engine_not_ready": {"en": "{reason}", "ko": "{reason}"},
    "engine_unavailable": {"en": "the {engine} engine is not ready", "ko": "{engine} 엔진을 사용할 수 없습니다"},
    "job_already_finished": {
        "en": "job {job_id} is already {status}",
        "ko": "이미 끝난 작업입니다 ({status})",
    },
    "job_broken_no_retry": {
        "en": "job {job_id} cannot be retried: {error}",
        "ko": "작업 {job_id}은(는) 다시 시도할 수 없습니다",
    },
    "job_not_retryable": {
        "en": "job {job_id} is {status}: only failed or cancelled jobs can be retried",
        "ko": "실패하거나 취소된 작업만 다시 시도할 수 있습니다",
    },
    "job_too_many_takes": {
        "en": "at most {limit} takes per transition on this server",
        "ko": "이 서버에서는 전환마다 테이크를 최대 {limit}개까지 만들 수 있습니다",
    },
    # --- takes ------------------------------------------------------------------------------
    "transition_not_found": {
        "en": "job {job_id} has no transition {index} (it has {count}, numbered from 0)",
        "ko": "작업 {job_id}에는 전환 {index}이(가) 없습니다 (전환 {count}개, 0부터 번호)",
    },
    "take_not_found": {
        "en": "transition {index} of job {job_id} has no take {take}",
        "ko": "작업 {job_id}의 전환 {index}에는 테이크 {take}이(가) 없습니다",
    },
    "take_not_finished": {
        "en": "take {take} of transition {index} is {status}: only a finished take can be chosen",
        "ko": "테이크 {take}은(는) 아직 완성되지 않았습니다 ({status}): 완성된 테이크만 고를 수 있습니다",
    },
    "take_is_chosen": {
        "en": "take {take} is the chosen take of transition {index}: choose another one before deleting it",
        "ko": "테이크 {take}은(는) 전환 {index}에 선택된 테이크입니다: 다른 테이크를 고른 뒤 삭제하세요",
    },
    "take_is_last": {
        "en": "take {take} is the only take of transition {index}: it cannot be deleted",
        "ko": "테이크 {take}은(는) 전환 {index}의 유일한 테이크라 삭제할 수 없습니다",
    },
    "job_busy": {
        "en": "job {job_id} is {status}: wait until it has finished",
        "ko": "작업 {job_id}이(가) 진행 중입니다 ({status}): 끝날 때까지 기다려 주세요",
    },
    "job_not_rebuildable": {
        "en": "job {job_id} cannot be rebuilt: transition {index} has no finished take chosen",
        "ko": "작업 {job_id}을(를) 다시 만들 수 없습니다: 전환 {index}에 완성된 테이크가 선택되지 않았습니다",
    },
    "take_limit_reached": {
        "en": "transition {index} of job {job_id} already keeps {limit} takes, the most it may: delete a take "
        "to make another",
        "ko": "작업 {job_id}의 전환 {index}에는 이미 최대 {limit}개의 테이크가 있습니다: 새로 만들려면 테이크를 "
        "하나 삭제하세요",
    },
    "job_broken_no_takes": {
        "en": "job {job_id}'s stored record is damaged: its takes cannot be changed",
        "ko": "작업 {job_id}의 저장된 기록이 손상되어 테이크를 바꿀 수 없습니다",
    },
    # --- exports ----------------------------------------------------------------------------
    # --- the queue in the user's hands --------------------------------------------------------
    "job_not_queued": {
        "en": "job {job_id} is {status}: only a job still waiting in the queue can be moved or edited",
        "ko": "작업 {job_id}은(는) 현재 {status} 상태입니다: 대기 중인 작업만 옮기거나 수정할 수 있습니다",
    },
    "queue_changed": {
        "en": "the queue changed while the move was made (a job started or ended): try again",
        "ko": "옮기는 사이 대기열이 바뀌었습니다 (작업이 시작되거나 끝났습니다): 다시 시도하세요",
    },
    # --- presets ------------------------------------------------------------------------------
    "preset_not_found": {"en": "preset {preset_id} not found", "ko": "프리셋 {preset_id}을(를) 찾을 수 없습니다"},
    "preset_builtin": {
        "en": "'{name}' is a built-in preset: it cannot be renamed or deleted (save it under a new name to change it)",
        "ko": "'{name}'은(는) 기본 프리셋이라 이름을 바꾸거나 삭제할 수 없습니다 (바꾸려면 새 이름으로 저장하세요)",
    },
    "preset_name_empty": {"en": "a preset needs a name", "ko": "프리셋 이름을 입력하세요"},
    "preset_name_too_long": {
        "en": "a preset name is at most {limit} characters (this one has {count})",
        "ko": "프리셋 이름은 최대 {limit}자입니다 (입력: {count}자)",
    },
    "preset_name_taken": {
        "en": "a preset named '{name}' already exists: choose another name",
        "ko": "'{name}' 이름의 프리셋이 이미 있습니다: 다른 이름을 고르세요",
    },
    "preset_builtin_draft": {"en": "Draft", "ko": "초안"},
    "preset_builtin_final": {"en": "Final", "ko": "최종"},
    "preset_builtin_loop": {"en": "Loop", "ko": "루프"},
    "preset_builtin_t4": {"en": "T4 (free Colab)", "ko": "T4 (무료 Colab)"},
    # --- settings read from a video -------------------------------------------------------------
    "video_not_readable": {
        "en": "'{filename}' could not be read as a video ({reason})",
        "ko": "'{filename}'을(를) 영상으로 읽을 수 없습니다 ({reason})",
    },
    "video_no_studio_settings": {
        "en": "'{filename}' carries no settings from this studio: only a video the studio made (its final.mp4) has them",
        "ko": "'{filename}'에는 이 스튜디오의 설정이 없습니다: 스튜디오가 만든 영상(final.mp4)에만 들어 있습니다",
    },
    "video_probe_too_large": {
        "en": "send at most the first {mb} MB of the video: the studio's settings are at its start",
        "ko": "영상의 앞부분 최대 {mb} MB만 보내세요: 스튜디오 설정은 파일 앞부분에 있습니다",
    },
    "video_probe_no_file": {
        "en": "send the video as a multipart form field named 'file'",
        "ko": "영상을 'file'이라는 이름의 multipart 필드로 보내세요",
    },
    "export_job_not_finished": {
        "en": "job {job_id} is {status}: only a completed job can be exported",
        "ko": "작업 {job_id}은(는) 아직 완료되지 않았습니다 ({status}): 완료된 작업만 내보낼 수 있습니다",
    },
    "export_take_not_finished": {
        "en": "take {take} of transition {index} is {status}: only a finished take can be exported",
        "ko": "테이크 {take}은(는) 아직 완성되지 않았습니다 ({status}): 완성된 테이크만 내보낼 수 있습니다",
    },
    "export_unknown_format": {
        "en": "unknown export format '{format}': one of {formats}",
        "ko": "알 수 없는 내보내기 형식입니다: {format} (가능한 형식: {formats})",
    },
    "export_bad_width": {
        "en": "export width {width}: it must be a whole number from {min} to {max} pixels",
        "ko": "내보내기 너비 {width}: {min}~{max} 픽셀 사이의 정수여야 합니다",
    },
    "export_bad_fps": {
        "en": "export frame rate {fps}: it must be from {min} to {max} frames per second",
        "ko": "내보내기 프레임 속도 {fps}: 초당 {min}~{max} 프레임 사이여야 합니다",
    },
    "export_bad_frame": {
        "en": "frame {frame}: say first, last or a frame number from 0 to {last}",
        "ko": "프레임 {frame}: first, last 또는 0~{last} 사이의 프레임 번호를 지정하세요",
    },
    "export_not_found": {
        "en": "job {job_id} has no export {export_id}",
        "ko": "작업 {job_id}에는 내보내기 {export_id}이(가) 없습니다",
    },
    "export_busy": {
        "en": "{count} exports are already waiting or running: try again when one is done",
        "ko": "내보내기 {count}개가 이미 대기 중이거나 진행 중입니다: 하나가 끝난 뒤 다시 시도하세요",
    },
    "export_source_missing": {
        "en": "the video to export is no longer on disk: {name}",
        "ko": "내보낼 영상 파일이 더 이상 없습니다: {name}",
    },
    "export_failed": {
        "en": "the export could not be made: {error}",
        "ko": "내보내기를 만들지 못했습니다: {error}",
    },
    # --- image analysis ---------------------------------------------------------------------
    "analysis_not_running": {
        "en": "Image analysis is not running on this server.",
        "ko": "이 서버에서 이미지 분석을 사용할 수 없습니다.",
    },
    "analyze_no_images": {
        "en": "Send at least one image to analyse.",
        "ko": "분석할 이미지를 하나 이상 보내세요.",
    },
    "analyze_too_many_images": {
        "en": "Too many images: {count} (at most {limit}).",
        "ko": "이미지가 너무 많습니다: {count}개 (최대 {limit}개).",
    },
    "analyze_bad_id": {"en": "Not an upload id: {id}.", "ko": "업로드 ID가 아닙니다."},
    "analyze_upload_missing": {
        "en": "Upload {upload_id} was not found; upload the image again.",
        "ko": "업로드 {upload_id}을(를) 찾을 수 없습니다. 이미지를 다시 올려 주세요.",
    },
    # ===== Below: sentences that are never an HTTP answer (NOTES) =============================
    # --- why a job failed (stored with the job, sent in its events) -------------------------
    "setting_retired_output_fps": {
        "en": "videos are always written at FramePack's native 30 fps, the rate its sections are generated "
        "at (another rate would only replay the same frames faster or slower); for smoother video "
        "turn on post-processing's interpolation (x2 / x4).",
        "ko": "영상은 항상 FramePack 고유의 30fps로 저장됩니다. 더 부드러운 영상은 후처리의 프레임 보간(x2 / x4)을 "
        "사용하세요",
    },
    "job_unshowable": {
        "en": "this job cannot be shown ({kind}); delete it",
        "ko": "이 작업을 표시할 수 없습니다: 삭제해 주세요",
    },
    # job_failed_model and job_failed_text: no longer raised (every model error has its own code);
    # kept so the error of a job stored by an older studio still renders.
    "job_failed_model": {"en": "{text}", "ko": _MODEL_FIX_KO},
    # A pipeline error that already speaks both languages in one text.
    "job_failed_text": {"en": "{text}", "ko": "{text}"},
    "job_failed_db": {
        "en": "The studio could not save this job's state: {cause}. Check the free disk space, then retry the job.",
        "ko": "작업 상태를 저장하지 못했습니다 ({cause}). 디스크 공간을 확인한 뒤 다시 시도하세요.",
    },
    "job_failed_file": {
        "en": "A file this job needs could not be read or written{where}: {cause}{target}.",
        "ko": "작업에 필요한 파일을 읽거나 쓰지 못했습니다: {cause}{target}",
    },
    "job_failed_oom": {
        "en": "The GPU ran out of memory for this job; try a lower resolution or a shorter length.",
        "ko": "GPU 메모리가 부족합니다. 해상도나 길이를 줄여 다시 시도하세요.",
    },
    "job_failed_internal": {
        "en": "This job failed because of an internal error{where}. The details are in the server log and in "
        "the job's details; retrying may help.",
        "ko": "내부 오류로 작업이 실패했습니다. 자세한 내용은 서버 로그와 작업 상세 정보에 있습니다.",
    },
    "job_failed_worker_lost": {
        "en": "A GPU worker went away {attempts} time(s) (process killed or host lost) while making {what}; the "
        "job stopped. Finished transitions are kept: retry the job to make the rest.",
        "ko": "GPU 워커가 {attempts}번 사라져(프로세스 종료 또는 호스트 끊김) 작업을 멈췄습니다({what}). "
        "완성된 전환은 남아 있으니 다시 시도하면 나머지만 만듭니다.",
    },
    "cluster_unavailable": {
        "en": "The Ray cluster ({address}) could not be reached or started: {cause}. Check STUDIO_RAY_ADDRESS and "
        "`ray status`, then restart the studio.",
        "ko": "Ray 클러스터({address})에 연결하거나 시작하지 못했습니다: {cause}. STUDIO_RAY_ADDRESS와 "
        "`ray status`를 확인한 뒤 스튜디오를 다시 시작하세요.",
    },
    "input_image_missing": {
        "en": "input image {upload_id} is missing from STUDIO_DATA_DIR/uploads: upload it again",
        "ko": "입력 이미지 {upload_id}이(가) 없습니다: 다시 올려 주세요",
    },
    # --- job warnings -----------------------------------------------------------------------
    "stage_face_restore": {"en": "Face restore skipped", "ko": "얼굴 복원 건너뜀"},
    "stage_upscale": {"en": "Upscale skipped", "ko": "업스케일 건너뜀"},
    "stage_interpolate": {"en": "Interpolation skipped", "ko": "프레임 보간 건너뜀"},
    "stage_skipped": {
        "en": "{stage}: its model file is not on this machine and could not be downloaded; the video is made "
        "without it (details in the post-processing report).",
        "ko": "{stage}: 모델 파일이 없고 받을 수도 없어 이 단계 없이 영상을 만들었습니다.",
    },
    "overflow_retry": {
        "en": "section {n}/{sections}: the {what} overflowed (inf/NaN) in {dtype}; re-running it in {safer} (slower).",
        "ko": "구간 {n}/{sections}: {dtype} 계산에서 값이 넘쳤습니다(inf/NaN). {safer}로 다시 계산합니다(더 느림).",
    },
    "overflow_stopped": {
        "en": "section {n}/{sections}: the {what} still hold inf/NaN in {dtype}; stopped rather than write a broken "
        "video.",
        "ko": "구간 {n}/{sections}: {dtype}로 다시 계산해도 값이 넘쳤습니다(inf/NaN).",
    },
    "plan_bucket_exceeded": {
        "en": "This GPU's memory plan leaves room for the {bucket} bucket at most ({width}x{height} asked): choose "
        "a lower resolution, or set STUDIO_PLAN_BUCKET and restart.",
        "ko": "이 GPU의 메모리 계획은 해상도 {bucket}까지입니다({width}x{height} 요청). 해상도를 낮추세요.",
    },
    "translator_unreachable": {
        "en": "The translator could not be reached, so Korean text was used as written (the video model "
        "understands English best).",
        "ko": "번역기에 연결할 수 없어 한국어 프롬프트를 그대로 사용했습니다 (영어 프롬프트가 가장 잘 동작합니다).",
    },
    "translator_local_used": {
        "en": "The online translator could not be reached; the prompt was translated with the local model.",
        "ko": "온라인 번역기에 연결할 수 없어 로컬 번역 모델을 사용했습니다.",
    },
    "engine_fallback": {
        "en": "The {configured} engine is not installed, so this job uses the {engine} engine.",
        "ko": "{configured} 엔진이 설치되지 않아 이 작업은 {engine} 엔진을 사용합니다.",
    },
    "analysis_defaults_used": {
        "en": "Image analysis was not ready when this job was submitted, so the default length and strength were used.",
        "ko": "제출할 때 이미지 분석이 준비되지 않아 기본 길이와 강도를 사용했습니다.",
    },
    "pair_note": {"en": "Pair {n} / 구간 {n}: {text}", "ko": "Pair {n} / 구간 {n}: {text}"},
    "translation_failed": {
        "en": "translation failed; the prompt was used as written.",
        "ko": "번역에 실패하여 프롬프트를 그대로 사용했습니다.",
    },
    # --- engines and models -----------------------------------------------------------------
    "framepack_incomplete": {
        "en": "FramePack is not installed: {problem}. Run `{fix}` (about 45 GB), or use the morph engine.",
        "ko": "FramePack이 설치되지 않았습니다: {problem}. `{fix}` 를 실행하세요 (약 45 GB). 지금은 모프 엔진을 쓸 수 "
        "있습니다.",
    },
    "framepack_not_downloaded": {
        "en": "FramePack is not installed: {names} is not downloaded on this machine. Run `{fix}` (about 45 GB), "
        "or use the morph engine.",
        "ko": "FramePack이 설치되지 않았습니다: {names} 모델이 이 컴퓨터에 없습니다. `{fix}` 를 실행하세요 (약 45 GB). "
        "지금은 모프 엔진을 쓸 수 있습니다.",
    },
    "wan_not_installed": {
        "en": "{model} (the Wan engine's model) is not installed: {problem}. Run `{fix}` (about {gb} GB), or use "
        "another engine.",
        "ko": "{model} (Wan 엔진의 모델)이 설치되지 않았습니다: {problem}. `{fix}` 를 실행하세요 (약 {gb} GB). 지금은 "
        "다른 엔진을 쓸 수 있습니다.",
    },
    "wan_length_capped": {
        "en": "Wan makes at most {max} s per transition in one pass; {seconds} s was asked, so this take is {max} s "
        "long.",
        "ko": "Wan은 전환 하나를 한 번에 최대 {max}초까지 만듭니다. {seconds}초를 요청했으므로 이 테이크는 {max}초입니다.",
    },
    "wan_fast_lora_missing": {
        "en": "Wan's fast mode needs its 4-step LoRA at {path}: run `{fix}`, or raise the quality to 30 or more.",
        "ko": "Wan 빠른 모드에는 4단계 LoRA 파일({path})이 필요합니다. `{fix}` 를 실행하거나 품질을 30 이상으로 올리세요.",
    },
    # The engines' specs (contracts/engine_specs.py): their names on the page and their licences, shown
    # by the engine picker, /api/health and scripts/download_models.py before the FramePack download.
    "engine_label_framepack": {"en": "FramePack (high quality)", "ko": "FramePack (고품질)"},
    "engine_label_morph": {"en": "Instant morph preview", "ko": "즉시 모프 미리보기"},
    "licence_name_hunyuan": {
        "en": "Tencent Hunyuan Community License",
        "ko": "Tencent Hunyuan Community License (텐센트 훈위안 커뮤니티 라이선스)",
    },
    "licence_name_studio": {"en": "the studio's own code", "ko": "스튜디오 자체 코드"},
    "licence_note_framepack": {
        "en": "FramePack's weights are a fine-tune of Tencent's HunyuanVideo. The text of the Tencent Hunyuan "
        "Community License says that it does not apply in the European Union, the United Kingdom and South Korea. "
        "This reports what the licence text says; it is not legal advice.",
        "ko": "FramePack의 가중치는 Tencent의 HunyuanVideo를 미세 조정한 모델입니다. Tencent Hunyuan Community "
        "License 원문에는 이 라이선스가 유럽연합(EU), 영국, 대한민국에서는 적용되지 않는다고 적혀 있습니다. "
        "라이선스 문구를 그대로 전하는 것이며 법률 자문이 아닙니다.",
    },
    "licence_note_morph": {"en": "no model weights", "ko": "모델 가중치 없음"},
    "engine_label_wan": {"en": "Wan first–last frame", "ko": "Wan 첫·끝 프레임"},
    "licence_name_apache": {"en": "Apache-2.0", "ko": "Apache-2.0 (아파치 2.0)"},
    "licence_note_wan": {
        "en": "Wan's weights (Wan 2.1 FLF2V and Wan 2.2 I2V A14B) are published under Apache-2.0, which names "
        "no territory where it does not apply.",
        "ko": "Wan의 가중치(Wan 2.1 FLF2V, Wan 2.2 I2V A14B)는 Apache-2.0으로 공개되어 있으며, 이 라이선스는 "
        "적용이 제외되는 지역을 두지 않습니다.",
    },
    "licence_line": {"en": "Licence: {name} ({url})", "ko": "라이선스: {name} ({url})"},
    # --- post-processing weights (pipeline/postprocess.py, utils/model_registry.py, downloads.py) --
    # `where` names the file's folder by its setting; `error` is the cause, itself a message when
    # it has one. A stage that cannot run names the file and where to put it (its `cause`).
    "postprocess_stage_failed": {
        "en": "{stage}: {cause}",
        "ko": "후처리 단계 {stage}을(를) 실행할 수 없습니다: {cause}",
    },
    "weight_missing": {
        "en": "Model file {filename} for {name} is missing. Get it from {source} and put it at {path} "
        "(folder set by {env}).",
        "ko": "{name}의 모델 파일 {filename}이(가) 없습니다. {source}에서 받아 {path}에 두세요 ({env}로 정하는 폴더).",
    },
    "weight_download_failed": {
        "en": "Model file {filename} for {name} is missing and could not be downloaded ({error}). Get it from "
        "{source} ({url}) and put it at {path} (folder set by {env}).",
        "ko": "{name}의 모델 파일 {filename}이(가) 없고 받을 수도 없었습니다 ({error}). {source} ({url})에서 받아 "
        "{path}에 두세요 ({env}로 정하는 폴더).",
    },
    "weight_unusable": {
        "en": "Model file {filename} for {name} arrived from {url} but is not usable ({error}); it was deleted. "
        "Get it from {source} and put it at {path}.",
        "ko": "{url}에서 받은 {name}의 모델 파일 {filename}을(를) 쓸 수 없어 지웠습니다 ({error}). {source}에서 받아 "
        "{path}에 두세요.",
    },
    "download_unreachable": {
        "en": "{url}: {host} could not be reached {ago} s ago ({why}); it is tried again after {retry} s",
        "ko": "{url}: {ago}초 전에 {host}에 연결하지 못했습니다 ({why}). {retry}초 뒤에 다시 시도합니다",
    },
    "download_http_error": {
        "en": "{url}: HTTP {status} {reason}",
        "ko": "{url}: 서버가 HTTP {status} {reason}(으)로 답해 받지 못했습니다",
    },
    "download_failed": {
        "en": "{url}: {reason}",
        "ko": "{url}: 받지 못했습니다 ({reason})",
    },
    "download_size_mismatch": {
        "en": "{url}: got {size} bytes, expected {expected}",
        "ko": "{url}: {size}바이트를 받았지만 {expected}바이트여야 합니다",
    },
    "download_checksum_mismatch": {
        "en": "{url}: sha256 {actual} does not match the expected {expected}",
        "ko": "{url}: sha256 {actual}이(가) 예상 값 {expected}와(과) 다릅니다",
    },
    # RIFE: a flownet.pkl that loads into neither network; each sentence names the file it needs.
    "rife_checkpoint_unreadable": {
        "en": f"{{path}} is not a RIFE checkpoint this studio can use ({_RIFE_EXPECTED_EN}): it could not be read as "
        "a PyTorch state dict.",
        "ko": f"{{path}}: RIFE 체크포인트로 읽을 수 없습니다. {_RIFE_EXPECTED_KO}",
    },
    "rife_checkpoint_no_tensors": {
        "en": f"{{path}} is not a RIFE checkpoint this studio can use ({_RIFE_EXPECTED_EN}): it holds no tensors by "
        "name.",
        "ko": f"{{path}}: 텐서가 없어 RIFE 체크포인트가 아닙니다. {_RIFE_EXPECTED_KO}",
    },
    "rife_checkpoint_unknown_layers": {
        "en": f"{{path}} is not a RIFE checkpoint this studio can use ({_RIFE_EXPECTED_EN}): its layer names match "
        "neither network.",
        "ko": f"{{path}}: 레이어 이름이 RIFE와 맞지 않습니다. {_RIFE_EXPECTED_KO}",
    },
    "rife_checkpoint_mismatch": {
        "en": f"{{path}} is not a RIFE checkpoint this studio can use ({_RIFE_EXPECTED_EN}): its layers have other "
        "names or shapes than the {kind} network (a different RIFE version?).",
        "ko": f"{{path}}: {{kind}} 네트워크와 레이어가 달라 쓸 수 없습니다 (다른 RIFE 버전?). {_RIFE_EXPECTED_KO}",
    },
    # --- image analysis states and suggestions ----------------------------------------------
    "analysis_loading": {
        "en": "The image analysis model is still loading; suggestions follow when it is ready.",
        "ko": "이미지 분석 모델을 불러오는 중입니다. 준비되면 제안이 표시됩니다.",
    },
    "analysis_busy": {
        "en": "The images are still being analysed; suggestions follow shortly.",
        "ko": "이미지를 분석하는 중입니다. 곧 제안이 표시됩니다.",
    },
    "analysis_unavailable": {
        "en": "Image analysis is unavailable: the OpenCLIP model could not be loaded (not downloaded yet, or the "
        "model hub cannot be reached). Length and strength use their defaults.",
        "ko": "이미지 분석을 사용할 수 없습니다: OpenCLIP 모델을 불러오지 못했습니다 (아직 받지 않았거나 모델 허브에 "
        "연결할 수 없음). 길이와 강도는 기본값을 씁니다.",
    },
    "suggest_resolution": {
        "en": "The smallest image has about {resolution}² pixels; a larger bucket would only upscale it.",
        "ko": "가장 작은 이미지가 약 {resolution}² 픽셀이라 더 큰 해상도는 확대만 됩니다.",
    },
    "suggest_fit_pad": {
        "en": "Cropping image {image} to the {frame} frame would cut off {loss} of it, so it is padded instead.",
        "ko": "이미지 {image}을(를) {frame} 화면에 맞춰 자르면 {loss}가 잘리므로 여백을 넣어 맞춥니다.",
    },
    "suggest_fit_same": {
        "en": "All images have nearly the frame's aspect ratio; cropping loses almost nothing.",
        "ko": "모든 이미지의 화면비가 거의 같아 잘라도 손실이 거의 없습니다.",
    },
    "suggest_fit_crop": {
        "en": "Images {a} and {b} have different aspect ratios; both are fitted to {frame} by crop.",
        "ko": "이미지 {a}과 {b}의 화면비가 달라 둘 다 {frame}에 잘라서 맞춥니다.",
    },
    "suggest_fit_padded": {
        "en": "Images {a} and {b} have different aspect ratios; both are fitted to {frame} by pad.",
        "ko": "이미지 {a}과 {b}의 화면비가 달라 둘 다 {frame}에 여백을 넣어 맞춥니다.",
    },
    "suggest_pair_different": {
        "en": "Images {a} and {b} are very different (similarity {similarity}): a longer transition "
        "({seconds} s) with more strength ({strength}).",
        "ko": "이미지 {a}과 {b}이(가) 많이 다릅니다 (유사도 {similarity}): 더 긴 전환 ({seconds}초)과 더 높은 "
        "강도({strength})를 권장합니다.",
    },
    "suggest_pair_similar": {
        "en": "Images {a} and {b} are similar (similarity {similarity}): a short transition ({seconds} s) with "
        "gentle strength ({strength}).",
        "ko": "이미지 {a}과 {b}이(가) 비슷합니다 (유사도 {similarity}): 짧은 전환 ({seconds}초)과 약한 "
        "강도({strength})를 권장합니다.",
    },
    "suggest_pair_moderate": {
        "en": "Images {a} and {b} are moderately different (similarity {similarity}): {seconds} s, strength "
        "{strength}.",
        "ko": "이미지 {a}과 {b}이(가) 어느 정도 다릅니다 (유사도 {similarity}): {seconds}초, 강도 {strength}.",
    },
    # --- starting the studio ----------------------------------------------------------------
    "data_dir_unusable": {
        "en": "the studio cannot create its data folder STUDIO_DATA_DIR={folder} ({error}): set STUDIO_DATA_DIR "
        "to a folder the studio's user can write",
        "ko": "데이터 폴더를 만들 수 없습니다: STUDIO_DATA_DIR을 쓰기 가능한 폴더로 지정하세요",
    },
    # --- the store ----------------------------------------------------------------------------
    "edit_cancelled": {
        "en": "The re-roll or rebuild was cancelled; the video stays as it was.",
        "ko": "다시 만들기가 취소되었습니다. 영상은 그대로입니다.",
    },
    "edit_failed": {
        "en": "The re-roll or rebuild failed; the video stays as it was. {reason}",
        "ko": "다시 만들기에 실패했습니다. 영상은 그대로입니다. {reason}",
    },
    "job_record_damaged": {
        "en": "this job's stored record is damaged ({problems}); it cannot run or be retried: delete it",
        "ko": "저장된 작업 기록이 손상되어 ({problems}) 실행하거나 다시 시도할 수 없습니다: 삭제해 주세요",
    },
    "store_newer_schema": {
        "en": "the database {path} was written by a newer version of the studio (schema {version}, this one "
        "knows {known}): update the studio, or set STUDIO_DATA_DIR to another folder",
        "ko": "더 새로운 버전의 스튜디오가 만든 데이터베이스입니다 ({path}, 스키마 {version}, 이 버전은 {known}까지): "
        "스튜디오를 업데이트하거나 STUDIO_DATA_DIR을 다른 폴더로 지정하세요",
    },
    "store_damaged": {
        "en": "the studio's database {path} is damaged ({cause}). Stop the studio, move that file aside (keep it: "
        "`sqlite3 {name} .recover` may save its jobs) and start again; a new empty database is made, the "
        "images and videos in STUDIO_DATA_DIR ({folder}) stay.",
        "ko": "데이터베이스 파일 {path}이(가) 손상되었습니다 ({cause}). 스튜디오를 멈추고 파일을 다른 곳으로 옮긴 뒤 "
        "(`sqlite3 {name} .recover`로 작업을 살릴 수 있으니 보관하세요) 다시 시작하세요. 새 데이터베이스가 만들어지고 "
        "STUDIO_DATA_DIR({folder})의 이미지와 영상은 그대로 남습니다.",
    },
    "store_unwritable": {
        "en": "the studio cannot write its database {path} ({cause}). STUDIO_DATA_DIR ({folder}) must be a folder "
        "the studio's user can write (the database, its -wal and -shm files and new uploads live there): fix "
        "its permissions or free space, or set STUDIO_DATA_DIR to a writable folder.",
        "ko": "데이터베이스 {path}에 쓸 수 없습니다 ({cause}). STUDIO_DATA_DIR({folder}) 폴더의 쓰기 권한이나 여유 "
        "공간을 확인하거나 쓰기 가능한 폴더로 지정하세요.",
    },
}

# Codes that are never an HTTP error answer: what a failed job says, warnings, suggestions, the
# start. Every other code has a status in backend.web.error_responses.STATUS (a test checks both ways).
NOTES = frozenset(
    {
        "setting_retired_output_fps",
        "job_unshowable",
        "job_failed_model",
        "job_failed_text",
        "job_failed_db",
        "job_failed_file",
        "job_failed_oom",
        "job_failed_internal",
        "job_failed_worker_lost",
        "cluster_unavailable",
        "input_image_missing",
        "engine_fallback",
        "analysis_defaults_used",
        "pair_note",
        "translation_failed",
        "framepack_incomplete",
        "framepack_not_downloaded",
        "wan_not_installed",
        "wan_length_capped",
        "wan_fast_lora_missing",
        "wan_keyframes_unsupported_model",
        "lora_failed",
        "engine_unavailable",
        "engine_label_framepack",
        "engine_label_morph",
        "licence_name_hunyuan",
        "licence_name_studio",
        "licence_note_framepack",
        "licence_note_morph",
        "engine_label_wan",
        "licence_name_apache",
        "licence_note_wan",
        "licence_line",
        "analysis_loading",
        "analysis_busy",
        "analysis_unavailable",
        "suggest_resolution",
        "suggest_fit_pad",
        "suggest_fit_same",
        "suggest_fit_crop",
        "suggest_fit_padded",
        "suggest_pair_different",
        "suggest_pair_similar",
        "suggest_pair_moderate",
        "data_dir_unusable",
        "job_record_damaged",
        "edit_cancelled",
        "edit_failed",
        "stage_face_restore",
        "stage_upscale",
        "stage_interpolate",
        "stage_skipped",
        "overflow_retry",
        "overflow_stopped",
        "plan_bucket_exceeded",
        "translator_unreachable",
        "translator_local_used",
        "export_failed",
        "postprocess_stage_failed",
        "weight_missing",
        "weight_download_failed",
        "weight_unusable",
        "download_unreachable",
        "download_http_error",
        "download_failed",
        "download_size_mismatch",
        "download_checksum_mismatch",
        "rife_checkpoint_unreadable",
        "rife_checkpoint_no_tensors",
        "rife_checkpoint_unknown_layers",
        "rife_checkpoint_mismatch",
        "preset_builtin_draft",
        "preset_builtin_final",
        "preset_builtin_loop",
        "preset_builtin_t4",
    }
)

# Sentences whose combined text has always been written Korean first (the access refusals).
KOREAN_FIRST = frozenset(
    {
        "token_missing",
        "token_wrong",
        "login_limited",
        "file_not_found",
        "cross_site",
        "bad_host",
        "overflow_retry",
        "overflow_stopped",
        "plan_bucket_exceeded",
    }
)
# Sentences whose combined text is one of its languages alone: the text already speaks both.
ONE_TEXT = frozenset({"job_failed_text", "pair_note"})


def num(value: float) -> str:
    """A number as the sentences show it (`2.5`, `100`), the same on the page and in `detail`."""
    return f"{value:g}"


def fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def _param(value: Any, lang: str) -> Any:
    if isinstance(value, Mapping):
        if "code" in value:
            return render(value["code"], lang, value.get("params") or {})
        if lang in value:
            return value[lang]
    return value


def render(code: str, lang: str, params: Mapping[str, Any] | None = None) -> str:
    """The sentence `code` in `lang` ("en" or "ko"), its fields filled from `params`."""
    template = CATALOGUE[code][lang]
    values = {name: _param(value, lang) for name, value in (params or {}).items()}
    return template.format_map(values)


def texts(code: str, params: Mapping[str, Any] | None = None) -> dict[str, str]:
    return {lang: render(code, lang, params) for lang in LANGS}


def bilingual(code: str, params: Mapping[str, Any] | None = None) -> str:
    """Both languages in one text (`detail`, stored job errors, logs): "English / 한국어"."""
    both = texts(code, params)
    if code in ONE_TEXT:
        return both["en"]
    first, second = ("ko", "en") if code in KOREAN_FIRST else ("en", "ko")
    return f"{both[first]} / {both[second]}"


def message(code: str, **params: Any) -> dict[str, Any]:
    """A sentence as data (a parameter of another sentence, a stored warning's code)."""
    return {"code": code, "params": params}
