"""Selfie video or one photo -> `TrackedClip`: the tracked, rigged, cropped and matted training data.

Stages (reported through tqdm and an optional `progress(stage, fraction)` callback):
  probe -> track (decode at constant fps + FaceMesh, checks) -> rig (camera, pose, neutral, expression basis)
  -> crop (second decode pass: head crop + selfie matte) -> body (shoulder motion, `avatar.body_tracking`)
  -> background (plate) -> audio.
Decoding twice keeps memory at the crop size: only the cropped frames of the whole clip are held.
On disk a clip is a folder with `clip.safetensors` (arrays), `clip.json` (metadata) and, when the video has
sound, `audio.wav` (float32 mono copy of the audio); nothing is pickled.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from avatar import body_tracking, matting, rig as rig_module, tracking, video
from avatar.rig import HeadRig, Intrinsics, RigConfig
from avatar.tracking import NUM_LANDMARKS, TrackingConfig

FORMAT_VERSION = 1
ProgressCallback = Callable[[str, float], None]


@dataclass(frozen=True)
class PreprocessConfig:
    """Options for preprocessing (saved with the clip)."""

    fps: float = 25.0
    # only the first seconds of the video (None = all). Uploads past 2 min are cut, with a note: more adds
    # little (20-60 s recommended) while memory and tracking time grow with it (60 s: 5.3 GB peak, `fast`)
    max_seconds: float | None = 120.0
    min_seconds: float = video.MIN_VIDEO_SECONDS
    audio_sample_rate: int = 16000
    tracking: TrackingConfig = TrackingConfig()
    rig: RigConfig = RigConfig()
    crop: matting.CropConfig = matting.CropConfig()


@dataclass(frozen=True)
class Holdout:
    """Frames an evaluation will hold out: every `every`-th frame (0 = none) and the last `seconds`, the split of
    `avatar.train.split_frames`. Preprocessing fits the neutral shape, the expression basis and the background
    plate without them, so held-out frames are scored on a rig that never saw their landmarks or pixels."""

    seconds: float
    every: int

    def mask(self, num_frames: int, fps: float) -> np.ndarray:  # [T] bool, True = held out
        from avatar.train import split_frames

        held = np.zeros(num_frames, bool)
        if num_frames > 1:
            held[split_frames(num_frames, fps, self.every, self.seconds)[1]] = True
        return held

    def to_dict(self) -> dict:
        return {"seconds": float(self.seconds), "every": int(self.every)}


@dataclass
class TrackedClip:
    """Training data for one avatar. Pixel arrays are in the head crop (camera = `camera`, already cropped);
    3D arrays follow `avatar.rig` conventions (metres, OpenCV camera, world_to_camera[t] = [R t])."""

    frames: np.ndarray  # [T, H, W, 3] uint8 RGB crops
    mattes: np.ndarray  # [T, H, W] uint8, person = 255
    landmarks_2d: np.ndarray  # [T, 478, 2] float32 tracked pixels in the crop (gaps filled, unsmoothed)
    head_landmarks: np.ndarray  # [T, 478, 3] float32 metres, head frame (smoothed, before PCA truncation)
    neutral: np.ndarray  # [478, 3] float32
    rotation: np.ndarray  # [T, 3, 3] float32 head -> camera
    translation: np.ndarray  # [T, 3] float32 metres
    basis: np.ndarray  # [K, 478, 3] float32
    coeffs: np.ndarray  # [T, K] float32
    explained_variance: np.ndarray  # [K] float32
    camera: Intrinsics
    fps: float
    audio: np.ndarray  # [S] float32 mono (S = 0 without audio)
    audio_sample_rate: int
    background: np.ndarray  # [H, W, 3] uint8
    valid: np.ndarray  # [T] bool
    meta: dict = field(default_factory=dict)  # source, crop box, configs, notes, errors, timings
    # [T, 2, 3] float32 tracked body motion (`avatar.body_tracking`); None = a still body (identity warps)
    body_warp: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.body_warp is None:
            self.body_warp = body_tracking.identity_warps(self.frames.shape[0])
        _validate(self)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    def expression_landmarks(self) -> np.ndarray:  # [T, 478, 3]
        return self.neutral[None] + np.einsum("tk,kvc->tvc", self.coeffs, self.basis)

    def world_to_camera(self) -> np.ndarray:  # [T, 4, 4]
        matrices = np.tile(np.eye(4, dtype=np.float32), (self.num_frames, 1, 1))
        matrices[:, :3, :3] = self.rotation
        matrices[:, :3, 3] = self.translation
        return matrices

    def save(self, folder: str | Path) -> None:
        """Write `clip.safetensors` + `clip.json` into `folder` (created if needed)."""
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {name: np.ascontiguousarray(getattr(self, name)) for name in _ARRAY_FIELDS + _OPTIONAL_ARRAYS}
        arrays["valid"] = arrays["valid"].astype(np.uint8)
        save_file(arrays, str(folder / "clip.safetensors"))
        header = {"format_version": FORMAT_VERSION, "camera": self.camera.to_dict(), "fps": self.fps,
                  "audio_sample_rate": self.audio_sample_rate, "meta": self.meta}
        (folder / "clip.json").write_text(json.dumps(header, indent=2))
        if len(self.audio):  # a copy for listening and for audio tools; clip.safetensors stays the source of truth
            video.write_wav(folder / "audio.wav", self.audio, self.audio_sample_rate)

    @staticmethod
    def load(folder: str | Path) -> "TrackedClip":
        """Read a clip written by `save`, validating the format version and every array's shape and dtype."""
        from safetensors.numpy import load_file

        folder = Path(folder)
        for name in ("clip.json", "clip.safetensors"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder} is not a tracked clip: {name} is missing")
        header = json.loads((folder / "clip.json").read_text())
        if header.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{folder}: clip format {header.get('format_version')} (expected {FORMAT_VERSION})")
        arrays = load_file(str(folder / "clip.safetensors"))
        missing = set(_ARRAY_FIELDS) - set(arrays)
        if missing:
            raise ValueError(f"{folder}: clip.safetensors lacks {sorted(missing)}")
        arrays["valid"] = arrays["valid"].astype(bool)
        return TrackedClip(camera=Intrinsics.from_dict(header["camera"]), fps=float(header["fps"]),
                           audio_sample_rate=int(header["audio_sample_rate"]), meta=header["meta"],
                           **{name: arrays[name] for name in _ARRAY_FIELDS},
                           **{name: arrays[name] for name in _OPTIONAL_ARRAYS if name in arrays})


