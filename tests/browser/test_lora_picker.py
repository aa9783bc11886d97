"""The LoRA picker in the real page (Debian's Chromium, the real server with the tiny FramePack model
on the CPU), in Korean and English: the folder's files that fit the engine can be picked with a
weight, the others are shown disabled with why (in the page's language); morph says it takes none;
an empty folder says where files go; the picks reach the job and its take (the take card shows
them); a re-roll can run without them; a LoRA gone from the folder is refused at submit with the
catalogue's sentence."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from backend.contracts import messages
from tests.helpers import lora_formats
from tests.helpers.browser import REQUIREMENTS, offline_page, open_fresh_studio, screenshot, upload_files
from tests.helpers.images import save, scene
from tests.helpers.jobs import wait_for

pytestmark = REQUIREMENTS

STYLE, WAN, BROKEN = "style.safetensors", "wan_motion.safetensors", "broken.safetensors"


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory, tiny_framepack_dir) -> Path:
    """One LoRA for the installed tiny FramePack (its width), one for Wan, one cut short."""
    folder = tmp_path_factory.mktemp("loras")
    config = json.loads((tiny_framepack_dir / "transformer" / "config.json").read_text())
    framepack = SimpleNamespace(
        config=SimpleNamespace(
            mlp_ratio=4.0,
            **{k: config[k] for k in ("num_attention_heads", "attention_head_dim", "num_layers", "num_single_layers")},
        )
    )
    lora_formats.kohya_hunyuan_lora(framepack, folder / STYLE)
    wan = SimpleNamespace(config=SimpleNamespace(num_attention_heads=2, attention_head_dim=8, ffn_dim=32, num_layers=1))
    lora_formats.musubi_wan_lora(wan, folder / WAN)
    lora_formats.corrupt_copy(folder / STYLE, folder / BROKEN)
    return folder


@pytest.fixture(scope="module")
def server_env(tiny_framepack_dir, lora_dir) -> dict[str, str]:
    return {"FRAMEPACK_DIR": str(tiny_framepack_dir), "STUDIO_LORA_DIR": str(lora_dir)}


def _item(page, name: str) -> str:
    return f"[data-testid=lora-picker] [data-testid=lora-item][data-name='{name}']"


def _reason(page, name: str) -> str:
    return page.inner_text(f"{_item(page, name)} [data-testid=lora-reason]")


def _set_range(page, selector: str, value: float) -> None:
    page.eval_on_selector(
        selector,
        "(el, v) => { const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;"
        " set.call(el, String(v)); el.dispatchEvent(new Event('input', { bubbles: true })); }",
        value,
    )


def test_lora_picker_job_take_and_reroll(browser, server, client, tmp_path, lora_dir):
    listed = {i["name"]: i for i in client.get("/api/loras").json()["items"]}
    assert (listed[STYLE]["engine"], listed[WAN]["engine"], listed[BROKEN]["reason_code"]) == (
        "framepack",
        "wan",
        "lora_unreadable",
    )
    files = [save(scene(96, 72, shift=10 * i, hue=60 * i), tmp_path / f"i{i}.png") for i in range(2)]
    page = open_fresh_studio(offline_page(browser, server.url), server.url, "ko")
    upload_files(page, files)

    # Korean, FramePack: its file can be picked, the Wan one and the broken one cannot, each says why.
    page.click("[data-testid=engine] label:has-text('FramePack')")
    page.wait_for_selector(f"{_item(page, STYLE)}[data-fits=true]")
    assert page.get_attribute(_item(page, WAN), "data-fits") == "false"
    assert page.is_disabled(f"{_item(page, WAN)} [data-testid=lora-pick]")
    assert page.is_disabled(f"{_item(page, BROKEN)} [data-testid=lora-pick]")
    assert "엔진용" in _reason(page, WAN)
    assert _reason(page, BROKEN) == messages.render("lora_unreadable", "ko", listed[BROKEN]["reason_params"])
    page.check(f"{_item(page, STYLE)} [data-testid=lora-pick]")
    _set_range(page, f"{_item(page, STYLE)} [data-testid=lora-weight]", 0.8)
    assert page.inner_text(f"{_item(page, STYLE)} [data-testid=lora-weight-value]") == "0.80"
    assert page.inner_text("[data-testid=lora-count]") == "1/4개 선택"
    screenshot(page, "lora-picker-ko.png")

    # Morph takes none; back on FramePack the pick is still there.
    page.click("[data-testid=engine] label:has-text('모프')")
    assert "LoRA를 쓸 수 없습니다" in page.inner_text("[data-testid=lora-morph]")
    page.click("[data-testid=engine] label:has-text('FramePack')")
    page.wait_for_selector(f"{_item(page, STYLE)} [data-testid=lora-weight]")

    # English: the same reasons in English.
    page.click("[data-testid=lang-toggle]")
    page.wait_for_function(
        "(t) => document.querySelector(\"[data-name='broken.safetensors'] [data-testid=lora-reason]\").textContent === t",
        arg=messages.render("lora_unreadable", "en", listed[BROKEN]["reason_params"]),
    )
    assert _reason(page, WAN).startswith("For the Wan first–last frame engine")
    screenshot(page, "lora-picker-en.png")

    # The picks go with the job and are stored with its take; the take card shows them.
    page.fill("[data-testid=seed]", "7")
    page.select_option("[data-testid=resolution]", "256")
    _set_range(page, "[data-testid=seconds]", 0.5)
    _set_range(page, "[data-testid=quality]", 0)
    with page.expect_response(lambda r: r.url.endswith("/api/jobs") and r.request.method == "POST") as answer:
        page.click("[data-testid=submit]")
    assert answer.value.status == 201, answer.value.text()
    assert answer.value.request.post_data_json["settings"]["loras"] == [{"name": STYLE, "weight": 0.8}]
    job_id = answer.value.json()["id"]
    done = wait_for(client, job_id, timeout=300)
    assert done["status"] == "completed", done
    assert done["transitions"][0]["takes"][0]["loras"] == [{"name": STYLE, "weight": 0.8}]
    card = f"[data-testid=job-card][data-job-id='{job_id}']"
    page.wait_for_selector(f"{card} [data-testid=take-loras]")
    assert page.inner_text(f"{card} [data-testid=take-loras]") == "LoRA: style.safetensors × 0.80"

    # Re-roll: "keep" names the transition's LoRAs; "choose" starts from them; "no LoRA" sends [].
    page.click(f"{card} [data-testid=take-reroll]")
    keep = page.inner_text(f"{card} [data-testid=reroll-lora-mode] option[value=keep]")
    assert keep == "Keep the transition's LoRAs (style.safetensors × 0.80)"
    page.select_option(f"{card} [data-testid=reroll-lora-mode]", "pick")
    assert page.is_checked(f"{card} [data-testid=reroll-lora-picker] [data-name='{STYLE}'] [data-testid=lora-pick]")
    page.select_option(f"{card} [data-testid=reroll-lora-mode]", "none")
    with page.expect_response(lambda r: r.url.endswith("/transitions/0/takes") and r.request.method == "POST") as sent:
        page.click(f"{card} [data-testid=reroll-submit]")
    assert sent.value.status == 202 and sent.value.request.post_data_json == {"loras": []}
    takes = client.get(f"/api/jobs/{job_id}").json()["transitions"][0]["takes"]
    assert [t["loras"] for t in takes] == [[{"name": STYLE, "weight": 0.8}], []]  # stored with the new take
    client.post(f"/api/jobs/{job_id}/cancel")  # its frames are the server tests' business

    # A LoRA gone from the folder since the list was read: refused at submit, said in the page's language.
    (lora_dir / STYLE).unlink()
    page.click("[data-testid=submit]")
    page.wait_for_selector("[data-testid=submit-error]")
    assert page.inner_text("[data-testid=submit-error]") == messages.render("lora_missing", "en", {"name": STYLE})
    assert not page.js_errors
    wait_for(client, job_id)


def test_empty_lora_folder_says_where_files_go(browser, server):
    page = offline_page(browser, server.url)
    empty = {"folder": "/data/models/loras", "max_per_take": 4, "weight_min": -2, "weight_max": 2, "items": []}
    page.route("**/api/loras", lambda route: route.fulfill(json=empty))
    open_fresh_studio(page, server.url, "ko")
    page.click("[data-testid=engine] label:has-text('FramePack')")
    line = page.wait_for_selector("[data-testid=lora-empty]").inner_text()
    assert "LoRA 파일이 없습니다" in line and "/data/models/loras" in line
    page.click("[data-testid=lang-toggle]")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=lora-empty]').textContent.startsWith('No LoRA files yet')"
    )
    assert "/data/models/loras" in page.inner_text("[data-testid=lora-empty]")
    page.close()
