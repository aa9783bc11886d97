"""The embedded studio's workers: the engines of this process, on the job's lane thread."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from backend.jobs.cluster.task import CancelToken, TransitionTask
from backend.pipeline.engines import Engines
from backend.utils.config import Settings
from backend.utils.progress import ProgressCallback


class LocalWorkers:
    parallel = 1

    def __init__(self, settings: Settings, engines: Engines) -> None:
        self.settings = settings
        self.engines = engines

    def start(self) -> None:
        """Nothing to start: the engines load on first use."""

    def stop(self) -> None:
        """Nothing to stop: the lanes' threads end with the queue."""

    def view(self) -> dict:
        return {"mode": "embedded", "address": None, "error": None, "workers": []}

    def before_job(self, engine: str) -> None:
        self.engines.before_job(engine)

    def admit(self, job_id: str, created_at: float, takes: Sequence[tuple[int, int]], token: CancelToken) -> None:
        """No line: one take at a time, on the job's own thread."""

    def generate(self, task: TransitionTask, report: ProgressCallback, token: CancelToken) -> np.ndarray:
        engine = self.engines.get(task.engine)
        return engine.generate(
            task.first, task.last, task.prompt, task.segment, task.params, report, keyframes=task.keyframes
        )

    def postprocess(
        self,
        order: tuple,
        src: Path,
        dst: Path,
        options: dict,
        report: ProgressCallback,
        token: CancelToken,
        crf: int,
        metadata: dict,
    ) -> dict:
        from backend.pipeline.postprocess import run_postprocess

        return run_postprocess(src, dst, options, self.settings, report, crf=crf, metadata=metadata)
