"""Keyframes inside one Wan transition (`contracts/keyframes.py`): an image at latent frame k.

diffusers' `WanImageToVideoPipeline.prepare_latents` builds the first–last-frame condition as a
video [first image, zeros, …, last image], VAE-encodes it, and prepends a mask that is 1 on the
frames that are given. A keyframe at latent index k is pixel frame 4k: it goes into that video
before the encode and its mask is set, exactly as the last image is given. For frame 4k the mask
is the fourth of latent k's four mask channels, as it is for the last image (frame 4(L - 1)).

Honestly: Wan 2.1 FLF2V was trained with the first and last frame only. The code path takes a middle
frame without change (the transformer reads mask + latent channels per latent frame, whatever the
index), and ComfyUI's first–middle–last-frame nodes condition Wan this way, but the model never saw
a middle frame in training: how closely the motion keeps to it is the model's, not guaranteed.
The CLIP image embedding stays first + last (the FLF2V image embedder has a fixed length of two
images). A model that conditions on the first image only (`expand_timesteps`, Wan 2.2 TI2V 5B)
cannot take a keyframe and refuses it.

This wraps the pipeline's own `prepare_latents` for one call (its noise draw, normalisation and
mask layout stay diffusers'): during it the VAE's `encode` sees the keyframes written into the
condition video. No keyframe: nothing is wrapped, so the call is the plain pipeline's.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Sequence

import numpy as np

from backend.contracts.errors import StudioError


class WanKeyframesUnsupported(StudioError, ValueError):
    """The loaded Wan model conditions on its first image only."""


@contextlib.contextmanager
def keyframes_in(pipe, images: Sequence[np.ndarray], points: Sequence[int]) -> Iterator[None]:
    """While active, `pipe`'s latent preparation puts each image at latent index `points[i]`."""
    if len(images) != len(points):
        raise ValueError(f"{len(images)} keyframe images for {len(points)} placed keyframes")
    if not images:
        yield
        return
    if getattr(pipe.config, "expand_timesteps", False):
        raise WanKeyframesUnsupported("wan_keyframes_unsupported_model")
    original = pipe.prepare_latents
    signature = inspect.signature(original)
    stride = pipe.vae_scale_factor_temporal

    def prepare(*args, **kwargs):
        given = signature.bind(*args, **kwargs)
        given.apply_defaults()
        a = given.arguments
        frames, height, width = int(a["num_frames"]), int(a["height"]), int(a["width"])
        if a.get("last_image") is None:
            raise ValueError("a Wan keyframe needs the first–last-frame call (a last image)")
        latent_frames = (frames - 1) // stride + 1
        for point in points:
            if not 1 <= point < latent_frames - 1:
                raise ValueError(f"a keyframe lands on latent 1..{latent_frames - 2}, not {point}")
        pixels = [_pixels(pipe, image, height, width) for image in images]
        real_encode = pipe.vae.encode

        def encode(video, *e_args, **e_kwargs):
            if video.shape[2] == frames:  # the condition video; write each keyframe at its frame
                video = video.clone()
                for image, point in zip(pixels, points):
                    video[:, :, stride * point] = image.to(device=video.device, dtype=video.dtype)
            return real_encode(video, *e_args, **e_kwargs)

        pipe.vae.encode = encode
        try:
            latents, condition = original(*args, **kwargs)
        finally:
            del pipe.vae.encode
        for point in points:  # mask channel (stride - 1) of latent `point` is pixel frame stride·point
            condition[:, stride - 1, point] = 1
        return latents, condition

    pipe.prepare_latents = prepare
    try:
        yield
    finally:
        del pipe.prepare_latents


def _pixels(pipe, image: np.ndarray, height: int, width: int):
    """A keyframe preprocessed as the pipeline preprocesses its first and last image: (1, 3, H, W)."""
    import torch
    from PIL import Image

    return pipe.video_processor.preprocess(Image.fromarray(image), height=height, width=width)[0].to(torch.float32)
