"""The message catalogue and the one status mapping: every code speaks both languages, renders
its parameters, and (when it answers a request) has a status; no user-facing Korean text lives
outside the catalogue."""

from __future__ import annotations

import re
import sqlite3
import string
import subprocess

import pytest

from backend.contracts import messages
from backend.contracts.errors import JobError, StudioError
from backend.jobs.failures import user_error
from backend.web import error_responses as web_errors
from tests.helpers.server import ROOT

HANGUL = re.compile("[\uac00-\ud7a3]")

# Files that may keep Korean literals, and why. Anything else with Hangul fails the test below.
ALLOWED_HANGUL = {
    # The command line's own banner and its `--profile` report: printed to a terminal at start,
    # never an answer or a job message, and the page never sees them.
    "backend/web/access_token.py": "CLI start banner (token, LAN warning)",
    "backend/pipeline/framepack/machine.py": "`python -m backend --profile` terminal report",
}


def _sample(name: str) -> str:
    return f"<{name}>"


@pytest.mark.parametrize("code", sorted(messages.CATALOGUE))
def test_every_code_has_both_languages_and_renders_its_params(code):
    entry = messages.CATALOGUE[code]
    assert set(entry) == set(messages.LANGS), code
    for lang in messages.LANGS:
        template = entry[lang]
        assert template.strip(), (code, lang)
        for _, name, spec, conversion in string.Formatter().parse(template):
            if name is None:
                continue
            # The page fills `{name}` by plain substitution: no spec, no conversion, no index.
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name), (code, lang, name)
            assert not spec and conversion is None, (code, lang, name)
    # A sentence that only passes on a text already in both languages has nothing of its own.
    passes_on = re.fullmatch(r"\{\w+\}", entry["ko"]) is not None
    assert passes_on or HANGUL.search(entry["ko"]), f"{code}: the Korean text has no Korean"
    names = set(messages.fields(entry["en"])) | set(messages.fields(entry["ko"]))
    params = {n: _sample(n) for n in names}
    for lang in messages.LANGS:
        text = messages.render(code, lang, params)
        assert not re.search(r"\{\w+\}", text), (code, lang, text)
        for n in messages.fields(entry[lang]):
            assert _sample(n) in text
    both = messages.bilingual(code, params)
    for lang in messages.LANGS:
        assert messages.render(code, lang, params) in both


def test_every_code_is_either_an_http_answer_or_a_note():
    codes, notes = set(messages.CATALOGUE), set(messages.NOTES)
    answers = set(web_errors.STATUS) | web_errors.STATUS_FROM_FRAMEWORK
    assert not answers & notes
    assert answers | notes == codes, sorted(codes ^ (answers | notes))
    for code, status in web_errors.STATUS.items():
        assert isinstance(status, int) and 400 <= status <= 599, code


def test_an_unknown_code_cannot_be_raised():
    with pytest.raises(KeyError):
        StudioError("no_such_code")


def test_params_that_speak_both_languages_render_in_the_sentences_language():
    reason = {"en": "weights missing", "ko": "가중치 없음"}
    err = JobError("engine_not_ready", reason=reason, extra={"fix": "run it"})
    assert err.text("en") == "weights missing" and err.text("ko") == "가중치 없음"
    assert err.message == "weights missing / 가중치 없음"
    nested = JobError("engine_not_ready", reason=messages.message("engine_unavailable", engine="framepack"))
    assert nested.message == "the framepack engine is not ready / framepack 엔진을 사용할 수 없습니다"
    body = web_errors.error_body(err)
    assert body == {
        "detail": "weights missing / 가중치 없음",
        "code": "engine_not_ready",
        "params": {"reason": reason},
        "fix": "run it",
    }


def test_combined_texts_keep_their_historic_order_and_words():
    # What clients and older tests read in `detail`.
    assert messages.bilingual("job_not_found", {"job_id": "x1"}) == "job x1 not found / 작업 x1을(를) 찾을 수 없습니다"
    assert messages.bilingual("token_missing") == "접근 토큰이 필요합니다. / An access token is required."
    assert messages.bilingual("login_limited", {"s": 7}) == (
        "로그인 시도가 너무 많습니다. 7초 후 다시 시도하세요. / Too many failed attempts. Try again in 7 s."
    )
    assert messages.bilingual("quota_used", {"used_mb": "1.5", "quota_mb": "2"}) == (
        "the studio's storage quota is used up: 1.5 of 2 MB (STUDIO_DATA_QUOTA_MB); delete old jobs or uploads"
        " / 저장 한도를 다 썼습니다: 1.5 / 2 MB (STUDIO_DATA_QUOTA_MB). 오래된 작업이나 업로드를 삭제하세요"
    )


