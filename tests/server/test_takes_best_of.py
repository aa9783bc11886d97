"""Best of K in the job side: K takes per transition with their own seeds, each scored, the highest
overall score chosen. The morph engine ignores the seed, so here an engine that makes a different,
real clip per seed (the morph, the same morph held still then jumping, and one with a hard cut)
stands in for FramePack's seed-to-seed variety; the scorer sees real encoded files."""

from __future__ import annotations

import numpy as np

from backend.jobs.store import take_seed
from backend.pipeline.morph import morph_transition
from tests.helpers.inprocess import Studio
from tests.helpers.inprocess import per_pair as _per_pair
from tests.helpers.inprocess import studio_settings as _settings


class _SeededMorph:
    name = "morph"

    def describe(self) -> dict:
        return {"ready": True, "loaded": True, "reason": "test"}

    def generate(self, first, last, prompt, segment, params, progress, keyframes=()):
        clip = morph_transition(first, last, segment["frames"], progress)
        kind = segment["seed"] % 3
        if kind == 1:  # holds the first image, then jumps in the last few frames
            n = len(clip)
            held = np.concatenate([np.repeat(clip[:1], n - 4, axis=0), clip[-4:]])
            return held
        if kind == 2:  # a hard cut half-way: the second half reversed
            half = len(clip) // 2
            return np.concatenate([clip[:half], clip[half:][::-1]])
        return clip

    def release(self) -> None:
        pass


async def test_best_of_three_chooses_the_highest_score_and_the_user_can_override(tmp_path):
    settings = _settings(tmp_path)
    studio = Studio(settings, suggest=_per_pair(1.2, 1.2))
    studio.queue.engines._engines["morph"] = _SeededMorph()
    await studio.start()
    try:
        # seed 3: transition 1's takes are kinds 0, 1, 2 in some order of seeds; transition 2's too.
        job_id = await studio.submit(studio.upload(3), seed=3, takes_per_transition=3)
        job = (await studio.until(lambda: studio.events(job_id, "job.completed")))[0]["job"]
        for transition in job["transitions"]:
            takes = transition["takes"]
            assert [t["take"] for t in takes] == [1, 2, 3] and all(t["status"] == "done" for t in takes)
            seeds = [t["seed"] for t in takes]
            base = job["params"]["segments"][transition["index"]]["seed"]
            assert seeds == [take_seed(base, k) for k in (1, 2, 3)] and len(set(seeds)) == 3
            assert sorted(s % 3 for s in seeds) == [0, 1, 2]
            overall = {t["take"]: t["overall"] for t in takes}
            best = max(overall, key=overall.get)
            assert transition["chosen"] == best and len(set(overall.values())) == 3, overall
            # The plain morph wins over the held-then-jump and the cut clips.
            assert [t["seed"] % 3 for t in takes if t["take"] == best] == [0]
            flags = {t["seed"] % 3: t["score"]["flags"] for t in takes}
            assert flags[1] and flags[2], flags
        # Three takes of each transition were made, one segment event each.
        assert len(studio.events(job_id, "job.segment")) == 6

        # The user's pick overrides the score's.
        other = next(t["take"] for t in job["transitions"][0]["takes"] if not t["chosen"])
        view = await studio.queue.choose_take(job_id, 0, other)
        assert view.transitions[0].chosen == other
        assert studio.store.segments(job_id)[0]["path"].endswith(
            "segment_000.mp4" if other == 1 else f"segment_000_take_{other}.mp4"
        )
    finally:
        await studio.stop()
