"""Face restoration: RetinaFace finds faces and 5 landmarks, CodeFormer restores them.

Each face is aligned to the 512x512 FFHQ template by a similarity transform from its landmarks,
all faces of a chunk go through the restorer as one batch, and each result is warped back to
where it came from and blended with a feathered mask (made once in template space, so it follows
the face's rotation and scale for free). Frames without faces are returned as they came.

The detector and the restorer are small interfaces (`FaceDetector.detect`, a callable on
(k,3,512,512) tensors in [-1,1]) so the geometry can be checked with a known restorer, and the
real ones load published checkpoints strictly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from backend.utils.progress import Progress, ProgressCallback, ignore_progress

FACE_SIZE = 512
# Eye centres, nose tip and mouth corners of the FFHQ-aligned 512x512 face (the template that
# CodeFormer was trained on).
FACE_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    np.float32,
)
# Crops reaching past the frame edge are filled with a neutral grey, not stretched edges.
_BORDER_FILL = (135, 133, 132)


@dataclass(frozen=True)
class Face:
    score: float
    box: np.ndarray  # x0, y0, x1, y1 in frame pixels
    landmarks: np.ndarray  # (5, 2): left eye, right eye, nose, left mouth, right mouth


class FaceDetector(Protocol):
    def detect(self, frames: np.ndarray) -> list[list[Face]]: ...


Restorer = Callable[[torch.Tensor], torch.Tensor]


# --- geometry --------------------------------------------------------------------------------


def alignment_matrix(landmarks: np.ndarray) -> np.ndarray:
    """2x3 similarity transform taking the frame's landmarks onto the 512 template."""
    matrix, _ = cv2.estimateAffinePartial2D(
        np.asarray(landmarks, np.float32).reshape(5, 2), FACE_TEMPLATE_512, method=cv2.LMEDS
    )
    if matrix is None:  # degenerate landmarks (all on one point): no usable alignment
        raise ValueError("landmarks do not define a face alignment")
    return matrix


