"""Presets and settings from a video, on a real server and its SQLite file: the built-ins are
read-only, names are bounded and unique, the user's presets survive a restart; a video the studio
made gives back its composer settings, and one that carries none says so."""

from __future__ import annotations

import io

import httpx
import numpy as np

from backend.utils.video_io import copy_with_metadata, write_video
from tests.helpers.images import encoded, scene
from tests.helpers.jobs import wait_for
from tests.helpers.server import StudioServer
from tests.helpers.uploads import upload

ENV = {"STUDIO_DEFAULT_ENGINE": "morph", "STUDIO_VIDEO_PROBE_MB": "1"}
MINE = {
    "engine": "morph",
    "settings": {"seconds": 1.2, "quality": 35, "strength": 80, "resolution": 64, "seed": 9},
    "postprocess": {"mode": "off"},
    "prompt": "slow dolly in",
}


def test_presets_built_in_saved_renamed_deleted_and_kept_across_a_restart(tmp_path):
    with StudioServer(tmp_path, ENV) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        listed = client.get("/api/presets").json()
        builtins = {p["builtin"]: p for p in listed["presets"] if p["builtin"]}
        assert set(builtins) == {"draft", "final", "loop", "t4"}
        assert builtins["final"]["settings"]["settings"]["quality"] == 100
        assert builtins["draft"]["settings"]["settings"]["quality"] < 30  # the fast mode
        assert builtins["t4"]["settings"]["settings"]["resolution"] == 480
        assert builtins["loop"]["settings"]["settings"]["strength"] == 100
        limit = listed["max_name_chars"]

        r = client.post("/api/presets", json={"name": "  My   look ", "settings": MINE})
        assert r.status_code == 201, r.text
        mine = r.json()
        assert mine["name"] == "My look" and mine["builtin"] is None and mine["settings"]["prompt"] == "slow dolly in"

        # Refusals, each with its catalogue code and a sentence in both languages.
        taken = client.post("/api/presets", json={"name": "my LOOK", "settings": {}})
        assert taken.status_code == 409 and taken.json()["code"] == "preset_name_taken"
        assert client.post("/api/presets", json={"name": "초안", "settings": {}}).json()["code"] == "preset_name_taken"
        long = client.post("/api/presets", json={"name": "x" * (limit + 1), "settings": {}})
        assert long.status_code == 422 and long.json()["code"] == "preset_name_too_long"
        assert long.json()["params"]["limit"] == limit and str(limit) in long.json()["detail"]
        assert client.post("/api/presets", json={"name": "   ", "settings": {}}).json()["code"] == "preset_name_empty"
        unknown = client.post("/api/presets", json={"name": "odd", "settings": {"lora": "x"}})
        assert unknown.status_code == 422
        for call in (
            lambda: client.patch("/api/presets/builtin-final", json={"name": "Mine"}),
            lambda: client.delete("/api/presets/builtin-draft"),
        ):
            r = call()
            assert r.status_code == 409 and r.json()["code"] == "preset_builtin", r.text
            assert "/" in r.json()["detail"]  # English / Korean
        assert client.delete("/api/presets/nope").status_code == 404

        client.post("/api/presets", json={"name": "Other", "settings": {"settings": {"quality": 10}}})
        r = client.patch(f"/api/presets/{mine['id']}", json={"name": "Dolly"})
        assert r.status_code == 200 and r.json()["name"] == "Dolly"
        assert client.patch(f"/api/presets/{mine['id']}", json={"name": "other"}).status_code == 409
        assert client.patch(f"/api/presets/{mine['id']}", json={"name": "DOLLY"}).status_code == 200  # its own

    with StudioServer(tmp_path, ENV) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        users = [p for p in client.get("/api/presets").json()["presets"] if not p["builtin"]]
        assert [p["name"] for p in users] == ["DOLLY", "Other"]
        kept = users[0]["settings"]
        assert kept["settings"]["quality"] == 35 and kept["settings"]["seed"] == 9 and kept["engine"] == "morph"
        assert kept["prompt"] == MINE["prompt"] and kept["postprocess"]["mode"] == "off"
        assert client.delete(f"/api/presets/{users[1]['id']}").status_code == 204
        assert [p["name"] for p in client.get("/api/presets").json()["presets"] if not p["builtin"]] == ["DOLLY"]


def _post_video(client: httpx.Client, data: bytes, name: str = "final.mp4") -> httpx.Response:
    return client.post("/api/settings-from-video", files={"file": (name, data, "video/mp4")})


def test_settings_from_a_video_the_studio_made_and_from_others(tmp_path):
    with StudioServer(tmp_path, ENV) as srv, httpx.Client(base_url=srv.url, timeout=60) as client:
        ids = upload(client, [scene(64, 64), scene(64, 64, shift=10, hue=30), scene(64, 64, shift=20, hue=60)])
        body = {"images": ids, **MINE, "prompts": ["first pair", None]}
        job_id = client.post("/api/jobs", json=body).json()["id"]
        assert wait_for(client, job_id, timeout=120)["status"] == "completed"
        final = (srv.data_dir / "outputs" / job_id / "final.mp4").read_bytes()
        files_before = sorted(p.name for p in srv.data_dir.rglob("*"))

        r = _post_video(client, final)
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["job_id"] == job_id and got["source"] == "studio_settings"
        assert {k: got["settings"]["settings"][k] for k in MINE["settings"]} == MINE["settings"]
        assert got["settings"]["engine"] == "morph" and got["settings"]["prompt"] == "slow dolly in"
        assert got["settings"]["prompts"] == ["first pair", None]
        # The start of the file is enough (the studio writes its tags there); nothing was kept.
        assert _post_video(client, final[: 64 * 1024]).json()["settings"] == got["settings"]
        assert sorted(p.name for p in srv.data_dir.rglob("*")) == files_before

        # An older video: only the resolved parameters and the comment.
        older = tmp_path / "older.mp4"
        copy_with_metadata(
            srv.data_dir / "outputs" / job_id / "final.mp4",
            older,
            {"studio_settings": ""},
        )
        r = _post_video(client, older.read_bytes())
        assert r.status_code == 200 and r.json()["source"] == "studio_params"
        assert r.json()["settings"]["settings"]["quality"] == 35 and r.json()["settings"]["settings"]["seed"] == 9
        assert r.json()["settings"]["prompts"] == ["first pair", "slow dolly in"]

        plain = tmp_path / "plain.mp4"
        write_video(plain, np.zeros((4, 32, 32, 3), np.uint8), 30)
        r = _post_video(client, plain.read_bytes(), "holiday.mp4")
        assert r.status_code == 422 and r.json()["code"] == "video_no_studio_settings"
        assert "holiday.mp4" in r.json()["detail"]
        r = _post_video(client, encoded(scene(64, 64)), "photo.png")
        assert r.status_code == 422 and r.json()["code"] == "video_not_readable"
        big = io.BytesIO(b"\0" * (2 * 1024 * 1024)).getvalue()
        r = _post_video(client, big)
        assert r.status_code == 413 and r.json()["code"] == "video_probe_too_large"
        r = client.post("/api/settings-from-video", files={"other": ("x.mp4", final[:1000], "video/mp4")})
        assert r.status_code == 422 and r.json()["code"] == "video_probe_no_file"
