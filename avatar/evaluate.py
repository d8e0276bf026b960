"""Held-out quality of a trained avatar, pictures to look at, and the reconstruction video.

Metrics are computed on held-out frames only (never trained on): the render is composited over the clip's
background plate and compared with the real frame inside the head region: the pixels whose selfie matte is
above 0.5 inside the head box, the box of the tracked face landmarks widened by 25 % of its width on each side
(ears), 35 % of its height above (hair) and 10 % below (chin), so shoulders and suit do not count.
PSNR is over those pixels; SSIM is the mean of the SSIM map over them; psnr_mouth is the PSNR inside the mouth
box (`mouth_box`: lips, corners, teeth; a few hundred pixels, so the head's number hides it). Render FPS is the
rate of bind + render (no gradients) at the avatar's resolution, after one untimed warm-up frame.
"""
from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from audio.io import write_wav_pcm16
from avatar.losses import psnr, ssim_map
from avatar.train import TrainingData, render_frame

MATTE_THRESHOLD = 0.5
HEAD_BOX_MARGINS = (0.25, 0.35, 0.25, 0.10)  # left, top, right, bottom as fractions of the landmark box
# the mouth box: the lips' box (their 40 landmarks, the outer contours outermost) widened by these fractions of
# its width (sides; above and below)
MOUTH_BOX_MARGINS = (0.1, 0.15)


def head_box(landmarks_2d: Tensor) -> Tensor:
    """[..., 478, 2] pixel landmarks -> [..., 4] head box x0, y0, x1, y1 (see the module docstring)."""
    low, high = landmarks_2d.amin(-2), landmarks_2d.amax(-2)
    size = high - low
    left, top, right, bottom = HEAD_BOX_MARGINS
    return torch.stack([low[..., 0] - left * size[..., 0], low[..., 1] - top * size[..., 1],
                        high[..., 0] + right * size[..., 0], high[..., 1] + bottom * size[..., 1]], -1)


def mouth_box(landmarks_2d: Tensor) -> Tensor:
    """[..., 478, 2] pixel landmarks -> [..., 4] mouth box x0, y0, x1, y1 (`MOUTH_BOX_MARGINS`)."""
    from animation.lipsync_metrics import LIP_LANDMARKS

    lips = landmarks_2d[..., list(LIP_LANDMARKS), :]
    low, high = lips.amin(-2), lips.amax(-2)
    width = high[..., 0] - low[..., 0]
    side, vertical = MOUTH_BOX_MARGINS
    return torch.stack([low[..., 0] - side * width, low[..., 1] - vertical * width,
                        high[..., 0] + side * width, high[..., 1] + vertical * width], -1)


def box_mask(height: int, width: int, box: Tensor) -> Tensor:
    """Bool [H, W]: the pixels whose centres lie inside box [4] (x0, y0, x1, y1 pixels)."""
    xs = torch.arange(width) + 0.5
    ys = torch.arange(height) + 0.5
    return ((ys[:, None] >= box[1]) & (ys[:, None] <= box[3])) & ((xs[None] >= box[0]) & (xs[None] <= box[2]))


def head_mask(matte: Tensor, box: Tensor | None) -> Tensor:
    """Bool [H, W]: matte [H, W] > 0.5, inside box [4] (x0, y0, x1, y1 pixels) when given."""
    mask = matte > MATTE_THRESHOLD
    if box is not None:
        mask = mask & box_mask(*matte.shape, box)
    return mask


@dataclass
class HeldOutMetrics:
    psnr_db: float
    ssim: float
    render_fps: float
    num_frames: int
    # frame index -> (summed squared error, channel values) over its head region: pooled PSNR of any subset
    frame_errors: dict[int, tuple[float, int]] = field(default_factory=dict, repr=False)
    psnr_mouth_db: float | None = None  # pooled over the frames' mouth boxes (lips, teeth), when the data has them

    def pooled_psnr(self, indices) -> float | None:
        """PSNR (dB) pooled in the MSE domain over the scored frames among `indices`; None when none was scored."""
        return pooled_psnr([self.frame_errors[i] for i in indices if i in self.frame_errors])

    def to_dict(self) -> dict[str, Any]:
        scores = {"psnr": self.psnr_db, "ssim": self.ssim, "render_fps": self.render_fps,
                  "held_out_frames": self.num_frames}
        if self.psnr_mouth_db is not None:
            scores["psnr_mouth"] = self.psnr_mouth_db
        return scores


def pooled_psnr(errors: list[tuple[float, int]]) -> float | None:
    """PSNR (dB) of (summed squared error, channel values) pairs, pooled in the MSE domain; None without values."""
    count = sum(c for _, c in errors)
    if count == 0:
        return None
    mse = sum(e for e, _ in errors) / count
    return float("inf") if mse == 0 else float(-10 * np.log10(mse))


def head_region_scores(rendered: Tensor, real: Tensor, mask: Tensor) -> tuple[float, float]:
    """(PSNR dB, SSIM) of rendered vs real [H, W, 3] in [0, 1] over the pixels of mask [H, W] bool."""
    if not bool(mask.any()):
        raise ValueError("the held-out frame's matte holds no person pixel")
    ssim = float(ssim_map(rendered.clamp(0, 1), real)[mask].mean())
    return psnr(rendered, real, mask), ssim


