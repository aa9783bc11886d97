"""LoRAs through the real studio (uvicorn, the tiny FramePack model on the CPU): GET /api/loras lists
the folder's files with the engine each fits or why none; a missing, corrupt or foreign LoRA, and
any LoRA on morph, is refused at submit (422, both languages) before anything is stored; a job with
a LoRA stores it with its take and writes it in the take's and the final video's metadata; a
re-roll without it makes the frames of a job that never had it."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from backend.utils.video_io import iter_frames, probe
from tests.helpers import lora_formats
from tests.helpers.images import encoded, scene
from tests.helpers.jobs import wait_for
from tests.helpers.server import StudioServer
from tests.helpers.tiny_framepack import build_tiny_pipeline
from tests.helpers.tiny_wan import lightx2v_style_lora


def _frames(path) -> np.ndarray:
    return np.concatenate(list(iter_frames(path)))


@pytest.mark.slow
def test_lora_list_refusals_storage_and_metadata(tmp_path, tiny_framepack_dir):
    folder = tmp_path / "loras"
    t = build_tiny_pipeline().transformer
    lora_formats.kohya_hunyuan_lora(t, folder / "style.safetensors")
    lora_formats.corrupt_copy(folder / "style.safetensors", folder / "broken.safetensors")
    lightx2v_style_lora(folder / "wan_only.safetensors", rank=2)
    (folder / "notes.txt").write_text("not a LoRA")
    env = {"FRAMEPACK_DIR": str(tiny_framepack_dir), "STUDIO_LORA_DIR": str(folder)}
    with StudioServer(tmp_path, env) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        listed = c.get("/api/loras").json()
        items = {i["name"]: i for i in listed["items"]}
        assert set(items) == {"style.safetensors", "broken.safetensors", "wan_only.safetensors"}
        assert (items["style.safetensors"]["engine"], items["style.safetensors"]["rank"]) == ("framepack", 2)
        assert items["style.safetensors"]["format"] == "kohya" and items["style.safetensors"]["reason"] is None
        assert items["wan_only.safetensors"]["engine"] == "wan"
        broken = items["broken.safetensors"]
        assert broken["engine"] is None and broken["reason_code"] == "lora_unreadable"
        assert "손상" in broken["reason"] and "corrupt" in broken["reason"]

        files = [
            ("files", (f"i{i}.png", encoded(scene(96, 80, shift=8 * i, hue=50 * i)), "image/png")) for i in range(2)
        ]
        ids = [u["id"] for u in c.post("/api/uploads", files=files).json()["uploads"]]
        sliders = {"seconds": 1.2, "quality": 10, "resolution": 64, "seed": 7, "strength": 50}

        def job(engine: str, loras: list[dict]) -> httpx.Response:
            return c.post("/api/jobs", json={"images": ids, "engine": engine, "settings": {**sliders, "loras": loras}})

        refusals = [
            ("morph", "style.safetensors", "engine_no_loras"),
            ("framepack", "gone.safetensors", "lora_missing"),
            ("framepack", "../loras/style.safetensors", "lora_missing"),
            ("framepack", "broken.safetensors", "lora_unreadable"),
            ("framepack", "wan_only.safetensors", "lora_wrong_engine"),
        ]
        for engine, name, code in refusals:
            r = job(engine, [{"name": name, "weight": 1.0}])
            assert r.status_code == 422 and r.json()["code"] == code, (name, r.text)
            assert " / " in r.json()["detail"]  # English / Korean
        assert c.get("/api/jobs").json()["jobs"] == []  # nothing was stored

        r = job("framepack", [{"name": "style.safetensors", "weight": 0.8}])
        assert r.status_code == 201, r.text
        done = wait_for(c, r.json()["id"], timeout=600)
        assert done["status"] == "completed", done
        job_id = done["id"]
        out = srv.data_dir / "outputs" / job_id
        take_file = out / "segment_000.mp4"
        assert json.loads(probe(take_file).metadata["comment"])["loras"] == [
            {"name": "style.safetensors", "weight": 0.8}
        ]
        final = probe(out / "final.mp4").metadata
        assert json.loads(final["studio_loras"]) == [[{"name": "style.safetensors", "weight": 0.8}]]
        with_lora = _frames(take_file)

        # A re-roll without the LoRA, same seed: the frames of a job that never had one.
        r = c.post(f"/api/jobs/{job_id}/transitions/0/takes", json={"seed": 7, "loras": []})
        assert r.status_code == 202, r.text
        rerolled = wait_for(c, job_id, timeout=600)
        assert rerolled["status"] == "completed"
        r = job("framepack", [])
        plain = wait_for(c, r.json()["id"], timeout=600)
        plain_frames = _frames(srv.data_dir / "outputs" / plain["id"] / "segment_000.mp4")
        assert np.array_equal(_frames(out / "segment_000_take_2.mp4"), plain_frames)
        assert not np.array_equal(with_lora, plain_frames)
