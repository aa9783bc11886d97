"""Decoding and re-encoding an upload happens off the event loop: the loop keeps running while an
image is processed. Counted, not timed: a ticker task advances only when the loop is free."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
from PIL import Image

from backend.utils.config import Settings
from backend.web.uploads import UploadReceiver
from tests.helpers.images import encoded

BOUNDARY = "pool-boundary"


class RecordingReceiver(UploadReceiver):
    """Notes which thread stores each image and how often the loop ticked meanwhile."""

    ticks = 0

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.threads: list[int] = []
        self.ticks_during: list[int] = []

    def _store(self, part):
        self.threads.append(threading.get_ident())
        before = RecordingReceiver.ticks
        try:
            return super()._store(part)
        finally:
            self.ticks_during.append(RecordingReceiver.ticks - before)


def big_image() -> bytes:
    # Noise compresses badly, so the PNG re-encode takes a while even on a fast machine.
    rng = np.random.default_rng(3)
    return encoded(Image.fromarray(rng.integers(0, 255, (1200, 1600, 3), dtype=np.uint8)), "JPEG", quality=95)


def body(files: list[bytes]) -> bytes:
    out = b""
    for i, data in enumerate(files):
        out += (
            (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{i}.jpg"\r\n'
                f"Content-Type: image/jpeg\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    return out + f"--{BOUNDARY}--\r\n".encode()


async def receive_while_ticking(settings: Settings, payload: bytes) -> tuple[RecordingReceiver, int]:
    stop = asyncio.Event()

    async def ticker():
        while not stop.is_set():
            RecordingReceiver.ticks += 1
            await asyncio.sleep(0.002)

    async def chunks():
        for start in range(0, len(payload), 64 * 1024):
            yield payload[start : start + 64 * 1024]

    tick_task = asyncio.ensure_future(ticker())
    receiver = RecordingReceiver(settings)
    await receiver.receive(f"multipart/form-data; boundary={BOUNDARY}", chunks())
    stop.set()
    await tick_task
    return receiver, threading.get_ident()


def test_images_are_processed_off_the_event_loop(tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path, image_workers=2)
    receiver, loop_thread = asyncio.run(receive_while_ticking(settings, body([big_image(), big_image()])))
    assert len(receiver.stored) == 2
    assert all(t != loop_thread for t in receiver.threads), "decoded on the event loop's thread"
    assert all(n > 0 for n in receiver.ticks_during), receiver.ticks_during  # the loop ran meanwhile


def test_zero_workers_is_the_inline_reference(tmp_path):
    # The benchmark's reference path: on the loop, which cannot tick while an image is processed.
    settings = Settings(_env_file=None, data_dir=tmp_path, image_workers=0)
    receiver, loop_thread = asyncio.run(receive_while_ticking(settings, body([big_image()])))
    assert receiver.threads == [loop_thread] and receiver.ticks_during == [0]