def evaluate_frames(params: dict[str, Tensor], parent: Tensor, data: TrainingData, indices: list[int],
                    background: Tensor, backend: str = "auto") -> tuple[HeldOutMetrics, dict[int, Tensor]]:
    """Score the Gaussians on frames `indices`; background [H, W, 3] float (the plate at data's resolution).

    Returns the metrics and the rendered images [H, W, 3] by frame index (for previews and videos).
    PSNR is averaged in the MSE domain over frames (the pooled head-region MSE), SSIM as a plain mean.
    """
    if not indices:
        raise ValueError("no held-out frames to evaluate")
    ssims, renders, frame_errors, mouth_errors = [], {}, {}, []
    render_seconds = 0.0
    with torch.no_grad():
        # One untimed frame first: the FPS is the steady rate, not numba's one-time kernel load or compile.
        render_frame(params, parent, data.vertices[indices[0]], data.faces, data.camera, background, backend)
        for index in indices:
            start = time.perf_counter()
            out, _ = render_frame(params, parent, data.vertices[index], data.faces, data.camera, background, backend)
            render_seconds += time.perf_counter() - start
            color = out.color.clamp(0, 1)
            real = data.frame(index)
            mask = head_mask(data.matte(index), None if data.head_boxes is None else data.head_boxes[index])
            if not bool(mask.any()):
                continue
            frame_errors[index] = (float(((color - real) ** 2)[mask].sum()), int(mask.sum()) * 3)
            ssims.append(head_region_scores(color, real, mask)[1])
            renders[index] = color
            if data.mouth_boxes is not None:
                mouth = box_mask(*mask.shape, data.mouth_boxes[index])
                mouth_errors.append((float(((color - real) ** 2)[mouth].sum()), int(mouth.sum()) * 3))
    psnr_db = pooled_psnr(list(frame_errors.values()))
    if psnr_db is None:
        raise ValueError("none of the held-out frames has a person in its matte")
    fps = len(indices) / max(render_seconds, 1e-9)
    return HeldOutMetrics(psnr_db, float(np.mean(ssims)), fps, len(ssims), frame_errors,
                          pooled_psnr(mouth_errors)), renders


def save_side_by_side(real: list[Tensor], rendered: list[Tensor], path: Path, title: str = "",
                      real_label: str = "real (held out)") -> Path:
    """A PNG grid: one row per frame, real | rendered | absolute difference (x4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(real)
    figure, axes = plt.subplots(rows, 3, figsize=(9, 3 * rows), squeeze=False)
    for row, (a, b) in enumerate(zip(real, rendered)):
        for column, (image, label) in enumerate(((a, real_label), (b, "rendered"),
                                                 (((a - b).abs() * 4).clamp(0, 1), "|difference| x4"))):
            axes[row, column].imshow(image.numpy())
            axes[row, column].set_axis_off()
            if row == 0:
                axes[row, column].set_title(label)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def save_curves(history: dict[str, list[float]], path: Path, held_out_psnr: float | None = None) -> Path:
    """Training loss and training-frame PSNR against iteration (and the held-out PSNR as a line) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    left.plot(history.get("iteration", []), history.get("loss", []))
    left.set_xlabel("iteration")
    left.set_ylabel("loss (random colour or plate background)")
    left.set_yscale("log")
    right.plot(history.get("iteration", []), history.get("psnr", []), label="training frames (whole image)")
    if held_out_psnr is not None:
        right.axhline(held_out_psnr, color="tab:red", linestyle="--", label=f"held out, head region: {held_out_psnr:.2f} dB")
    right.set_xlabel("iteration")
    right.set_ylabel("PSNR (dB)")
    right.legend(loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def write_video(frames: np.ndarray, fps: float, path: Path, audio: np.ndarray | None = None,
                sample_rate: int = 16000) -> Path:
    """Encode frames [T, H, W, 3] uint8 as H.264 (yuv420p) + AAC MP4 with the ffmpeg imageio-ffmpeg ships.

    The audio, if any, is cut or padded to exactly T / fps seconds so both streams start and end together.
    """
    import imageio_ffmpeg

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or frames.shape[0] == 0:
        raise ValueError(f"frames must be uint8 [T, H, W, 3] with T > 0, got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"H.264 yuv420p needs an even frame size, got {width}x{height}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    duration = frames.shape[0] / fps
    with tempfile.TemporaryDirectory() as scratch:
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                   "-s", f"{width}x{height}", "-r", f"{fps}", "-i", "-"]
        if audio is not None and audio.size:
            samples = int(round(duration * sample_rate))
            clip = np.zeros(samples, np.float32)
            clip[: min(samples, audio.size)] = audio[:samples]
            wav = Path(scratch) / "audio.wav"
            write_wav_pcm16(wav, clip, sample_rate)
            command += ["-i", str(wav), "-c:a", "aac", "-b:a", "128k"]
        command += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "medium", "-crf", "18",
                    "-movflags", "+faststart", "-t", f"{duration:.6f}", str(path)]
        result = subprocess.run(command, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg failed to encode {path}: {result.stderr.decode(errors='replace')[-500:]}")
    return path


def render_frames(params: dict[str, Tensor], parent: Tensor, data: TrainingData, indices: list[int],
                  background: Tensor, backend: str = "auto") -> np.ndarray:
    """Render frames `indices` from their tracked poses/expressions over background; uint8 [T, H, W, 3]."""
    images = []
    with torch.no_grad():
        for index in indices:
            out, _ = render_frame(params, parent, data.vertices[index], data.faces, data.camera, background, backend)
            images.append((out.color.clamp(0, 1) * 255).round().to(torch.uint8).numpy())
    return np.stack(images)
