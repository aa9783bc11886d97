"""Runs one job from its stored state to its final video, on the GPU worker thread.

Every finished take is written to disk and marked in SQLite before the next one starts, so a
job that is interrupted (crash, kill, restart) resumes at the first take not yet done. Stages
report through the one `ProgressCallback`; this module turns those reports into job state,
preview files and WebSocket events, and raises `JobCancelled` from the callback when asked to stop.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from backend.contracts.errors import InputMissing, JobError
from backend.contracts.events import JobEvent, JobPreviewEvent, JobSegmentEvent, JobWarningEvent
from backend.contracts.models import SegmentStatus, TakeStatus
from backend.jobs.cluster.local import LocalWorkers
from backend.jobs.cluster.task import CancelToken, TransitionTask, Workers
from backend.jobs.composer import composer_settings
from backend.jobs.params import FPS
from backend.jobs.reporter import JobHooks, Reporter
from backend.jobs.store import Store
from backend.pipeline.concatenator import SegmentJoiner, join_segments
from backend.pipeline.engines import Engines
from backend.pipeline.preprocessor import fit_image
from backend.pipeline.scores import TakeScorer, score_seam_files
from backend.utils.config import Settings
from backend.utils.daemon_executor import DaemonExecutor
from backend.utils.files import (
    FINAL_NAME,
    JOINED_NAME,
    WAITING_GLOB,
    is_preview,
    output_dir,
    output_url,
    partial_path,
    preview_path,
    resolve_stored,
    stored_path,
    tagged_path,
    take_path,
    unfinished_files,
    upload_path,
    waiting_path,
)
from backend.utils.images import load_rgb
from backend.utils.progress import JobCancelled, Progress
from backend.utils.video_io import VideoWriter, copy_with_metadata, iter_frames, probe

log = logging.getLogger(__name__)

# Share of the job's progress bar each phase fills.
WEIGHTS_PLAIN = {"generate": 0.95, "join": 0.05, "postprocess": 0.0}
WEIGHTS_POST = {"generate": 0.75, "join": 0.05, "postprocess": 0.20}
PREVIEW_CRF = 23


class JobRunner:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        engines: Engines,
        publish: Callable[[JobEvent], None],
        workers: Workers | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.engines = engines
        self.publish = publish
        self.workers: Workers = workers or LocalWorkers(settings, engines)

    def reporter(
        self, job_id: str, token: CancelToken, start: float, weights: dict[str, float], transition_weights: list[float]
    ) -> Reporter:
        """The reporter of one run of a job: its stages' reports become the job's progress."""
        hooks = JobHooks(self.publish, self.store.update_job, self.warn, self.write_preview)
        return Reporter(job_id, token, hooks, start, weights, transition_weights)

    def warn(self, job_id: str, message: str) -> None:
        job = self.store.get_job(job_id) or {}
        self.store.update_job(job_id, warnings=(job.get("warnings") or []) + [message])
        self.publish(JobWarningEvent(job_id=job_id, message=message))

    # --- files --------------------------------------------------------------------------------
    def write_preview(self, job_id: str, index: int, section: int, frames: np.ndarray) -> None:
        # At the engine's own rate (FramePack 30 fps, Wan 16), as the take files are.
        fps = ((self.store.get_job(job_id) or {}).get("params") or {}).get("fps") or FPS
        path = preview_path(output_dir(self.settings, job_id), index, section)
        with VideoWriter(path, fps, crf=PREVIEW_CRF, preset="veryfast") as writer:
            writer.write(frames)
        self.show_preview(job_id, index, section, path)

    def show_preview(self, job_id: str, segment: int, section: int, path: Path) -> None:
        old = (self.store.get_job(job_id) or {}).get("preview_path")
        new = stored_path(self.settings, path)
        self.store.update_job(job_id, preview_path=new)
        if old and old != new and is_preview(old):
            # only the newest preview is worth the disk
            resolve_stored(self.settings, old).unlink(missing_ok=True)
        self.publish(
            JobPreviewEvent(job_id=job_id, segment=segment + 1, section=section, url=output_url(self.settings, path))
        )

    def _load_frames(self, job: dict, params: dict) -> list[np.ndarray]:
        width, height, fit = params["width"], params["height"], params.get("fit", "crop")
        frames = []
        for upload_id in job["request"]["images"]:
            path = upload_path(self.settings, upload_id)
            if not path.exists():
                log.error("job %s: input image %s is missing (%s)", job.get("id"), upload_id, path)
                raise InputMissing("input_image_missing", upload_id=upload_id)
            frames.append(fit_image(load_rgb(path), width, height, fit))
        if params.get("loop"):
            # The wrap transition (last image → first) reads frames[index + 1] like any other.
            frames.append(frames[0])
        return frames

    def _load_keyframes(self, job: dict, seg: dict, params: dict) -> tuple[np.ndarray, ...]:
        """The take's keyframe images (`seg["keyframes"]`, in time order) at the job's bucket, fitted
        as its own images are."""
        width, height, fit = params["width"], params["height"], params.get("fit", "crop")
        out = []
        for keyframe in seg.get("keyframes") or []:
            path = upload_path(self.settings, keyframe["image"])
            if not path.exists():
                log.error("job %s: keyframe image %s is missing (%s)", job.get("id"), keyframe["image"], path)
                raise InputMissing("input_image_missing", upload_id=keyframe["image"])
            out.append(fit_image(load_rgb(path), width, height, fit))
        return tuple(out)

    # --- takes --------------------------------------------------------------------------------
    def _take_ready(self, take: dict) -> bool:
        return (
            take["status"] == TakeStatus.done
            and bool(take.get("path"))
            and resolve_stored(self.settings, take["path"]).exists()
        )

    def _make_take(
        self,
        job: dict,
        index: int,
        take: dict,
        frames: list[np.ndarray],
        prompts: list[dict],
        params: dict,
        report: Reporter,
        token: CancelToken,
    ) -> np.ndarray:
        """Generates one take, writes it under a partial name, scores the written file, and moves
        it into place with its score in the file's tags; the row says `done` only after that. A take
        cut off half-way is `running` in the store and is made again from its parameters; making it
        again overwrites the same files, so a retried take never leaves two."""
        job_id = job["id"]
        k = take["take"]
        seg = dict(params["segments"][index], **(take.get("params") or {}))
        prompt = (seg.get("prompt_english") or take.get("prompt")) if take.get("prompt") else None
        if prompt is None:
            prompt = prompts[index]["english"] if index < len(prompts) else ""
        self.store.set_take(job_id, index, k, TakeStatus.running)
        self.store.set_segment(job_id, index, SegmentStatus.running)
        task = TransitionTask(
            job_id=job_id,
            created_at=float(job.get("created_at") or 0.0),
            index=index,
            take=k,
            engine=job["engine"],
            first=frames[index],
            last=frames[index + 1],
            prompt=prompt or "",
            segment=seg,
            params=params,
            keyframes=self._load_keyframes(job, seg, params),
        )
        report.begin(index)
        made = False
        path = take_path(output_dir(self.settings, job_id), index, k)
        partial, tagged = partial_path(path), tagged_path(path)
        try:
            clip = self.workers.generate(task, report.for_transition(index), token)
            with VideoWriter(partial, params["fps"], crf=max(0, params["crf"] - 4), preset="veryfast") as writer:
                writer.write(clip)
            score = self._score(partial, frames[index], frames[index + 1], params["fps"], token)
            summary = {"job": job_id, "transition": index + 1, "take": k, "seed": seg.get("seed"), **score.summary()}
            if seg.get("loras"):  # the LoRAs and weights this take was made with
                summary["loras"] = seg["loras"]
            copy_with_metadata(partial, tagged, {"comment": json.dumps(summary, ensure_ascii=False)})
            tagged.replace(path)
            partial.unlink(missing_ok=True)
            made = True
        except JobCancelled:
            self.store.set_take(job_id, index, k, TakeStatus.pending)
            raise
        except BaseException:
            self.store.set_take(job_id, index, k, TakeStatus.failed)
            raise
        finally:
            report.end(index, made)
            if not made:  # a take cut off mid-write leaves no half file behind
                for leftover in (partial, tagged):
                    leftover.unlink(missing_ok=True)
        self.store.set_take(
            job_id, index, k, TakeStatus.done, stored_path(self.settings, path), len(clip), score.to_dict()
        )
        self.publish(
            JobSegmentEvent(
                job_id=job_id,
                segment=index + 1,
                segments=len(params["segments"]),
                url=output_url(self.settings, path),
                take=k,
                overall=score.overall,
            )
        )
        self.show_preview(job_id, index, seg.get("sections") or 1, path)
        return clip

    def _make_parallel(
        self,
        job: dict,
        todo: dict[int, list[dict]],
        frames: list[np.ndarray],
        prompts: list[dict],
        params: dict,
        report: Reporter,
        token: CancelToken,
        joiner: SegmentJoiner | None,
    ) -> None:
        """Every pending take at once, as many in flight as the workers allow; which runs first is
        the workers' rule (the Ray pool: the oldest job's, in transition order). Takes are picked
        and joined in transition order as they arrive; a clip that arrives before its turn waits
        on disk, losslessly, so the video is frame for frame the one made one take at a time."""
        job_id = job["id"]
        siblings = token.child()  # set to stop the other takes when one fails
        folder = output_dir(self.settings, job_id)
        pending = [(i, take) for i in sorted(todo) for take in todo[i]]
        # Every take joins the workers' line at once, before any can be handed a worker: a later
        # job's take must not slip in while this job's threads are still starting.
        self.workers.admit(job_id, float(job.get("created_at") or 0.0), [(i, t["take"]) for i, t in pending], siblings)
        left = {i: len(todo[i]) for i in todo}
        made: dict[int, list[int]] = {i: [] for i in todo}
        waiting: dict[int, np.ndarray | Path] = {}
        turn = 0
        errors: list[BaseException] = []
        # A thread per take, so every take waits in the workers' line at once: with fewer, a job's
        # later takes would queue behind its own encodes while another job's took the worker.
        pool = DaemonExecutor(f"job-{job_id[:8]}", threads=len(pending))
        try:
            futures = {
                pool.submit(self._make_take, job, i, take, frames, prompts, params, report, siblings): (i, take)
                for i, take in pending
            }
            for future in concurrent.futures.as_completed(futures):
                i, take = futures[future]
                try:
                    clip = future.result()
                except BaseException as exc:  # noqa: BLE001 - the first failure ends the job, after the rest stop
                    if not isinstance(exc, JobCancelled) or not errors:
                        errors.append(exc)
                    siblings.set("abort")
                    continue
                if errors:
                    continue
                left[i] -= 1
                made[i].append(take["take"])
                if joiner is not None:
                    if i == turn:
                        waiting[i] = clip
                    else:
                        spill = waiting_path(folder, i)
                        np.save(spill, clip)
                        waiting[i] = spill
                while turn < len(todo) and left[turn] == 0:
                    self._pick(job_id, turn, made[turn])
                    if joiner is not None:
                        item = waiting.pop(turn)
                        if isinstance(item, Path):
                            clip = np.load(item)
                            item.unlink(missing_ok=True)
                            item = clip
                        joiner.add(item, starts_segment=True)
                    turn += 1
        finally:
            pool.shutdown(wait=False)
            for item in waiting.values():
                if isinstance(item, Path):
                    item.unlink(missing_ok=True)
        if token.event.is_set():
            raise JobCancelled(token.reason)
        failures = [e for e in errors if not isinstance(e, JobCancelled)]
        if failures or errors:
            raise (failures or errors)[0]

    @staticmethod
    def _score(path: Path, start: np.ndarray, target: np.ndarray, fps: float, token: CancelToken):
        """`score_take_file`, looking at the cancel token between chunks: a long take takes
        seconds to score, and a cancel or a shutdown must not wait for it."""
        scorer = TakeScorer(start, target, fps)
        for chunk in iter_frames(path, chunk_size=16):
            if token.event.is_set():
                raise JobCancelled(token.reason)
            scorer.add(chunk)
        return scorer.finish()

    def _pick(self, job_id: str, index: int, made: list[int]) -> None:
        """The best-scoring of the takes just made becomes the pick; with none made, the pick
        stays (or, with none, the best finished take is chosen)."""
        rows = [t for t in self.store.takes(job_id, index) if self._take_ready(t)]
        if not rows:
            raise RuntimeError(f"transition {index + 1} has no finished take")
        chosen = next((t for t in rows if t["chosen"]), None)
        pool = [t for t in rows if t["take"] in made] or ([] if chosen else rows)
        if pool:
            chosen = max(pool, key=lambda t: ((t.get("score") or {}).get("overall") or -1.0, -t["take"]))
        assert chosen is not None  # rows is not empty: either the pick stays or the pool had takes
        self.store.choose_take(job_id, index, chosen["take"])

    def _seams(self, paths: list[Path], fps: float, loop: bool = False) -> list[dict]:
        """Seam i + 1 joins transition i to i + 1; a loop adds the wrap (the last transition into
        the first, where the player goes round), scored the same way: the joined video drops the
        last take's final frame there as it drops every shared keyframe."""
        seams = []
        ends = len(paths) if loop and len(paths) > 1 else len(paths) - 1
        for i in range(ends):
            try:
                seam = score_seam_files(paths[i], paths[(i + 1) % len(paths)], fps).to_dict()
            except ValueError as exc:  # a take too short to have a seam window
                log.warning("seam %d not scored: %s", i + 1, exc)
                seam = None
            seams.append({"index": i + 1, "score": seam})
        return seams

    # --- the job ------------------------------------------------------------------------------
    def run(self, job_id: str, token: CancelToken, make_takes: bool = True) -> None:
        """Makes the job's takes still to make (none with `make_takes` False: a rebuild), joins the
        chosen ones, post-processes, and stores the final file."""
        job = self.store.get_job(job_id)
        if job is None:
            return
        params = job["params"]
        request = job["request"]
        post = request.get("postprocess") or {"mode": "off"}
        posting = post.get("mode", "off") != "off"
        weights = WEIGHTS_POST if posting else WEIGHTS_PLAIN
        seg_params = params["segments"]
        # A transition's share of the work: its sections (FramePack), else its frames (Wan, morph-like).
        cost = [s.get("sections") or s["frames"] for s in seg_params]
        transition_weights = [c / sum(cost) for c in cost]
        report = self.reporter(job_id, token, job.get("progress") or 0.0, weights, transition_weights)
        folder = output_dir(self.settings, job_id)
        folder.mkdir(parents=True, exist_ok=True)
        # What a run cut off (kill -9) left: clips held for its join, files half written.
        for stale in [*folder.glob(WAITING_GLOB), *unfinished_files(folder)]:
            stale.unlink(missing_ok=True)

        frames = self._load_frames(job, params)
        prompts = job.get("prompts") or []
        joined = folder / (JOINED_NAME if posting else FINAL_NAME)
        metadata = {
            "title": "FramePack Video Studio",
            "comment": json.dumps({"prompts": prompts, "seed": params["seed"]}, ensure_ascii=False),
            "studio_params": params,
            "studio_prompts": [p.get("english") for p in prompts],
            "studio_job": job_id,
            # What the composer held, so a dropped video gives it back (settings from a video).
            "studio_settings": composer_settings(request),
        }
        takes = {i: self.store.takes(job_id, i) for i in range(len(seg_params))}
        for i, rows in takes.items():
            if not rows:  # a transition with no take row (never expected): its first take now
                self.store.add_take(job_id, i, dict(seg_params[i]))
                takes[i] = self.store.takes(job_id, i)
        # Each transition's LoRAs as its chosen (else newest) take has them, beside the job's plan.
        metadata["studio_loras"] = [
            (next((t for t in rows if t.get("chosen")), rows[-1])["params"] or {}).get("loras", []) if rows else []
            for rows in takes.values()
        ]
        # Pending and half-made takes are made; a failed take (or a finished one whose file is gone)
        # only when its transition has no take ready, so a rebuild never regenerates.
        todo = {}
        for i, rows in takes.items():
            ready = [t for t in rows if self._take_ready(t)]
            todo[i] = [
                t
                for t in rows
                if t not in ready and (t["status"] in (TakeStatus.pending, TakeStatus.running) or not ready)
            ]
        if not make_takes:
            missing = [i for i, rows in takes.items() if not any(self._take_ready(t) for t in rows)]
            if missing:
                raise JobError("job_not_rebuildable", job_id=job_id, index=missing[0])
            todo = {i: [] for i in takes}
        fresh = all(todo[i] == takes[i] for i in takes)
        # A job run start to finish with one take per transition encodes its video as the segments
        # come; otherwise (a resume, a re-roll, best of K) the chosen takes' files are joined at the end.
        single = all(len(rows) == 1 for rows in takes.values())
        loop = bool(params.get("loop"))
        joiner = SegmentJoiner(joined, params["fps"], params["crf"], metadata, loop=loop) if fresh and single else None
        for i in range(len(seg_params)):
            if not todo[i]:
                report.fractions[i] = 1.0  # made before this run
        try:
            if self.workers.parallel > 1 and sum(len(t) for t in todo.values()) > 1:
                self._make_parallel(job, todo, frames, prompts, params, report, token, joiner)
            else:
                for index in range(len(seg_params)):
                    report.transition = index
                    made = []
                    for take in todo[index]:
                        clip = self._make_take(job, index, take, frames, prompts, params, report, token)
                        made.append(take["take"])
                        if joiner is not None:
                            joiner.add(clip, starts_segment=True)
                    self._pick(job_id, index, made)
            # No engine.release() here: the model and its allocator cache serve the next job as
            # they are, and a gc pass holds the GIL long enough to stall the event loop (0.3 s).
            report.transition = len(seg_params)
            paths = [resolve_stored(self.settings, s["path"]) for s in self.store.segments(job_id)]
            if joiner is not None:
                joiner.finish()
                joiner = None
                report(Progress("join", 1.0, "joined"))
            else:
                join_segments(paths, joined, params["fps"], params["crf"], metadata, report, loop=loop)
        finally:
            if joiner is not None:
                joiner.abandon()
        self.store.update_job(job_id, seams=self._seams(paths, params["fps"], loop))
        # A re-roll with another length, or another choice, changes the joined length: the stored
        # parameters say what the video now is, not what the first run planned.
        joined_frames = probe(joined).frames
        if joined_frames and joined_frames != params.get("total_frames"):
            params = {**params, "total_frames": joined_frames, "total_seconds": round(joined_frames / params["fps"], 3)}
            self.store.update_job(job_id, params=params)
        final, post_report = joined, None
        if posting:
            final = folder / FINAL_NAME
            order = (float(job.get("created_at") or 0.0), job_id, float("inf"), 0)
            post_report = self.workers.postprocess(order, joined, final, post, report, token, params["crf"], metadata)
        info = probe(final)
        self.store.update_job(
            job_id,
            video_path=stored_path(self.settings, final),
            postprocess_report=post_report,
            progress=1.0,
            stage="done",
            current={"frames": info.frames, "fps": info.fps, "width": info.width, "height": info.height},
        )