_ARRAY_FIELDS = ("frames", "mattes", "landmarks_2d", "head_landmarks", "neutral", "rotation", "translation",
                 "basis", "coeffs", "explained_variance", "audio", "background", "valid")
_OPTIONAL_ARRAYS = ("body_warp",)  # clips saved before body tracking lack it: a still body


def _validate(clip: TrackedClip) -> None:
    """Check every array's shape and dtype against the others (ValueError naming the first mismatch)."""
    if clip.frames.ndim != 4 or clip.frames.shape[-1] != 3 or clip.frames.dtype != np.uint8:
        raise ValueError(f"frames must be [T, H, W, 3] uint8, got {clip.frames.shape} {clip.frames.dtype}")
    frames, height, width = clip.frames.shape[:3]
    components = clip.basis.shape[0] if clip.basis.ndim == 3 else -1
    expected = {
        "mattes": ((frames, height, width), np.uint8),
        "landmarks_2d": ((frames, NUM_LANDMARKS, 2), np.float32),
        "head_landmarks": ((frames, NUM_LANDMARKS, 3), np.float32),
        "neutral": ((NUM_LANDMARKS, 3), np.float32),
        "rotation": ((frames, 3, 3), np.float32),
        "translation": ((frames, 3), np.float32),
        "basis": ((components, NUM_LANDMARKS, 3), np.float32),
        "coeffs": ((frames, components), np.float32),
        "explained_variance": ((components,), np.float32),
        "background": ((height, width, 3), np.uint8),
        "valid": ((frames,), np.bool_),
        "body_warp": ((frames, 2, 3), np.float32),
    }
    for name, (shape, dtype) in expected.items():
        array = getattr(clip, name)
        if not isinstance(array, np.ndarray) or array.shape != shape or array.dtype != dtype:
            raise ValueError(f"{name} must be {shape} {np.dtype(dtype).name}, got "
                             f"{getattr(array, 'shape', type(array))} {getattr(array, 'dtype', '')}")
    if clip.audio.ndim != 1 or clip.audio.dtype != np.float32:
        raise ValueError(f"audio must be [S] float32, got {clip.audio.shape} {clip.audio.dtype}")
    if (clip.camera.width, clip.camera.height) != (width, height):
        raise ValueError(f"camera is {clip.camera.width}x{clip.camera.height} but frames are {width}x{height}")
    if clip.fps <= 0:
        raise ValueError(f"fps must be positive, got {clip.fps}")