def align_face(frame: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return cv2.warpAffine(
        frame,
        matrix,
        (FACE_SIZE, FACE_SIZE),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=_BORDER_FILL,
    )


def _feather_mask(feather: int = 24) -> np.ndarray:
    """1 inside the template square, falling smoothly to 0 over `feather` px at its border."""
    mask = np.zeros((FACE_SIZE, FACE_SIZE), np.float32)
    mask[feather:-feather, feather:-feather] = 1.0
    return cv2.GaussianBlur(mask, (0, 0), feather / 2.5)


_MASK = _feather_mask()


def paste_face(frame: np.ndarray, face: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Blends a 512x512 `face` (aligned with `matrix`) back into `frame` (in place; returned)."""
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0, 1], [FACE_SIZE, 0, 1], [0, FACE_SIZE, 1], [FACE_SIZE, FACE_SIZE, 1]], np.float32)
    quad = corners @ inverse.T
    h, w = frame.shape[:2]
    x0, y0 = (max(0, int(np.floor(v))) for v in quad.min(axis=0))
    x1, y1 = int(min(w, np.ceil(quad[:, 0].max()))), int(min(h, np.ceil(quad[:, 1].max())))
    if x1 <= x0 or y1 <= y0:
        return frame
    # Warp only into the face's bounding box: the rest of the frame is never touched.
    local = inverse.copy()
    local[:, 2] -= (x0, y0)
    size = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(face, local, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(_MASK, local, size, flags=cv2.INTER_LINEAR, borderValue=0)[..., None]
    roi = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = np.clip(alpha * warped + (1.0 - alpha) * roi + 0.5, 0, 255).astype(np.uint8)
    return frame


# --- detector --------------------------------------------------------------------------------


class RetinaFaceDetector:
    """facexlib's RetinaFace (ResNet-50) run batched; frames are shrunk to `max_side` to detect."""

    def __init__(self, net, conf_threshold: float = 0.9, max_side: int = 640, batch_size: int = 8) -> None:
        self.net = net.eval()
        self.device = next(net.parameters()).device
        self.conf_threshold = conf_threshold
        self.max_side = max_side
        self.batch_size = batch_size

    @classmethod
    def from_checkpoint(cls, path: Path, device: torch.device | str = "cpu", **kwargs) -> RetinaFaceDetector:
        from facexlib.detection.retinaface import RetinaFace

        device = torch.device(device)
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        # The published file was saved from a DataParallel wrapper: keys start with `module.`.
        state = {k.removeprefix("module."): v for k, v in state.items()}
        net = RetinaFace(network_name="resnet50", half=False, device=device)
        net.load_state_dict(state, strict=True)
        return cls(net.to(device), **kwargs)

    @torch.inference_mode()
    def detect(self, frames: np.ndarray) -> list[list[Face]]:
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        results: list[list[Face]] = []
        h, w = frames.shape[1:3]
        ratio = min(1.0, self.max_side / max(h, w))
        for start in range(0, len(frames), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(frames[start : start + self.batch_size])).to(self.device)
            x = x.permute(0, 3, 1, 2).float()
            if ratio < 1.0:
                x = F.interpolate(x, scale_factor=ratio, mode="bilinear", antialias=True, align_corners=False)
            bgr = x.flip(1).permute(0, 2, 3, 1).contiguous()  # facexlib wants (n,h,w,c) BGR floats
            boxes, landmarks = self.net.batched_detect_faces(bgr, conf_threshold=self.conf_threshold)
            for frame_boxes, frame_marks in zip(boxes, landmarks):
                faces = []
                for box, marks in zip(np.asarray(frame_boxes).reshape(-1, 5), np.asarray(frame_marks).reshape(-1, 10)):
                    faces.append(Face(float(box[4]), box[:4] / ratio, marks.reshape(5, 2) / ratio))
                results.append(faces)
        return results


# --- restorer --------------------------------------------------------------------------------


class CodeFormerRestorer:
    """CodeFormer loaded through spandrel (+ extra arches); `fidelity` is its weight w."""

    def __init__(
        self, descriptor, fidelity: float = 0.7, device: torch.device | str = "cpu", half: bool = False
    ) -> None:
        self.device = torch.device(device)
        # CodeFormer is not fp16-safe (spandrel marks it so); bf16 is its reduced precision. The
        # weights stay fp32 and bf16 runs under autocast: its codebook lookup multiplies a float32
        # one-hot by the codebook, which fails when the weights themselves are cast (seen on an H100).
        self.autocast = bool(half and self.device.type == "cuda")
        self.dtype = torch.float32
        self.model = descriptor.model.to(self.device, self.dtype).eval()
        self.fidelity = float(fidelity)

    @classmethod
    def from_checkpoint(cls, path: Path, **kwargs) -> CodeFormerRestorer:
        from backend.pipeline.upscaler import load_spandrel

        return cls(load_spandrel(path, expected_arch="CodeFormer"), **kwargs)

    @torch.inference_mode()
    def __call__(self, faces: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
            out = self.model(faces.to(self.device, self.dtype), weight=self.fidelity)[0]
        return out.float().clamp_(-1, 1)


# --- the stage -------------------------------------------------------------------------------


class FaceRestorer:
    def __init__(
        self,
        detector: FaceDetector,
        restorer: Restorer,
        device: torch.device | str = "cpu",
        batch_size: int = 8,
    ) -> None:
        self.detector = detector
        self.restorer = restorer
        self.device = torch.device(device)
        self.batch_size = max(1, batch_size)
        self.faces_restored = 0
        self.frames_with_faces = 0

    def process(self, frames: np.ndarray, progress: ProgressCallback = ignore_progress) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        detections = self.detector.detect(frames)
        return self.restore_with(frames, detections, progress)

    def restore_with(
        self, frames: np.ndarray, detections: Sequence[Sequence[Face]], progress: ProgressCallback = ignore_progress
    ) -> np.ndarray:
        """Restores the given faces; frames with none are returned unchanged (same bytes)."""
        items: list[tuple[int, np.ndarray]] = []
        for index, faces in enumerate(detections):
            for face in faces:
                try:
                    items.append((index, alignment_matrix(face.landmarks)))
                except ValueError:
                    continue
        if not items:
            return frames
        out = frames.copy()
        for start in range(0, len(items), self.batch_size):
            batch = items[start : start + self.batch_size]
            crops = np.stack([align_face(frames[i], m) for i, m in batch])
            x = torch.from_numpy(crops).to(self.device).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
            y = self.restorer(x)
            restored = ((y.float().clamp(-1, 1) + 1.0) * 127.5).round_().to(torch.uint8)
            restored = restored.permute(0, 2, 3, 1).cpu().numpy()
            for (i, matrix), face in zip(batch, restored):
                paste_face(out[i], face, matrix)
            progress(
                Progress(
                    "face_restore",
                    (start + len(batch)) / len(items),
                    "CodeFormer",
                    {"faces": start + len(batch), "total": len(items)},
                )
            )
        self.faces_restored += len(items)
        self.frames_with_faces += len({i for i, _ in items})
        return out
