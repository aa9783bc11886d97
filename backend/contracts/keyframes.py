"""Keyframes inside one transition: an extra image the motion passes through at a time inside one
generation (eichi's section keyframes; Kling's and Pika's middle frames). Not an image added to the
storyboard: that makes two transitions, two generations that meet at the image with a seam.

An engine conditions at points of its own grid, so a keyframe's time snaps to the nearest point:
- FramePack: a section boundary (every 1.2 s; boundary b lies between sections b and b + 1). The
  section that ends there is sampled with the keyframe's VAE latent as its clean "next frame"
  anchor, the role the last image plays for the clip's last section, and with the keyframe's SigLIP
  embedding as its image embedding (`pipeline/framepack/sampling.py`).
- Wan: a latent frame (every 4 frames at 16 fps, 0.25 s); latent index k is pixel frame 4k, which
  goes into the first–last-frame conditioning video with its mask set (`pipeline/wan/wan_keyframes.py`).
The first and last points are the transition's own images, so a keyframe lands strictly between.

The rule is written once, here, so the job layer (which refuses and stores the placement) and the
page (which shows where a keyframe lands) cannot disagree. No torch; every layer may use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_PER_TRANSITION = 4  # a few: every keyframe pins the motion and costs a VAE/SigLIP encode


@dataclass(frozen=True)
class Grid:
    """The points an engine can condition a transition at: `points` + 1 of them, `step` seconds
    apart; point 0 is the first image, point `points` the last."""

    step: float  # seconds between two points
    points: int

    def snap(self, at: float) -> int:
        """The point nearest to `at` seconds (halves round up, as timed prompts round)."""
        return int(math.floor(at / self.step + 0.5 + 1e-9))

    def seconds(self, point: int) -> float:
        return round(point * self.step, 3)

    @property
    def inner(self) -> range:
        """The points a keyframe may land on: strictly between the two images."""
        return range(1, self.points)


@dataclass(frozen=True)
class Placed:
    """A keyframe as stored with a transition's planned parameters (`segment["keyframes"]`)."""

    image: str  # upload id
    at: float  # seconds, as asked
    point: int  # the grid point it lands on
    lands_at: float  # that point's time in seconds

    def to_dict(self) -> dict:
        return {"image": self.image, "at": self.at, "point": self.point, "lands_at": self.lands_at}
