"""Korean detection, the translation chain (cache, timeout, retries, fallbacks) and default prompts.

The internet translator is the one thing replaced: `DictTranslator` implements the same
`Translator` interface as the googletrans engine. The googletrans engine itself is exercised
against loopback (a closed port, a server that never answers) and an in-process HTTP transport,
and the MarianMT fallback is a real, tiny, randomly initialised Marian model with a real
SentencePiece tokenizer trained here.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from backend.jobs.analyzers.prompt_analyzer import (
    GENERIC_MOTION_PROMPT,
    PromptTranslator,
    TranslationCache,
    contains_hangul,
    default_motion_prompt,
    split_clauses,
)
from backend.jobs.analyzers.translators import (
    GoogleTranslator,
    MarianTranslator,
    TranslationError,
    Translator,
)
from tests.helpers.translators import KO_EN, DictTranslator


# --- detection ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("고양이가 창가에서 천천히 걸어간다", True),
        ("서울의 밤거리, 네온사인이 빛난다.", True),
        ("cinematic lighting, 바다 위로 해가 진다", True),
        ("ㅋㅋㅋ", True),  # compatibility Jamo only
        ("A cat walks slowly by the window.", False),
        ("猫が窓辺をゆっくり歩く", False),  # Japanese
        ("一只猫慢慢地走", False),  # Chinese
        ("Café au lait, 4K, 60fps", False),
        ("", False),
        (None, False),
    ],
)
def test_hangul_detection_on_real_sentences(text, expected):
    assert contains_hangul(text) is expected


def test_split_clauses_round_trips():
    text = "cinematic, 바다 위로 해가 진다. slow motion;\n고양이"
    parts = split_clauses(text)
    assert "".join(c + s for c, s in parts) == text
    assert [c for c, _ in parts] == ["cinematic", "바다 위로 해가 진다", "slow motion", "고양이"]


# --- translation chain -------------------------------------------------------------------------
async def test_translates_korean_and_leaves_english_alone(tmp_path):
    primary = DictTranslator()
    chain = PromptTranslator(primary, cache=TranslationCache(tmp_path / "s.sqlite3"))
    out = await chain.to_english("고양이가 창가에서 천천히 걸어간다")
    assert out.text == "A cat walks slowly by the window"
    assert out.engines == ["google"] and out.warnings == []
    english = await chain.to_english("A cat walks slowly.")
    assert english.text == "A cat walks slowly." and english.engines == []
    assert primary.calls == ["고양이가 창가에서 천천히 걸어간다"]


async def test_mixed_text_keeps_its_english_parts(tmp_path):
    primary = DictTranslator()
    chain = PromptTranslator(primary, cache=TranslationCache(tmp_path / "s.sqlite3"))
    text = "Cinematic lighting, 4K,  바다 위로 해가 진다, slow motion. 빨간 dress를 입은 여자가 웃는다"
    out = await chain.to_english(text)
    assert out.text == (
        "Cinematic lighting, 4K,  The sun sets over the sea, slow motion. A woman in a red dress smiles"
    )
    # Only the Korean clauses went to the translator; English words inside one stay as context.
    assert primary.calls == ["바다 위로 해가 진다", "빨간 dress를 입은 여자가 웃는다"]


async def test_cache_hits_and_survives_a_restart(tmp_path):
    db = tmp_path / "studio.sqlite3"
    primary = DictTranslator()
    chain = PromptTranslator(primary, cache=TranslationCache(db))
    await chain.to_english("고양이, 고양이, 바다 위로 해가 진다")
    await chain.to_english("바다 위로 해가 진다")
    assert primary.calls == ["고양이", "바다 위로 해가 진다"]  # each text once, ever
    chain.cache.close()

    # A new process: new objects, same database file.
    again = DictTranslator()
    chain2 = PromptTranslator(again, cache=TranslationCache(db))
    out = await chain2.to_english("바다 위로 해가 진다")
    assert out.text == "The sun sets over the sea"
    assert out.engines == ["cache:google"]
    assert again.calls == []
    assert chain2.cache.count() == 2


async def test_timeout_then_original_text_with_warning(tmp_path):
    primary = DictTranslator(delay_s=5.0)
    chain = PromptTranslator(
        primary, cache=TranslationCache(tmp_path / "s.sqlite3"), timeout_s=0.1, retries=1, backoff_s=0.01
    )
    started = time.monotonic()
    out = await chain.to_english("고양이가 창가에서 천천히 걸어간다")
    assert time.monotonic() - started < 2.0
    assert out.text == "고양이가 창가에서 천천히 걸어간다"
    assert out.engines == ["none"]
    assert len(out.warnings) == 1 and "번역" in out.warnings[0] and "translator" in out.warnings[0]
    assert len(primary.calls) == 2  # one try + one retry
    assert chain.cache.count() == 0  # a failure is never cached as a translation


async def test_timeout_falls_back_to_local_engine_and_cooldown_skips_primary(tmp_path):
    primary = DictTranslator(delay_s=5.0)
    local = DictTranslator(name="marian")
    chain = PromptTranslator(
        primary, local, TranslationCache(tmp_path / "s.sqlite3"), timeout_s=0.1, retries=0, cooldown_s=60
    )
    out = await chain.to_english("고양이가 창가에서 천천히 걸어간다")
    assert out.text == "A cat walks slowly by the window"
    assert out.engines == ["marian"]
    assert len(out.warnings) == 1 and "local" in out.warnings[0]
    # Within the cooldown the unreachable engine is not tried again.
    out2 = await chain.to_english("바다 위로 해가 진다")
    assert out2.engines == ["marian"]
    assert len(primary.calls) == 1


async def test_cooldown_ends_and_primary_is_tried_again(tmp_path):
    now = [0.0]
    primary = DictTranslator(fail=True)
    chain = PromptTranslator(primary, None, None, timeout_s=1, retries=0, cooldown_s=30, clock=lambda: now[0])
    await chain.to_english("고양이")
    await chain.to_english("고양이")
    assert len(primary.calls) == 1
    now[0] = 31.0
    primary.fail = False
    out = await chain.to_english("고양이")
    assert out.text == "cat" and len(primary.calls) == 2


def test_dict_translator_and_real_engines_share_the_interface(tmp_path):
    assert isinstance(DictTranslator(), Translator)
    assert isinstance(GoogleTranslator(timeout_s=1), Translator)
    assert isinstance(MarianTranslator(tmp_path), Translator)


# --- the real googletrans engine, on loopback ----------------------------------------------------
def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def test_googletrans_engine_unreachable_raises_translation_error():
    engine = GoogleTranslator(timeout_s=1.0, service_url=f"127.0.0.1:{_closed_port()}")
    try:
        with pytest.raises(TranslationError):
            await engine.translate("고양이")
    finally:
        await engine.aclose()


async def test_googletrans_engine_silent_server_times_out_into_warning(tmp_path):
    # A server that accepts connections and never answers: the blocked-network case.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_loop():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    engine = GoogleTranslator(timeout_s=0.3, service_url=f"127.0.0.1:{server.getsockname()[1]}")
    chain = PromptTranslator(
        engine, None, TranslationCache(tmp_path / "s.sqlite3"), timeout_s=0.3, retries=1, backoff_s=0.01
    )
    try:
        started = time.monotonic()
        out = await chain.to_english("바다 위로 해가 진다")
        assert time.monotonic() - started < 3.0
        assert out.text == "바다 위로 해가 진다" and out.engines == ["none"]
        assert out.warnings and accepted  # it really connected, and really gave up
        assert chain.calls["google"] == 2
    finally:
        await chain.aclose()
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


async def test_googletrans_engine_parses_the_service_answer():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        q = request.url.params["q"]
        body = [[[KO_EN[q], q, None, None, 10]], None, "ko"]
        return httpx.Response(200, text=json.dumps(body))

    engine = GoogleTranslator(timeout_s=1.0, transport=httpx.MockTransport(handler))
    try:
        assert await engine.translate("바다 위로 해가 진다") == "The sun sets over the sea"
    finally:
        await engine.aclose()
    assert seen[0].params["sl"] == "ko" and seen[0].params["tl"] == "en"


async def test_googletrans_engine_error_status_is_an_error_not_the_original_text():
    engine = GoogleTranslator(
        timeout_s=1.0, transport=httpx.MockTransport(lambda r: httpx.Response(429, text="slow down"))
    )
    try:
        with pytest.raises(TranslationError):
            await engine.translate("고양이")
    finally:
        await engine.aclose()


# --- the real MarianMT engine, tiny and random ---------------------------------------------------
def tiny_marian_dir(root: Path) -> Path:
    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    folder = root / "tiny-marian"
    folder.mkdir()
    corpus = [*KO_EN.keys(), *KO_EN.values(), "여자가 웃으며 고개를 돌린다"] * 10
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=proto,
        vocab_size=60,
        character_coverage=1.0,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    for name in ("source.spm", "target.spm"):
        (folder / name).write_bytes(proto.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    vocab = {"</s>": 0, "<unk>": 1, "<pad>": 2}
    for i in range(sp.get_piece_size()):
        vocab.setdefault(sp.id_to_piece(i), len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    MarianTokenizer(
        str(folder / "source.spm"),
        str(folder / "target.spm"),
        str(folder / "vocab.json"),
        source_lang="ko",
        target_lang="en",
    ).save_pretrained(str(folder))
    torch.manual_seed(0)
    config = MarianConfig(
        vocab_size=len(vocab),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=64,
        pad_token_id=2,
        eos_token_id=0,
        decoder_start_token_id=2,
        forced_eos_token_id=0,
    )
    MarianMTModel(config).save_pretrained(str(folder))
    return folder


async def test_unreachable_online_translator_falls_back_to_real_marian_model(tmp_path):
    marian = MarianTranslator(tiny_marian_dir(tmp_path), max_new_tokens=8)
    db = tmp_path / "s.sqlite3"
    chain = PromptTranslator(DictTranslator(fail=True), marian, TranslationCache(db), timeout_s=1.0, retries=0)
    out = await chain.to_english("바다 위로 해가 진다")
    assert out.engines == ["marian"]
    assert out.text.strip() and out.text != "바다 위로 해가 진다"
    assert len(out.warnings) == 1 and "로컬" in out.warnings[0]
    # The same model, asked again, is deterministic; and the cache answers without it.
    assert await marian.translate("바다 위로 해가 진다") == out.text
    again = await chain.to_english("바다 위로 해가 진다")
    assert again.engines == ["cache:marian"] and again.text == out.text
    await chain.aclose()


async def test_missing_marian_folder_is_a_translation_error(tmp_path):
    with pytest.raises(TranslationError):
        await MarianTranslator(tmp_path / "nope").translate("고양이")


# --- default prompts ---------------------------------------------------------------------------
def test_default_motion_prompt_follows_the_tags():
    assert default_motion_prompt(None, None, None) == GENERIC_MOTION_PROMPT
    faces = {"person": True, "face": True, "scene": "portrait", "style": "photo"}
    text = default_motion_prompt(faces, faces, 0.9)
    assert "expression" in text and text[0].isupper()
    land = {"person": False, "face": False, "scene": "landscape", "style": "photo"}
    assert "landscape" in default_motion_prompt(land, land, 0.9)
    assert "transformation" in default_motion_prompt(land, faces, 0.3)
    for t in (faces, land):
        assert not contains_hangul(default_motion_prompt(t, t, 0.5))