class _Stages:
    """Progress by stage: one tqdm bar over all stages plus the caller's callback."""

    WEIGHTS = {"probe": 0.02, "track": 0.5, "rig": 0.1, "crop": 0.28, "body": 0.02, "background": 0.05,
               "audio": 0.03}

    def __init__(self, callback: ProgressCallback | None, show_bar: bool) -> None:
        from tqdm import tqdm

        self.callback = callback
        self.bar = tqdm(total=1000, desc="preprocess", disable=not show_bar, leave=False,
                        bar_format="{desc}{percentage:3.0f}%|{bar}| {elapsed}<{remaining}")
        self.done = 0.0
        self.timings: dict[str, float] = {}
        self._stage, self._start = "", time.perf_counter()

    def report(self, stage: str, fraction: float) -> None:
        if stage != self._stage:
            if self._stage:
                self.timings[self._stage] = round(time.perf_counter() - self._start, 3)
                self.done += self.WEIGHTS[self._stage]
            self._stage, self._start = stage, time.perf_counter()
            self.bar.set_description(f"preprocess: {stage}")
        overall = self.done + self.WEIGHTS[stage] * min(max(fraction, 0.0), 1.0)
        self.bar.update(int(overall * 1000) - self.bar.n)
        if self.callback is not None:
            self.callback(stage, float(fraction))

    def close(self) -> None:
        self.report(self._stage or "audio", 1.0)
        self.timings[self._stage] = round(time.perf_counter() - self._start, 3)
        self.bar.close()


def preprocess(path: str | Path, config: PreprocessConfig = PreprocessConfig(),
               progress: ProgressCallback | None = None, show_bar: bool = True,
               holdout: Holdout | None = None) -> TrackedClip:
    """Video or photo (decided by content) -> TrackedClip. Raises ValueError with a clear sentence on bad input.
    `holdout` (videos only): frames kept out of the rig and plate fits (see `Holdout`)."""
    info = video.probe_media(path)
    if info.kind == "image":
        return preprocess_photo(path, config, progress, show_bar)
    return preprocess_video(path, config, progress, show_bar, holdout)


