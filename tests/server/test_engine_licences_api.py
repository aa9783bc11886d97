"""The engines' specs on the wire, from the real studio on loopback: /api/health carries each
engine's licence, /api/meta every spec, /api/params the slider mapping of the job's engine."""

from __future__ import annotations

SERVER_ENV = {"STUDIO_DEFAULT_ENGINE": "morph"}  # the folder's `server`; FramePack is not installed here


def test_health_carries_each_engine_s_licence(client):
    body = client.get("/api/health").json()
    assert set(body["engines"]) == {"framepack", "wan", "morph"}
    framepack = body["engines"]["framepack"]
    assert framepack["licence"] == {
        "name": "licence_name_hunyuan",
        "url": "https://huggingface.co/tencent/HunyuanVideo/blob/main/LICENSE",
        "excluded": ["EU", "GB", "KR"],
        "note": "licence_note_framepack",
    }
    # The engine's own account stays beside it.
    assert framepack["installed"] is False and framepack["reason"]
    assert body["engines"]["morph"]["licence"] == {
        "name": "licence_name_studio",
        "url": None,
        "excluded": [],
        "note": "licence_note_morph",
    }
    assert body["engines"]["morph"]["ready"] is True
    # The codes are sentences of the catalogue the page reads, in both languages.
    catalogue = client.get("/api/messages").json()["messages"]
    note = catalogue["licence_note_framepack"]
    assert "South Korea" in note["en"] and "United Kingdom" in note["en"] and "European Union" in note["en"]
    assert "대한민국" in note["ko"] and "영국" in note["ko"] and "유럽연합" in note["ko"]
    assert catalogue["licence_name_studio"]["ko"] == "스튜디오 자체 코드"


def test_meta_lists_every_engine_s_spec(client):
    engines = client.get("/api/meta").json()["engines"]
    assert list(engines) == ["framepack", "wan", "morph"]
    framepack = engines["framepack"]
    assert framepack["native_fps"] == 30 and framepack["disk_gb"] == 45
    assert framepack["frames"] == {"block": 36, "min_blocks": 1, "max_blocks": None}
    assert [need["plan"] for need in framepack["memory"]] == ["resident", "partial", "offload"]
    assert engines["morph"]["memory"] == [] and engines["morph"]["disk_gb"] == 0


def test_params_show_the_engine_s_slider_mapping_and_unchanged_values(client):
    settings = {"seconds": 2.4, "quality": 70, "strength": 50}
    body = client.post("/api/params", json={"engine": "framepack", "settings": settings}).json()
    params = body["params"]
    assert (params["steps"], params["crf"], params["fps"], params["cache"]) == (20, 20, 30, "off")
    assert [(s["sections"], s["frames"]) for s in params["segments"]] == [(2, 73)]
    sliders = {(s["slider"], s["param"]): s for s in body["sliders"]}
    assert set(sliders) == {
        ("seconds", "sections"),
        ("quality", "steps"),
        ("quality", "cache"),
        ("strength", "end_embed_weights"),
        ("quality", "crf"),
    }
    assert sliders[("quality", "steps")]["span"] == [8, 25] and sliders[("quality", "crf")]["span"] == [28, 16]
    morph = client.post("/api/params", json={"engine": "morph", "settings": {"seconds": 2.4}}).json()
    assert [(s["slider"], s["param"]) for s in morph["sliders"]] == [("seconds", "frames"), ("quality", "crf")]
    assert morph["params"]["segments"][0]["frames"] == 73
