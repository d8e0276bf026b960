"""From a tracked clip to a saved avatar: training data at the preset's resolution, training with previews,
held-out evaluation, and the atomic save into the library.

This is the orchestration that the CLI (`avatar.cli`), the photo path (`avatar.photo`) and the benchmark
(`bench.train`) share; the math lives in `avatar.train`, `avatar.evaluate` and `avatar.model`.
"""
from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from avatar.evaluate import evaluate_frames, head_box, mouth_box, save_curves, save_side_by_side
from avatar.model import Avatar
from avatar.mouth_interior import blend_weights, generic_mouth_colors, reset_unseen_mouth
from avatar.pose_refine import PoseTrack, refine_poses
from avatar.rig import Intrinsics
from avatar.train import (TrainConfig, TrainingData, TrainResult, initial_gaussians_for, split_frames,
                          tail_frame_count, train, with_poses)

ProgressCallback = Callable[[str, float, dict], None]
PREVIEW_FRAMES = 3
# held-out frames are refined once, from the FaceMesh pose, so they get more steps than a training pass
HELD_OUT_STEPS_FACTOR = 2


@dataclass
class PreparedClip:
    """A clip's training data plus what the avatar keeps (rig, topology, plate at the training size)."""

    data: TrainingData
    rig: object  # avatar.mesh.ExtendedMeshRig
    topology: object  # avatar.mesh.ExtendedMeshTopology
    camera: Intrinsics
    # True when no held-out frame shaped the neutral, the expression basis or the plate (preprocessed with
    # that holdout), or when nothing is held out
    rig_excludes_held_out: bool = True
    tail_start: int | None = None  # first frame of the held-out tail (None: no tail held out)

    @property
    def plate(self) -> Tensor:  # [H, W, 3] uint8 at the training resolution: the one training renders over
        return self.data.plate