def preprocess_video(path: str | Path, config: PreprocessConfig = PreprocessConfig(),
                     progress: ProgressCallback | None = None, show_bar: bool = True,
                     holdout: Holdout | None = None) -> TrackedClip:
    """Track, rig, crop and matte a talking-head video (see the module docstring); with `holdout`, the neutral,
    expression basis and background plate are fitted on the other frames only (`fit_rig_excluding`)."""
    stages = _Stages(progress, show_bar)
    stages.report("probe", 0.0)
    info = video.probe_media(path)
    video.require_video(info, config.min_seconds)
    seconds = info.duration_s if config.max_seconds is None else min(info.duration_s, config.max_seconds)
    expected = max(1, round(seconds * config.fps))
    turn = upright_turn(path, info, config)
    frames = video.iter_video_frames(path, config.fps, config.max_seconds, info, turn)
    stages.report("track", 0.0)
    raw = tracking.track_frames(frames, static=False, config=config.tracking,
                                on_frame=lambda i: stages.report("track", (i + 1) / expected))
    notes = [] if info.has_audio else ["the video has no audio track"]
    if info.duration_s < video.RECOMMENDED_VIDEO_SECONDS:
        notes.append(f"short video ({info.duration_s:.1f} s; {video.RECOMMENDED_VIDEO_SECONDS:.0f}-60 s recommended)")
    if turn:
        notes.append(f"the video was filmed sideways or upside down without rotation metadata: turned {turn} "
                     f"degrees clockwise, where its face was found")
    if seconds < info.duration_s - 0.5:
        notes.append(f"long video ({info.duration_s:.0f} s): only its first {seconds:.0f} s are used (20-60 s "
                     f"recommended)")
    def audio_source() -> np.ndarray | None:
        return video.extract_audio(path, config.audio_sample_rate, seconds) if info.has_audio else None

    def decode_again(source=info):  # second pass for the crops: cheaper than holding full-size frames
        return video.iter_video_frames(path, config.fps, config.max_seconds, source, turn)

    upright = replace(info, width=info.height, height=info.width) if turn in (90, 270) else info
    return _finish(raw, decode_again, audio_source, upright, config, stages, notes, holdout)


def upright_turn(path: str | Path, info, config: PreprocessConfig, samples: int = 5) -> int:
    """Clockwise degrees (0, 90, 180, 270) that make the video's face upright, for a phone video re-encoded
    without its rotation metadata: from the direction eyes -> mouth of the faces the detector finds in `samples`
    frames of the first seconds (the majority; a face seen with its mouth to the right of its eyes needs a
    quarter turn clockwise). If no face is found as decoded, the first turn under which one is; else 0 (tracking
    then reports no face)."""
    span = min(info.duration_s, 4.0)
    with tracking.FaceTracker(static=True, config=config.tracking) as tracker:
        downs = [down for frame in video.iter_video_frames(path, samples / span, span, info)
                 if (down := tracker.face_down(frame)) is not None]
        if downs:
            votes = [_turn_for(down) for down in downs]
            return max(set(votes), key=votes.count)
        for turn in (90, 270, 180):
            for frame in video.iter_video_frames(path, samples / span, span, info, turn):
                down = tracker.face_down(frame)
                if down is not None:
                    return (turn + _turn_for(down)) % 360
    return 0