def test_failed_jobs_say_a_catalogue_sentence():
    class OutOfMemoryError(RuntimeError):
        pass

    cases = [
        (JobError("job_not_found", job_id="j"), "job_not_found"),
        (OSError(28, "No space left on device", "/data/x.mp4"), "job_failed_file"),
        (OutOfMemoryError("CUDA"), "job_failed_oom"),
        (ValueError("boom"), "job_failed_internal"),
        (sqlite3.OperationalError("database is locked"), "job_failed_db"),
    ]
    for exc, code in cases:
        text, details, said = user_error(exc, "segment 1")
        assert said["code"] == code
        assert text == messages.bilingual(code, said["params"])
        assert type(exc).__name__ in details
    text, _, said = user_error(OSError(28, "No space left on device", "/data/x.mp4"), "encode")
    assert text == (
        "A file this job needs could not be read or written (encode): No space left on device "
        "(/data/x.mp4). / 작업에 필요한 파일을 읽거나 쓰지 못했습니다: No space left on device (/data/x.mp4)"
    )
    # A job's input image gone from disk: a FileNotFoundError to the runner, a sentence to people.
    from backend.contracts.errors import InputMissing

    gone = InputMissing("input_image_missing", upload_id="u1")
    assert isinstance(gone, FileNotFoundError)
    text, _, said = user_error(gone, "frames")
    assert said == {"code": "input_image_missing", "params": {"upload_id": "u1"}}
    assert text == (
        "input image u1 is missing from STUDIO_DATA_DIR/uploads: upload it again / "
        "입력 이미지 u1이(가) 없습니다: 다시 올려 주세요"
    )
    # A model error says its own catalogue sentence.
    from backend.jobs.cluster.task import RemoteError
    from backend.utils.model_registry import MissingWeightError

    missing = MissingWeightError(
        "weight_missing", filename="w.pth", name="w", source="its release", path="models/w.pth", env="STUDIO_X"
    )
    text, _, said = user_error(missing)
    assert said == {"code": "weight_missing", "params": missing.params} and text == str(missing)
    # A model error from a worker that could not cross as itself carries its code and says the same
    # sentence; one that carries no code is an internal error, never its raw text.
    kinds = ("MissingWeightError", "StudioError", "RuntimeError")
    crossed = RemoteError("MissingWeightError", kinds, str(missing), missing.code, missing.params)
    text, _, said = user_error(crossed)
    assert said == {"code": "weight_missing", "params": missing.params} and text == str(missing)
    text, _, said = user_error(RemoteError("MissingWeightError", kinds, "put w.pth in models/"))
    assert said["code"] == "job_failed_internal" and "put w.pth" not in text


def _hangul_outside_catalogue(files: list[str], read) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for name in files:
        if not name.endswith(".py") or name == "backend/contracts/messages.py":
            continue
        lines = [i + 1 for i, line in enumerate(read(name).splitlines()) if HANGUL.search(line)]
        if lines:
            found[name] = lines
    return found


def _tracked_backend() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "backend"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if (ROOT / line).is_file()]


def test_no_korean_literals_outside_the_catalogue():
    found = _hangul_outside_catalogue(_tracked_backend(), lambda n: (ROOT / n).read_text(encoding="utf-8"))
    unexpected = {name: lines for name, lines in found.items() if name not in ALLOWED_HANGUL}
    assert not unexpected, f"user-facing text belongs in backend/contracts/messages.py: {unexpected}"
    # An allowance that is no longer needed is removed, so the list stays honest.
    assert set(ALLOWED_HANGUL) <= set(found), sorted(set(ALLOWED_HANGUL) - set(found))


def test_the_korean_check_notices_a_new_literal():
    sources = {
        "backend/web/routes/new.py": 'raise ValueError("잘못된 값")\n',
        "backend/ok.py": "x = 1\n",
        "backend/contracts/messages.py": 'X = "한국어"\n',
    }
    found = _hangul_outside_catalogue(list(sources), sources.__getitem__)
    assert found == {"backend/web/routes/new.py": [1]}
