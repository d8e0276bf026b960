"""Motion + Avatar -> frames (in batches, with progress) over a background -> MP4.

Backgrounds (`BackgroundSpec.kind`):
  "plate"  the avatar's own background plate (from its training video),
  "blur"   that plate blurred (a shallow depth-of-field look),
  "color"  a flat colour (`color` "#rrggbb"),
  "image"  an uploaded picture (`image` path), centre-cropped to fill the frame.
The rasterizer composites the Gaussians over the background with its own coverage (alpha), so the avatar's
rendered silhouette is the matte: no per-frame segmentation is needed at generation time.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

ProgressCallback = Callable[[str, float, dict], None]
BACKGROUND_KINDS = ("plate", "blur", "color", "image")
MAX_IMAGE_BYTES = 20_000_000


@dataclass(frozen=True)
class BackgroundSpec:
    kind: str = "plate"
    color: str = "#30343c"
    image: str | None = None
    blur_sigma: float = 8.0

    def __post_init__(self) -> None:
        if self.kind not in BACKGROUND_KINDS:
            raise ValueError(f"unknown background {self.kind!r}; choose one of {', '.join(BACKGROUND_KINDS)}")
        if self.kind == "color":
            parse_color(self.color)
        if self.kind == "image" and not self.image:
            raise ValueError("background 'image' needs an image file")


@dataclass(frozen=True)
class RenderOptions:
    """size: output width in pixels (even; None = the avatar's resolution); batch: frames whose vertices are
    posed together; backend: rasterizer backend; upscale: above the avatar's own (training) resolution, render
    at that resolution and upscale colour and coverage (Lanczos) before compositing over the full-size
    background, instead of rasterizing every output pixel. The Gaussians were fitted at the training
    resolution, so rasterizing finer adds cost but little detail (4x the pixels at 2x the size).
    enhance: optional enhancers with local weights (`render.enhance`): "none" or parts joined by "+": "upscale"
    (Real-ESRGAN in place of Lanczos), "lips" (Wav2Lip), "face" (GFPGAN); face_strength: GFPGAN's share of the
    face, 0..1."""

    size: int | None = None
    batch: int = 16
    backend: str = "auto"
    upscale: bool = True
    enhance: str = "none"
    face_strength: float = 0.7

    def __post_init__(self) -> None:
        from render.enhance import check_enhance_kind

        if self.size is not None and (self.size % 2 or not 32 <= self.size <= 2048):
            raise ValueError(f"video size must be an even number of pixels in [32, 2048], got {self.size}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")
        check_enhance_kind(self.enhance)
        if not 0.0 <= self.face_strength <= 1.0:
            raise ValueError(f"face strength must be in [0, 1], got {self.face_strength}")


def parse_color(text: str) -> tuple[float, float, float]:
    """'#rrggbb' (or 'rrggbb') -> RGB in 0..1."""
    value = str(text).strip().lstrip("#")
    if len(value) != 6 or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise ValueError(f"colour {text!r} is not of the form #rrggbb")
    return tuple(int(value[i:i + 2], 16) / 255.0 for i in (0, 2, 4))


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    import cv2

    if image.shape[1] == width and image.shape[0] == height:
        return image
    interpolation = cv2.INTER_AREA if image.shape[1] > width else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def load_background_image(path: str | Path, width: int, height: int) -> np.ndarray:
    """Read an uploaded picture -> uint8 [H, W, 3] RGB filling the frame (centre crop), with clear errors."""
    import cv2

    from avatar.library import check_upload

    path = check_upload(path, MAX_IMAGE_BYTES, "background images")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path.name} is not an image this build can read (use PNG, JPEG or WebP)")
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    h, w = image.shape[:2]
    scale = max(width / w, height / h)
    cw, ch = int(round(width / scale)), int(round(height / scale))
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    return _resize(image[y0:y0 + ch, x0:x0 + cw], width, height)


def background_image(spec: BackgroundSpec, plate: np.ndarray, width: int, height: int) -> Tensor:
    """The background as float [H, W, 3] in 0..1. plate: uint8 [h, w, 3] the avatar's plate."""
    import cv2

    if spec.kind == "color":
        return torch.tensor(parse_color(spec.color), dtype=torch.float32).expand(height, width, 3).contiguous()
    if spec.kind == "image":
        image = load_background_image(spec.image, width, height)
    else:
        image = _resize(np.asarray(plate), width, height)
        if spec.kind == "blur":
            image = cv2.GaussianBlur(image, (0, 0), spec.blur_sigma * width / 512.0)
    return torch.from_numpy(np.ascontiguousarray(image)).float() / 255.0


def output_camera(avatar, options: RenderOptions):
    """The avatar's camera scaled to the output width (`options.size`), with an even height."""
    width = options.size or avatar.camera.width + avatar.camera.width % 2
    height = int(round(width * avatar.camera.height / avatar.camera.width))
    return avatar.camera.scaled(width, height + height % 2)


def render_frames(avatar, motion, background: BackgroundSpec | None = None, options: RenderOptions | None = None,
                  progress: ProgressCallback | None = None, enhancers=None, timings: dict | None = None,
                  audio: tuple[np.ndarray, int] | None = None):
    """Yield uint8 frames [B, H, W, 3] for the whole motion, batch by batch (closed eyelids recoloured,
    `avatar.eyelids`).

    enhancers: `render.enhance.Enhancers` for `options.enhance` (None: loaded from the default model folders);
    timings: if given, timings["enhance"] accumulates the seconds spent in them; audio: (waveform [S], sample
    rate) of the speech, needed by the "lips" enhancer."""
    from avatar.eyelids import FADE_FROM, colors_for_blink, lid_colors
    from render.enhance import chosen_models, face_boxes, restore_faces, upscale_over

    background = background or BackgroundSpec()
    options = options or RenderOptions()
    chosen = chosen_models(options.enhance, enhancers)
    face_model, upscaler, lips_model = chosen.face, chosen.upscaler, chosen.lips
    mel_windows = None
    if lips_model is not None:
        if audio is None:
            raise ValueError("the 'lips' enhancer needs the speech audio")
        from render.wav2lip import mel_spectrogram, mel_windows as windows_of

        mel_windows = windows_of(mel_spectrogram(*audio), motion.fps, motion.num_frames)
    camera_spec = output_camera(avatar, options)
    bg = background_image(background, avatar.background.numpy(), camera_spec.width, camera_spec.height)
    render_spec = camera_spec
    if upscaler is not None or (options.upscale and camera_spec.width > avatar.camera.width):
        render_spec = output_camera(avatar, RenderOptions(size=avatar.camera.width + avatar.camera.width % 2))
    camera = render_spec.to_camera()
    output_view = camera_spec.to_camera()
    upscaling = render_spec.width != camera_spec.width or upscaler is not None
    small_bg = None
    if upscaler is not None:
        small_bg = background_image(background, avatar.background.numpy(), render_spec.width, render_spec.height)
    black = torch.zeros(3)
    enhance_seconds = 0.0
    total = motion.num_frames
    done = 0
    lids = lid_colors(avatar) if np.any(motion.blink > FADE_FROM) else None  # closed lids show skin, not the eye
    with torch.no_grad():
        for start in range(0, total, options.batch):
            stop = min(total, start + options.batch)
            vertices = motion.vertices(avatar, start, stop)
            batch = np.empty((stop - start, camera_spec.height, camera_spec.width, 3), np.uint8)
            for i in range(stop - start):
                colors = None
                if lids is not None:
                    colors = colors_for_blink(avatar.gaussians["colors"], lids, float(motion.blink[start + i]))
                if upscaling:
                    out = avatar.render(vertices[i], black, camera=camera, backend=options.backend, colors=colors)
                    if upscaler is None:
                        color = _upscale_over(out.color, out.alpha, bg)
                    else:
                        small = out.color + (1 - out.alpha[..., None]) * small_bg
                        small = (small.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
                        start_enhance = time.perf_counter()
                        color = torch.from_numpy(upscale_over(small, out.alpha.numpy(), bg.numpy(), upscaler))
                        enhance_seconds += time.perf_counter() - start_enhance
                else:
                    color = avatar.render(vertices[i], bg, camera=camera, backend=options.backend, colors=colors).color
                batch[i] = (color.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
                if lips_model is not None:
                    start_enhance = time.perf_counter()
                    boxes = face_boxes(vertices[i:i + 1], output_view)
                    batch[i:i + 1] = lips_model.sync(batch[i:i + 1], boxes, mel_windows[start + i:start + i + 1])
                    enhance_seconds += time.perf_counter() - start_enhance
                if face_model is not None:
                    start_enhance = time.perf_counter()
                    batch[i:i + 1] = restore_faces(batch[i:i + 1], vertices[i:i + 1], output_view, face_model,
                                                   options.face_strength)
                    enhance_seconds += time.perf_counter() - start_enhance
                if progress is not None and options.enhance != "none":
                    progress("frames", (start + i + 1) / total, {"frame": start + i + 1, "frames": total})
            if timings is not None:
                timings["enhance"] = enhance_seconds
            done = stop
            if progress is not None:
                progress("frames", done / total, {"frame": done, "frames": total})
            yield batch


def _upscale_over(premultiplied: Tensor, alpha: Tensor, background: Tensor) -> Tensor:
    """Upscale a render over black (premultiplied colour [h, w, 3], coverage [h, w]) to the background's size
    [H, W, 3] and composite: colour + (1 - alpha) background."""
    import cv2

    height, width = background.shape[:2]
    stacked = torch.cat([premultiplied, alpha[..., None]], dim=-1).numpy()
    big = torch.from_numpy(cv2.resize(stacked, (width, height), interpolation=cv2.INTER_LANCZOS4))
    a = big[..., 3:].clamp(0, 1)
    return big[..., :3].clamp(min=0) + (1 - a) * background


@dataclass
class VideoResult:
    path: Path
    num_frames: int
    fps: float
    width: int
    height: int
    seconds: dict  # wall seconds per stage


def motion_to_video(avatar, motion, waveform: np.ndarray, sample_rate: int, out_path: str | Path,
                    background: BackgroundSpec | None = None, options: RenderOptions | None = None,
                    progress: ProgressCallback | None = None, enhancers=None) -> VideoResult:
    """Render `motion` on `avatar` and write an H.264 + AAC MP4 with `waveform` as its sound.

    The frame count is the motion's (round(audio seconds x fps)); encoding runs in ffmpeg concurrently with
    rendering, so "encoding" is only the time to finish and mux after the last frame. With enhancers
    (`options.enhance`), their seconds are split out of "frames" as "enhance".
    """
    from render.video import VideoWriter

    options = options or RenderOptions()
    spec = output_camera(avatar, options)
    size, height = spec.width, spec.height
    timings = {"frames": 0.0, "encoding": 0.0}
    writer = VideoWriter(out_path, size, height, motion.fps, waveform, sample_rate, expected_frames=motion.num_frames)
    try:
        start = time.perf_counter()
        spent: dict = {}
        for batch in render_frames(avatar, motion, background, options, progress, enhancers, spent,
                                   (waveform, sample_rate)):
            writer.write(batch)
        timings["frames"] = time.perf_counter() - start - spent.get("enhance", 0.0)
        if options.enhance != "none":
            timings["enhance"] = spent.get("enhance", 0.0)
        if progress is not None:
            progress("encoding", 0.0, {})
        start = time.perf_counter()
        path = writer.close()
        timings["encoding"] = time.perf_counter() - start
        if progress is not None:
            progress("encoding", 1.0, {})
    except BaseException:
        writer.abort()
        raise
    return VideoResult(path, motion.num_frames, motion.fps, size, height, timings)