def _photo_turn(tracker, image: np.ndarray) -> int:
    """Clockwise degrees that make the photo's face [H, W, 3] upright: from its eyes -> mouth direction, or, when
    the detector finds no face as it is, the first turn under which it finds one (it misses faces on their side);
    0 if none (tracking then reports no face)."""
    for turn in (0, 90, 270, 180):
        down = tracker.face_down(np.ascontiguousarray(np.rot90(image, k=-turn // 90)))
        if down is not None:
            return (turn + _turn_for(down)) % 360
    return 0


def _turn_for(down: np.ndarray) -> int:
    """Clockwise turn that points the face-down vector [2] (x, y; y grows downwards) downwards."""
    if abs(down[1]) >= abs(down[0]):
        return 0 if down[1] > 0 else 180
    return 90 if down[0] > 0 else 270


def preprocess_photo(path: str | Path, config: PreprocessConfig = PreprocessConfig(),
                     progress: ProgressCallback | None = None, show_bar: bool = True) -> TrackedClip:
    """The same pipeline for one portrait photo (a one-frame clip, static-image tracking, no audio)."""
    stages = _Stages(progress, show_bar)
    stages.report("probe", 0.0)
    image = video.load_image(path)
    info = video.probe_media(path)
    notes = []
    with tracking.FaceTracker(static=True, config=config.tracking) as tracker:
        turn = _photo_turn(tracker, image)
    if turn:  # a sideways photo whose EXIF orientation was stripped
        image = np.ascontiguousarray(np.rot90(image, k=-turn // 90))  # k < 0: clockwise
        info = replace(info, width=image.shape[1], height=image.shape[0])
        notes.append(f"the photo was sideways or upside down: turned {turn} degrees clockwise, where its face was "
                     f"found")
    raw = tracking.track_frames([image], static=True, config=config.tracking)
    stages.report("track", 1.0)
    return _finish(raw, lambda: iter([image]), lambda: None, info, config, stages, notes)


def _finish(raw: tracking.RawTrack, frame_source: Callable, audio_source: Callable, info: video.MediaInfo,
            config: PreprocessConfig, stages: _Stages, notes: list[str], holdout: Holdout | None = None) -> TrackedClip:
    checked = tracking.check_track(raw, config.tracking)
    notes = notes + checked.notes
    stages.report("rig", 0.0)
    total = raw.landmarks.shape[0]
    held = holdout.mask(total, config.fps) if holdout is not None else np.zeros(total, bool)
    head_rig = fit_rig_excluding(checked.landmarks, checked.valid, held, raw.width, raw.height, config.fps,
                                 config.rig, progress=lambda f: stages.report("rig", f))
    box = matting.head_crop_box(checked.landmarks, checked.valid, raw.width, raw.height, config.crop)
    resolution = config.crop.resolution
    crops, mattes = [], []
    stages.report("crop", 0.0)
    with matting.Segmenter(config.crop.segmentation_model) as segmenter:
        for index, frame in enumerate(frame_source()):
            if index >= total:
                break
            crop = matting.crop_frame(frame, box, resolution)
            crops.append(crop)
            mattes.append(segmenter.matte(crop))
            stages.report("crop", (index + 1) / total)
    if len(crops) != total:
        raise ValueError(f"the second decoding pass gave {len(crops)} frames, the first {total}")
    frames, matte_stack = np.stack(crops), np.stack(mattes)
    camera = head_rig.intrinsics.cropped(box.x0, box.y0, box.size, resolution)
    landmarks_2d = matting.crop_landmarks(checked.landmarks[..., :2], box, resolution)
    stages.report("body", 0.0)
    body_warp, body_summary = body_tracking.track_body(frames, matte_stack, landmarks_2d, camera,
                                                       checked.valid & ~held)
    stages.report("background", 0.0)
    plate, inpainted = matting.background_plate(frames[~held], matte_stack[~held])
    stages.report("audio", 0.0)
    audio = audio_source()
    if audio is not None:
        audio = audio[: int(round(total / config.fps * config.audio_sample_rate))]
    cropped_rig = HeadRig(camera, head_rig.neutral, head_rig.rotation, head_rig.translation,
                          head_rig.head_landmarks, head_rig.basis, head_rig.coeffs, head_rig.explained_variance)
    errors = rig_module.reprojection_error_px(cropped_rig, landmarks_2d)[checked.valid]
    stages.close()
    meta = {
        "source": {"path": info.path, "kind": info.kind, "width": info.width, "height": info.height,
                   "duration_s": info.duration_s, "source_fps": info.source_fps, "codec": info.video_codec,
                   "has_audio": info.has_audio},
        "crop_box": box.to_dict(),
        "source_camera": head_rig.intrinsics.to_dict(),
        "config": asdict(config),
        "notes": notes,
        "reprojection_px": {"median": float(np.median(errors)), "p95": float(np.percentile(errors, 95)),
                            "max": float(errors.max())},
        "background_inpainted_fraction": inpainted,
        "body_motion": body_summary,
        # the split the rig and plate were fitted without (None: fitted on every frame)
        "holdout": holdout.to_dict() if holdout is not None else None,
        "stage_seconds": stages.timings,
    }
    f32 = np.float32
    return TrackedClip(
        frames=frames, mattes=matte_stack, landmarks_2d=landmarks_2d.astype(f32),
        head_landmarks=head_rig.head_landmarks.astype(f32), neutral=head_rig.neutral.astype(f32),
        rotation=head_rig.rotation.astype(f32), translation=head_rig.translation.astype(f32),
        basis=head_rig.basis.astype(f32), coeffs=head_rig.coeffs.astype(f32),
        explained_variance=head_rig.explained_variance.astype(f32), camera=camera, fps=float(config.fps),
        audio=(audio if audio is not None else np.zeros(0)).astype(f32), audio_sample_rate=config.audio_sample_rate,
        background=plate, valid=checked.valid.astype(bool), meta=meta, body_warp=body_warp,
    )


def _fill_from_frames(signal: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """signal [T, ...] with the frames outside keep [T] bool replaced by linear interpolation between the
    nearest kept frames (held constant before the first and after the last), so nothing of them remains."""
    kept = np.flatnonzero(keep)
    frames = np.arange(signal.shape[0])
    after = np.clip(np.searchsorted(kept, frames), 1, len(kept) - 1) if len(kept) > 1 else np.zeros_like(frames)
    before = after - 1 if len(kept) > 1 else after
    left, right = kept[before], kept[after]
    weight = np.where(right > left, (frames - left) / np.maximum(right - left, 1), 0.0).clip(0.0, 1.0)
    weight = weight.reshape((-1,) + (1,) * (signal.ndim - 1))
    filled = signal[left] * (1 - weight) + signal[right] * weight
    return np.where(keep.reshape(weight.shape), signal, filled)


def fit_rig_excluding(landmarks: np.ndarray, valid: np.ndarray, held: np.ndarray, width: int, height: int,
                      fps: float, config: RigConfig = RigConfig(),
                      progress: Callable[[float], None] | None = None) -> HeadRig:
    """`rig.fit_rig` on tracked landmarks [T, 478, 3] whose neutral shape, expression basis and training-frame
    poses and coefficients depend on no frame of held [T] bool; the held frames are then posed against that
    neutral and projected onto that basis from their own landmarks (as a new clip would be).

    The rig smooths its tracks over time, so simply excluding the held frames from the medians and the PCA
    would still leak their landmarks into their neighbours: they are first replaced by interpolation.
    """
    if held.shape != valid.shape:
        raise ValueError(f"held must be [T] = {valid.shape}, got {held.shape}")
    if not held.any():
        return rig_module.fit_rig(landmarks, valid, width, height, fps, config, progress)
    keep = ~held
    if not (valid & keep).any():
        raise ValueError("no validly tracked frame is left to fit the rig once the held-out frames are removed")
    fitted = rig_module.fit_rig(_fill_from_frames(landmarks, keep), valid & keep, width, height, fps, config, progress)
    neutral, basis = fitted.neutral, fitted.basis
    rotation, tvecs, head = rig_module.pose_in_head_frame(landmarks.astype(np.float64), neutral, fitted.intrinsics,
                                                          fps, config)
    residuals = rig_module.expression_residuals(head, neutral, fps, config)
    coeffs = residuals.reshape(len(residuals), -1) @ basis.reshape(len(basis), -1).T
    pick = held[:, None]
    return HeadRig(fitted.intrinsics, neutral,
                   np.where(pick[..., None], rotation, fitted.rotation), np.where(pick, tvecs, fitted.translation),
                   np.where(pick[..., None], neutral[None] + residuals, fitted.head_landmarks), basis,
                   np.where(pick, coeffs, fitted.coeffs), fitted.explained_variance)


def save_debug_png(clip: TrackedClip, path: str | Path, num_frames: int = 4) -> None:
    """A picture to look at: sample crops with tracked landmarks (green) and the rig's reprojected neutral +
    expression landmarks (red), the matte, the background plate, and pose / expression curves over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.spatial.transform import Rotation

    picks = np.unique(np.linspace(0, clip.num_frames - 1, num_frames).round().astype(int))
    posed = rig_module.pose_points(clip.expression_landmarks(), clip.rotation, clip.translation)
    projected = rig_module.project(posed, clip.camera)
    columns = max(len(picks), 2)
    figure = plt.figure(figsize=(4 * columns, 12))
    grid = figure.add_gridspec(3, 2 * columns)
    for column, index in enumerate(picks):
        axis = figure.add_subplot(grid[0, 2 * column : 2 * column + 2])
        axis.imshow(clip.frames[index])
        axis.scatter(*clip.landmarks_2d[index].T, s=1.5, c="lime", label="tracked")
        axis.scatter(*projected[index].T, s=1.5, c="red", label="rig reprojected")
        axis.set_title(f"frame {index} ({index / clip.fps:.2f} s){'' if clip.valid[index] else ' invalid'}")
        axis.axis("off")
        if column == 0:
            axis.legend(loc="lower left", fontsize=8, markerscale=4)
    for column, (image, title) in enumerate(((clip.mattes[picks[0]], "matte"), (clip.background, "background plate"))):
        axis = figure.add_subplot(grid[1, 2 * column : 2 * column + 2])
        axis.imshow(image, cmap="gray" if image.ndim == 2 else None)
        axis.set_title(title)
        axis.axis("off")
    times = np.arange(clip.num_frames) / clip.fps
    euler = Rotation.from_matrix(clip.rotation.astype(np.float64)).as_euler("yxz", degrees=True)
    pose_axis = figure.add_subplot(grid[2, :columns])
    for column, name in enumerate(("yaw", "pitch", "roll")):
        pose_axis.plot(times, euler[:, column], label=f"{name} (deg)")
    offsets = (clip.translation - clip.translation.mean(0)) * 1000
    for column, (name, colour) in enumerate(zip("xyz", ("tab:purple", "tab:brown", "tab:gray"))):
        pose_axis.plot(times, offsets[:, column], ":", lw=0.9, color=colour, label=f"t{name} - mean (mm)")
    pose_axis.set_xlabel("time (s)")
    pose_axis.set_title("head pose (solid: rotation deg; dotted: translation - mean, mm)")
    pose_axis.legend(fontsize=8)
    coeff_axis = figure.add_subplot(grid[2, columns:])
    for k in range(min(4, clip.coeffs.shape[1])):
        coeff_axis.plot(times, clip.coeffs[:, k] * 1000, label=f"expr {k} ({clip.explained_variance[k]:.0%})")
    coeff_axis.set_title("expression coefficients (mm)")
    coeff_axis.set_xlabel("time (s)")
    if clip.coeffs.shape[1]:
        coeff_axis.legend(fontsize=8)
    error = clip.meta.get("reprojection_px", {})
    figure.suptitle(f"{Path(clip.meta.get('source', {}).get('path', '?')).name}: {clip.num_frames} frames, "
                    f"reprojection median {error.get('median', float('nan')):.2f} px, "
                    f"p95 {error.get('p95', float('nan')):.2f} px")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    """`python -m avatar.preprocess VIDEO_OR_PHOTO OUT_DIR [--max-seconds S] [--debug-png]` (for inspection)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="track and rig a selfie video or photo into a TrackedClip folder")
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--debug-png", action="store_true", help="also write OUT/debug.png")
    args = parser.parse_args(argv)
    config = PreprocessConfig(fps=args.fps, max_seconds=args.max_seconds,
                              crop=matting.CropConfig(resolution=args.resolution))
    try:
        clip = preprocess(args.source, config)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    clip.save(args.out)
    if args.debug_png:
        save_debug_png(clip, Path(args.out) / "debug.png")
    error = clip.meta["reprojection_px"]
    print(f"{clip.num_frames} frames -> {args.out}; reprojection median {error['median']:.2f} px, "
          f"p95 {error['p95']:.2f} px; notes: {'; '.join(clip.meta['notes']) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