def _resize_bytes(images: np.ndarray, size: int) -> Tensor:
    """uint8 [T, H, W(, C)] -> uint8 [T, size, size(, C)] with antialiased bilinear filtering, in chunks."""
    tensor = torch.from_numpy(np.ascontiguousarray(images))
    if tensor.shape[1] == size and tensor.shape[2] == size:
        return tensor.clone()
    has_channels = tensor.ndim == 4
    out = []
    for chunk in tensor.split(32):
        x = chunk.float() if has_channels else chunk.float()[..., None]
        x = F.interpolate(x.permute(0, 3, 1, 2), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        x = x.permute(0, 2, 3, 1).round().clamp(0, 255).to(torch.uint8)
        out.append(x if has_channels else x[..., 0])
    return torch.cat(out)


def _fingerprint(clip, train_indices: list[int], holdout_indices: list[int]) -> str:
    """A short hash of the clip's pixels, tracking and split (so a checkpoint is only resumed on the same data)."""
    digest = hashlib.sha1()
    digest.update(np.ascontiguousarray(clip.frames[:: max(1, clip.num_frames // 8)]).tobytes())
    digest.update(np.ascontiguousarray(clip.coeffs).tobytes())
    digest.update(repr((train_indices, holdout_indices)).encode())
    return digest.hexdigest()[:16]


def prepare_clip(clip, config: TrainConfig, holdout_seconds: float | None = None,
                 holdout_every: int | None = None) -> PreparedClip:
    """Resize the clip to `config.resolution`, build the extended-mesh rig and per-frame camera-space vertices,
    and split frames (every `holdout_every`-th and the last `holdout_seconds` held out; frames where tracking
    failed are used for neither). A one-frame clip (a photo) trains on its frame and holds nothing out."""
    from render import Camera

    from avatar.body_tracking import fit_body_sway
    from avatar.mesh import build_rig, build_topology, with_body_pose

    resolution = config.resolution
    t = clip.num_frames
    tail_start = None
    if t == 1:
        train_indices, holdout_indices = [0], []
    else:
        seconds = config.holdout_seconds if holdout_seconds is None else holdout_seconds
        train_indices, holdout_indices = split_frames(
            t, clip.fps, config.holdout_every if holdout_every is None else holdout_every, seconds)
        tail_frames = tail_frame_count(clip.fps, seconds)
        tail_start = t - tail_frames if tail_frames > 0 else None
        valid = set(np.flatnonzero(clip.valid).tolist())
        train_indices = [i for i in train_indices if i in valid]
        holdout_indices = [i for i in holdout_indices if i in valid]
    honest = _rig_excludes(clip, holdout_indices)
    if not honest:
        warnings.warn("the clip's neutral shape, expression basis and background plate were fitted on every frame, "
                      "held-out ones included; preprocess it with the same holdout for an honest held-out score",
                      stacklevel=2)
    neutral = torch.from_numpy(clip.neutral).float()
    rotations, translations = torch.from_numpy(clip.rotation).float(), torch.from_numpy(clip.translation).float()
    # the body (shoulders, collar) rests at the training frames' mean head pose, moved per frame by the tracked
    # body warp (held-out frames too: tracked from their own pixels, like their head poses)
    tracked_body = bool(clip.meta.get("body_motion", {}).get("tracked", False))
    rig = with_body_pose(build_rig(neutral, tracked_body=tracked_body), rotations[train_indices],
                         translations[train_indices])
    body_warps = torch.from_numpy(clip.body_warp).float()
    if tracked_body:  # how the shoulders sway with the head, for animation from speech
        rig = replace(rig, body_sway=fit_body_sway(rotations[train_indices], translations[train_indices],
                                                   rig.body_rotation, rig.body_translation,
                                                   body_warps[train_indices]))
    topology = build_topology(rig.resolution)
    poses = PoseTrack(neutral, torch.from_numpy(clip.basis).float(), rig, rotations, translations,
                      torch.from_numpy(clip.coeffs).float(), body_warps)
    camera = clip.camera.scaled(resolution, resolution)
    plate = _resize_bytes(clip.background[None], resolution)[0]
    landmarks = torch.from_numpy(clip.landmarks_2d).float() * (resolution / clip.camera.width)  # [T, 478, 2]
    data = TrainingData(
        frames=_resize_bytes(clip.frames, resolution), mattes=_resize_bytes(clip.mattes, resolution),
        vertices=poses.vertices(), faces=topology.faces,
        camera=Camera(camera.fx, camera.fy, camera.cx, camera.cy, resolution, resolution, torch.eye(4)),
        train_indices=train_indices, holdout_indices=holdout_indices,
        head_boxes=head_box(landmarks), mouth_boxes=mouth_box(landmarks),
        fingerprint=_fingerprint(clip, train_indices, holdout_indices), plate=plate, poses=poses,
    )
    return PreparedClip(data, rig, topology, camera, honest, tail_start)


def _rig_excludes(clip, holdout_indices: list[int]) -> bool:
    """Whether the frames holdout_indices were all left out when the clip's rig and plate were fitted."""
    from avatar.preprocess import Holdout

    if not holdout_indices:
        return True
    fitted_without = clip.meta.get("holdout")
    if not fitted_without:
        return False
    held = Holdout(float(fitted_without["seconds"]), int(fitted_without["every"])).mask(clip.num_frames, clip.fps)
    return bool(held[holdout_indices].all())


def _preview_indices(prepared: PreparedClip) -> list[int]:
    pool = prepared.data.holdout_indices or prepared.data.train_indices
    picks = np.linspace(0, len(pool) - 1, min(PREVIEW_FRAMES, len(pool))).round().astype(int)
    return [pool[i] for i in picks]


def train_and_evaluate(prepared: PreparedClip, config: TrainConfig, work_dir: Path,
                       checkpoint_dir: Path | None = None, progress: ProgressCallback | None = None,
                       resume: bool = True) -> tuple[TrainResult, dict, dict[str, Path]]:
    """Train, then score held-out frames. Writes preview.png (real | rendered) and curves.png into work_dir
    (previews are refreshed during training and their path is passed to `progress` as info["preview"]).

    The metrics dict holds psnr, ssim, render_fps, held_out_frames; a clip without held-out frames (a photo)
    gets fit_psnr_training_frame / fit_ssim_training_frame instead, never labelled as held out.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    data = prepared.data
    plate = prepared.plate.float() / 255.0
    preview_path = work_dir / "preview.png"
    picks = _preview_indices(prepared)
    latest = {}

    def preview(params: dict, parent: Tensor, iteration: int) -> None:
        with torch.no_grad():
            renders = [evaluate_frames(params, parent, data, [i], plate, config.backend)[1].get(i) for i in picks]
        shown = [(data.frame(i), r) for i, r in zip(picks, renders) if r is not None]
        if shown:
            save_side_by_side([a for a, _ in shown], [b for _, b in shown], preview_path, f"iteration {iteration}",
                              real_label="real (held out)" if data.holdout_indices else "real (trained on)")
            latest["preview"] = str(preview_path)

    def report(stage: str, fraction: float, info: dict) -> None:
        if progress is not None:
            progress(stage, fraction, {**info, **latest})

    initial = initial_gaussians_for(data, config)
    generic_mouth_colors(initial[0], initial[1], prepared.topology)
    result = train(data, config, checkpoint_dir=checkpoint_dir, progress=report, preview=preview, resume=resume,
                   initial=initial, frozen_faces=prepared.topology.parts_mask(config.frozen_parts))
    held_out = bool(data.holdout_indices)
    facemesh_scores, reset = {}, {}
    if result.poses is not None:
        data = with_poses(data, result.poses)
    if config.unseen_mouth_pixels > 0:
        shown = blend_weights(result.params, result.parent, data, data.train_indices, config.backend)
        params, reset["unseen_mouth_reset"] = reset_unseen_mouth(result.params, result.parent, prepared.topology,
                                                                 shown, config.unseen_mouth_pixels)
        result = replace(result, params=params)
    if result.poses is not None:
        if held_out:
            # held-out frames are tracked like the training frames were: FaceMesh, then their head poses refined
            # against the finished avatar (its Gaussians never see these pictures); the FaceMesh-only score is kept
            plain, _ = evaluate_frames(result.params, result.parent, data, data.holdout_indices, plate, config.backend)
            facemesh_scores = {"psnr_facemesh_poses": plain.psnr_db, "ssim_facemesh_poses": plain.ssim}
            every_frame = replace(config.pose_refine_options(HELD_OUT_STEPS_FACTOR), max_frames=0)  # all scored
            track = refine_poses(result.params, result.parent, data.poses, data, data.holdout_indices, every_frame,
                                 config.backend,
                                 lambda stage, fraction, info: report(stage, fraction, info))
            data = with_poses(data, track)
        result = replace(result, poses=data.poses)
    report("evaluating", 0.0, {"iteration": result.iterations})
    scored, renders = evaluate_frames(result.params, result.parent, data,
                                      data.holdout_indices if held_out else data.train_indices, plate, config.backend)
    shown = [i for i in picks if i in renders]
    label = "held-out frames" if held_out else "training frame (nothing held out)"
    save_side_by_side([data.frame(i) for i in shown], [renders[i] for i in shown], preview_path,
                      f"{label}: PSNR {scored.psnr_db:.2f} dB, SSIM {scored.ssim:.3f} (head region)",
                      real_label="real (held out)" if held_out else "real (trained on)")
    if held_out:
        metrics = {**scored.to_dict(), "rig_excludes_held_out": prepared.rig_excludes_held_out,
                   **held_out_parts(scored, data.holdout_indices, prepared.tail_start), **facemesh_scores}
    else:
        metrics = {"fit_psnr_training_frame": scored.psnr_db, "fit_ssim_training_frame": scored.ssim,
                   "render_fps": scored.render_fps, "held_out_frames": 0}
    metrics.update(reset)
    curves_path = save_curves(result.history, work_dir / "curves.png", scored.psnr_db if held_out else None)
    report("evaluating", 1.0, {"iteration": result.iterations})
    return result, metrics, {"preview.png": preview_path, "curves.png": curves_path}


def held_out_parts(scored, holdout_indices: list[int], tail_start: int | None) -> dict:
    """PSNR of the held-out tail (the last seconds: new poses and expressions, extrapolation) and of the frames
    held out between training frames (interpolation), pooled like the overall PSNR; keys only for parts that
    hold a scored frame."""
    start = float("inf") if tail_start is None else tail_start
    parts = {"psnr_tail": [i for i in holdout_indices if i >= start],
             "psnr_interleaved": [i for i in holdout_indices if i < start]}
    return {key: value for key, indices in parts.items()
            if (value := scored.pooled_psnr(indices)) is not None}


def assemble_avatar(name: str, clip, prepared: PreparedClip, config: TrainConfig, result: TrainResult,
                    metrics: dict, extra_stats: dict | None = None) -> Avatar:
    """Pack a training result and its clip into an `Avatar` (validated)."""
    from avatar.mesh import PARTS

    gaussians = {"parent": result.parent.long(), **{k: v.detach().float().contiguous() for k, v in result.params.items()}}
    # the head-pose track: refined against the avatar where training refined it (`avatar.pose_refine`)
    rotations, translations = ((result.poses.rotations, result.poses.translations) if result.poses is not None else
                               (torch.from_numpy(clip.rotation).float(), torch.from_numpy(clip.translation).float()))
    # 4 decimals of a minute (6 ms): a short run (a photo, a CI preset) never reads as 0 minutes of training
    stats = {"iterations": result.iterations, "train_seconds": round(result.seconds, 3),
             "train_minutes": round(result.seconds / 60, 4), "num_gaussians": int(result.parent.shape[0]),
             "train_frames": len(prepared.data.train_indices), "held_out_frames": len(prepared.data.holdout_indices),
             "source": clip.meta.get("source", {}), **(extra_stats or {})}
    return Avatar(
        name=name, camera=prepared.camera, gaussians=gaussians, neutral=torch.from_numpy(clip.neutral).float(),
        expression_basis=torch.from_numpy(clip.basis).float(), faces=prepared.topology.faces,
        face_part=prepared.topology.face_part, mesh_rig=prepared.rig.to_tensors(), mesh_rig_meta=prepared.rig.metadata(),
        rotations=rotations.float().contiguous(), translations=translations.float().contiguous(),
        expression_coeffs=torch.from_numpy(clip.coeffs).float(), background=prepared.plate, fps=float(clip.fps),
        config=config.to_dict(), stats=stats, metrics=metrics, parts=list(PARTS),
    )


def build_avatar_from_clip(clip, name: str, config: TrainConfig, destination: Path, checkpoint_dir: Path | None,
                           progress: ProgressCallback | None = None, holdout_seconds: float | None = None,
                           extra_stats: dict | None = None, holdout_every: int | None = None,
                           resume: bool = True) -> tuple[Avatar, PreparedClip]:
    """prepare -> train -> evaluate -> save atomically to `destination`; returns the saved avatar and the
    prepared clip (its per-frame vertices render any tracked frame, e.g. a held-out tail)."""
    start = time.monotonic()
    prepared = prepare_clip(clip, config, holdout_seconds=holdout_seconds, holdout_every=holdout_every)
    with tempfile.TemporaryDirectory(prefix="avatar-train-") as scratch:
        result, metrics, files = train_and_evaluate(prepared, config, Path(scratch), checkpoint_dir, progress, resume)
        avatar = assemble_avatar(name, clip, prepared, config, result, metrics,
                                 {"build_seconds": round(time.monotonic() - start, 1), **(extra_stats or {})})
        avatar.save(destination, extra_files=files)
    if result.poses is not None:  # the tracked frames as training and evaluation posed them
        prepared = replace(prepared, data=with_poses(prepared.data, result.poses))
    if checkpoint_dir is not None:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)  # the avatar is safely saved; the checkpoint is spent
    return avatar, prepared
