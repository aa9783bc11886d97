"""The pipeline's and the weight helpers' errors are domain errors: each is raised by the real code
path with a catalogue code, speaks both languages, is still the RuntimeError its callers catch, and
crosses from a Ray worker whole (or, when it cannot, as a RemoteError that keeps its code)."""

from __future__ import annotations

import pickle
import re
import socket

import pytest

from backend.contracts import messages
from backend.contracts.errors import StudioError
from backend.jobs.cluster.task import RemoteError
from backend.utils.config import Settings
from backend.utils.downloads import ChecksumMismatch, DownloadError, download_file
from backend.utils.model_registry import MissingWeightError, ensure_weight
from tests.helpers.postprocess import make_settings

HANGUL = re.compile("[\uac00-\ud7a3]")

# Every code these errors are raised with; none of them answers an HTTP request except
# engine_not_ready, which the web layer already maps.
NEW_CODES = (
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
)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/w.pth"


@pytest.mark.parametrize("code", NEW_CODES)
def test_every_new_code_speaks_both_languages_and_is_a_note(code):
    entry = messages.CATALOGUE[code]
    assert entry["en"].strip() and HANGUL.search(entry["ko"]), code
    assert code in messages.NOTES  # never an HTTP answer: the web layer needs no status for it


def _raised(call) -> BaseException:
    with pytest.raises(Exception) as info:
        call()
    return info.value


def _coded_errors(tmp_path, dead: str) -> dict[str, BaseException]:
    """One error of each class, from the code that raises it."""
    from backend.pipeline.engines import Engines
    from backend.pipeline.postprocess import _weight
    from backend.pipeline.rife_ifnet import load_ifnet

    # A mirror on a closed port: the weight downloads fail at once, with no network.
    settings = make_settings(tmp_path, weights_mirror=_closed_port_url().rsplit("/", 1)[0])
    garbage = tmp_path / "flownet.pkl"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    engines = Engines(Settings(framepack_dir=str(tmp_path / "no-framepack"), models_dir=tmp_path / "models"))
    return {
        "DownloadError": _raised(lambda: download_file(_closed_port_url(), tmp_path / "a.pth", None, timeout=5)),
        "MissingWeightError": _raised(lambda: ensure_weight("codeformer", settings, url=dead)),
        "PostprocessError": _raised(lambda: _weight("codeformer", settings, None, "face_restore")),
        "RifeCheckpointError": _raised(lambda: load_ifnet(garbage)),
        "EngineNotReady": _raised(lambda: engines.before_job("framepack")),
    }


def test_each_error_carries_a_code_and_crosses_a_worker_whole(tmp_path):
    from backend.utils import downloads

    downloads.forget_unreachable()
    dead = _closed_port_url()
    found = _coded_errors(tmp_path, dead)
    downloads.forget_unreachable()
    assert {name: type(exc).__name__ for name, exc in found.items()} == {name: name for name in found}
    for name, exc in found.items():
        assert isinstance(exc, StudioError) and isinstance(exc, RuntimeError), name
        assert exc.code in messages.CATALOGUE, name
        assert str(exc) == messages.bilingual(exc.code, exc.params)
        assert HANGUL.search(exc.text("ko")) and not HANGUL.search(exc.text("en")), name
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and (back.code, back.params, str(back)) == (exc.code, exc.params, str(exc))
        assert RemoteError.carrying(exc) is exc  # crosses as itself, no name matching needed
    # The texts name what is missing and where it goes, in both languages.
    missing = found["MissingWeightError"]
    assert missing.code == "weight_download_failed"
    for lang in messages.LANGS:
        text = missing.text(lang)
        assert "codeformer" in text and str(tmp_path / "models" / "codeformer") in text and dead in text
    # The download's own cause renders in the sentence's language, not as the other's text.
    assert missing.params["error"]["code"] == "download_failed"
    assert "받지 못했습니다" in missing.text("ko") and "받지 못했습니다" not in missing.text("en")
    post = found["PostprocessError"]
    assert post.code == "postprocess_stage_failed" and post.stage == "face_restore"
    assert pickle.loads(pickle.dumps(post)).stage == "face_restore"
    assert post.cause_text("en") == messages.render("weight_download_failed", "en", post.params["cause"]["params"])
    assert found["RifeCheckpointError"].code == "rife_checkpoint_unreadable"
    assert found["EngineNotReady"].code == "engine_not_ready"
    assert "setup.sh" in str(found["EngineNotReady"])


def test_a_checksum_mismatch_is_a_download_error_with_its_own_code(tmp_path):
    from backend.utils.downloads import _verify

    file = tmp_path / "w.pth"
    file.write_bytes(b"abc")
    with pytest.raises(ChecksumMismatch) as info:
        _verify(file, None, 4, "http://x/w.pth")
    assert isinstance(info.value, DownloadError) and info.value.code == "download_size_mismatch"
    with pytest.raises(ChecksumMismatch) as info:
        _verify(file, "0" * 64, None, "http://x/w.pth")
    assert info.value.code == "download_checksum_mismatch" and "0" * 64 in str(info.value)


def test_missing_weight_with_no_download_says_where_to_put_it(tmp_path, monkeypatch):
    import dataclasses

    from backend.utils import model_registry

    # A registry entry with no direct URL (the person places the file by hand).
    spec = dataclasses.replace(model_registry.WEIGHTS["codeformer"], url=None)
    monkeypatch.setitem(model_registry.WEIGHTS, "codeformer", spec)
    with pytest.raises(MissingWeightError) as info:
        ensure_weight("codeformer", make_settings(tmp_path))
    assert info.value.code == "weight_missing"
    for lang in messages.LANGS:
        text = info.value.text(lang)
        assert spec.env in text and spec.filename in text and spec.source_note in text


def test_a_studio_error_that_cannot_cross_keeps_its_code_as_a_remote_error():
    class LocalError(StudioError, RuntimeError):  # a class local to a function does not pickle
        pass

    exc = LocalError("download_failed", url="http://x/w.pth", reason="refused")
    remote = RemoteError.carrying(exc)
    assert isinstance(remote, RemoteError)
    assert (remote.code, remote.params, remote.kind) == ("download_failed", exc.params, "LocalError")
    assert "StudioError" in remote.remote_kinds and str(remote) == str(exc)
    back = pickle.loads(pickle.dumps(remote))
    assert (back.code, back.params, back.remote_kinds) == (remote.code, remote.params, remote.remote_kinds)
    # A parameter that does not pickle crosses as its text.
    odd = LocalError("download_failed", url="http://x/w.pth", reason=lambda: None)
    assert isinstance(RemoteError.carrying(odd).params["reason"], str)

    # Any other error has no code: the studio treats it as it always did.
    class Other(RuntimeError):
        pass

    plain = RemoteError.carrying(Other("boom"))
    assert plain.code is None and plain.params == {}
