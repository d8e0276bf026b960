"""Fit mesh-bound Gaussians to a tracked clip: presets, the optimisation loop, densify/prune.

Per iteration one training frame is rendered: the frame's camera-space mesh vertices (precomputed from the
tracked pose and expression coefficients) -> `bind_gaussians` -> `render_gaussians` over a background ->
(1-λ)·L1 + λ·D-SSIM against the target, plus regularisers that keep every Gaussian near its parent triangle.
The background alternates at random (`plate_fraction`):
- a random colour, against the frame composited over the same colour with its selfie matte: the random colour
  makes the Gaussians' alpha learn the matte, which other backgrounds (a colour, an upload) need;
- the clip's background plate, against the raw frame: no matte in the loop, so its errors (flicker at hair and
  shoulders, wisps it misses) are not learnt; this is also how a tracked frame is rendered and scored.
  Held-out, with half the iterations on the plate: German at 512 px and 3,000 iterations 27.44 -> 27.68-27.93 dB
  (two random streams; 28.02 with every iteration on the plate, but then nothing teaches the alpha); the full
  `standard` runs Obama 29.55 -> 30.01, German 28.38 -> 28.52 (bench/RESULTS.md).
Adam with one learning rate per parameter group; every `densify_every` iterations Gaussians with large
accumulated screen-space gradients are cloned (small ones) or split (large ones) and transparent ones are
pruned, never removing the last Gaussian of a triangle.

With `pose_refine_at`, the training frames' rigid head poses are refined against the Gaussians so far at
those points of the schedule (`avatar.pose_refine`: FaceMesh poses are off by up to a degree and several mm of
depth, and misregistered frames teach a blurred average); training continues on the refined vertices.

Checkpoints (`avatar.checkpoint`) are written every `checkpoint_every_s` seconds and at the end; `train()`
resumes from a checkpoint in `checkpoint_dir` when one exists, so a killed run continues where it stopped.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from avatar.binding import bind_gaussians
from avatar.checkpoint import load_checkpoint, make_optimizer, save_checkpoint
from avatar.densify import (
    PARAM_KEYS,
    initial_gaussians,
    plan_densify,
    plan_prune,
    update_optimizer_state,
)
from avatar.losses import box_l1_loss, local_position_penalty, local_scale_penalty, photometric_loss, psnr

ProgressCallback = Callable[[str, float, dict], None]


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (saved in the avatar and in checkpoints)."""

    preset: str = "fast"
    resolution: int = 256  # training/render size in pixels (square crop)
    iterations: int = 3000
    time_budget_s: float = 270.0  # stop early when training alone has used this much wall time
    gaussians_per_face: int = 2
    lr_means: float = 3e-3  # local units (triangle sizes)
    lr_quats: float = 3e-3
    lr_scales: float = 1e-2
    lr_opacity: float = 5e-2
    lr_colors: float = 2e-2
    lr_final_factor: float = 0.1  # means lr decays exponentially to this fraction (colour, opacity: its sqrt)
    dssim_weight: float = 0.2
    # extra L1 over the mouth box (`avatar.evaluate.mouth_box`; needs TrainingData.mouth_boxes), for lip gaps and
    # teeth, a few hundred pixels of the frame. Off in the presets: 0.5 in `fast` left the held-out mouth PSNR
    # where it was (28.47 -> 28.41 dB Obama, 27.44 -> 27.38 German) and moved lip sync both ways (RESULTS.md)
    mouth_weight: float = 0.0
    # mesh parts (`avatar.mesh.PARTS`) whose Gaussians keep their initial values: what the footage cannot show
    # (a photo's tongue: fitted to the few teeth pixels between its lips, it opened as speckles of red, green
    # and blue once the jaw dropped)
    frozen_parts: tuple[str, ...] = ()
    # after training, mouth-inside Gaussians shown less than this many pixels over the training frames take their
    # generic colours back (`avatar.mouth_interior`; 0 = off): a photo's teeth and cavity, speckled otherwise
    unseen_mouth_pixels: float = 0.0
    position_threshold: float = 1.0  # free radius of a Gaussian around its triangle, in triangle sizes
    position_weight: float = 1.0
    max_log_scale: float = math.log(1.5)  # largest free local scale (triangle sizes)
    scale_weight: float = 1.0
    densify_every: int = 200
    densify_from: int = 300
    densify_until_fraction: float = 0.7
    densify_grad_threshold: float = 2e-4  # mean gradient norm of the projected centres, NDC units (as 3DGS)
    split_log_scale: float = math.log(0.5)  # local log scale above which a densified Gaussian splits
    max_gaussians: int = 40000
    prune_opacity: float = 0.01
    random_background: bool = True
    plate_fraction: float = 0.5  # share of iterations over the clip's plate against the raw frame (module doc)
    holdout_every: int = 10
    holdout_seconds: float = 4.0
    checkpoint_every_s: float = 120.0
    checkpoint_every_iterations: int = 0  # 0: by time only (tests use iterations for determinism)
    preview_every: int = 500
    # schedule fractions at which the training frames' head poses are refined against the avatar so far
    # (`avatar.pose_refine`; needs TrainingData.poses); held-out frames are refined once, after training
    pose_refine_at: tuple[float, ...] = ()
    pose_refine_steps: int = 8  # Adam steps per frame and pass
    pose_refine_resolution: int = 256  # render-and-compare size in pixels
    pose_refine_max_frames: int = 0  # frames fitted per pass, the rest interpolated (0: all; see PoseRefineOptions)
    seed: int = 0
    backend: str = "auto"

    def __post_init__(self) -> None:
        if not 0.0 <= self.plate_fraction <= 1.0:
            raise ValueError(f"plate_fraction must be in [0, 1], got {self.plate_fraction}")
        self.pose_refine_at = tuple(float(f) for f in self.pose_refine_at)  # JSON gives a list
        self.frozen_parts = tuple(str(part) for part in self.frozen_parts)
        if not self.unseen_mouth_pixels >= 0.0:
            raise ValueError(f"unseen_mouth_pixels must be >= 0, got {self.unseen_mouth_pixels}")
        if any(not 0.0 <= f < 1.0 for f in self.pose_refine_at) or list(self.pose_refine_at) != sorted(self.pose_refine_at):
            raise ValueError(f"pose_refine_at must be increasing fractions in [0, 1), got {self.pose_refine_at}")

    def pose_refine_options(self, steps_factor: int = 1):
        """The refinement options of this run (`avatar.pose_refine.PoseRefineOptions`)."""
        from avatar.pose_refine import PoseRefineOptions

        return PoseRefineOptions(steps=self.pose_refine_steps * steps_factor, resolution=self.pose_refine_resolution,
                                 max_frames=self.pose_refine_max_frames)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "TrainConfig":
        known = {f for f in TrainConfig.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training config fields {sorted(unknown)}")
        return TrainConfig(**data)


PRESETS: dict[str, TrainConfig] = {
    # <= 5 min here: 256 px; the 3.7 min training budget (one pose-refinement pass at 128 px inside it) is what
    # stops it on a 2-core machine, and with preprocessing and the held-out frames' refinement the build ends
    # near 4.5 min. 10k Gaussians keep rendering fast. (Refining at 256 px took the build to 5.4 min.) A pass
    # fits at most 400 frames (a 20 s clip's training frames; longer videos interpolate between them): fitting
    # all 1,260 of a 60 s video took 3.4 of the 3.7 min, leaving 1,800 iterations instead of ~4,800.
    "fast": TrainConfig(preset="fast", resolution=256, iterations=6000, time_budget_s=220.0, max_gaussians=10000,
                        pose_refine_at=(0.3,), pose_refine_resolution=128, pose_refine_max_frames=400),
    # <= 30 min here: 512 px, more Gaussians and iterations (capped so it still renders at >= 25 FPS); the 25 min
    # budget stops it (about 0.11 s an iteration at 30k Gaussians, and two pose-refinement passes of about 2 min
    # each inside it); the held-out frames' refinement adds about 2 min after it.
    "standard": TrainConfig(preset="standard", resolution=512, iterations=14000, time_budget_s=1500.0,
                            densify_every=300, densify_from=500, max_gaussians=30000, preview_every=1000,
                            pose_refine_at=(0.25, 0.6), pose_refine_steps=10, pose_refine_max_frames=400),
    # CI: seconds, tiny images.
    "tiny": TrainConfig(preset="tiny", resolution=48, iterations=60, time_budget_s=600.0, gaussians_per_face=1,
                        densify_every=20, densify_from=20, densify_grad_threshold=1e-5, preview_every=0,
                        checkpoint_every_s=3600.0, backend="auto"),
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """A copy of preset `name` (fast, standard, tiny) with field overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)


@dataclass
class TrainingData:
    """Everything the loop needs, already at the training resolution.

    frames: [T, H, W, 3] uint8 RGB; mattes: [T, H, W] uint8 (person = 255); kept as bytes so a 30 s clip at
    512 px fits in memory, converted per frame by `frame(i)` / `matte(i)`. vertices: [T, V, 3] extended-mesh
    vertices in camera space; faces: [F, 3] long; train_indices / holdout_indices: frame numbers.
    """

    frames: Tensor
    mattes: Tensor
    vertices: Tensor
    faces: Tensor
    camera: Any  # render.Camera at the training resolution
    train_indices: list[int]
    holdout_indices: list[int]
    head_boxes: Tensor | None = None  # [T, 4] x0, y0, x1, y1 pixels of the head region (metrics only)
    mouth_boxes: Tensor | None = None  # [T, 4] the same of the mouth (lips and teeth), for `mouth_weight`
    plate: Tensor | None = None  # [H, W, 3] uint8 background plate (None: random colours only)
    fingerprint: str = ""  # identifies the clip and split; a checkpoint of other data is not resumed
    poses: Any = None  # avatar.pose_refine.PoseTrack that made `vertices` (needed to refine poses), or None

    def __post_init__(self) -> None:
        t = self.frames.shape[0]
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != torch.uint8:
            raise ValueError(f"frames must be uint8 [T, H, W, 3], got {self.frames.dtype} {tuple(self.frames.shape)}")
        if self.mattes.dtype != torch.uint8:
            raise ValueError(f"mattes must be uint8, got {self.mattes.dtype}")
        if self.mattes.shape != self.frames.shape[:3]:
            raise ValueError(f"mattes must be [T, H, W] = {tuple(self.frames.shape[:3])}, got {tuple(self.mattes.shape)}")
        if self.vertices.ndim != 3 or self.vertices.shape[0] != t or self.vertices.shape[-1] != 3:
            raise ValueError(f"vertices must be [T={t}, V, 3], got {tuple(self.vertices.shape)}")
        if (self.camera.height, self.camera.width) != tuple(self.frames.shape[1:3]):
            raise ValueError("camera size differs from the frame size")
        if not self.train_indices:
            raise ValueError("no training frames are left after holding frames out; use a longer clip")
        for name in ("head_boxes", "mouth_boxes"):
            boxes = getattr(self, name)
            if boxes is not None and tuple(boxes.shape) != (t, 4):
                raise ValueError(f"{name} must be [T={t}, 4], got {tuple(boxes.shape)}")
        if self.poses is not None and self.poses.rotations.shape[0] != t:
            raise ValueError(f"poses must cover the T={t} frames, got {self.poses.rotations.shape[0]}")
        if self.plate is not None and (self.plate.dtype != torch.uint8 or self.plate.shape != self.frames.shape[1:]):
            raise ValueError(f"plate must be uint8 [H, W, 3] = {tuple(self.frames.shape[1:])}, got "
                             f"{self.plate.dtype} {tuple(self.plate.shape)}")

    def frame(self, index: int) -> Tensor:  # [H, W, 3] float in [0, 1]
        return self.frames[index].float() / 255.0

    def matte(self, index: int) -> Tensor:  # [H, W] float in [0, 1]
        return self.mattes[index].float() / 255.0


def training_pair(data: TrainingData, index: int, config: TrainConfig) -> tuple[Tensor, Tensor]:
    """One iteration's (background, target): [H, W, 3] plate and raw frame with probability `plate_fraction`
    (clips with a plate), else a [3] colour (random, or black) and the frame composited over it by its matte."""
    if data.plate is not None and config.plate_fraction > 0 and float(torch.rand(())) < config.plate_fraction:
        return data.plate.float() / 255.0, data.frame(index)
    background = torch.rand(3) if config.random_background else torch.zeros(3)
    return background, composite(data.frame(index), data.matte(index), background)


def tail_frame_count(fps: float, holdout_seconds: float) -> int:
    """Frames in the held-out tail of `holdout_seconds` at `fps`."""
    return int(round(holdout_seconds * fps))


def split_frames(num_frames: int, fps: float, holdout_every: int, holdout_seconds: float) -> tuple[list[int], list[int]]:
    """Held-out split: every `holdout_every`-th frame (0, 10, 20...) and the last `holdout_seconds` are held out."""
    tail = tail_frame_count(fps, holdout_seconds)
    if tail >= num_frames:
        raise ValueError(f"holding out the last {holdout_seconds} s leaves no training frames in a {num_frames / fps:.1f} s clip")
    held = set(range(num_frames - tail, num_frames))
    if holdout_every > 0:
        held.update(range(0, num_frames, holdout_every))
    train = [i for i in range(num_frames) if i not in held]
    return train, sorted(held)


@dataclass
class TrainResult:
    """What a run produced: final parameters (face-local), statistics and the loss/PSNR history."""

    params: dict[str, Tensor]
    parent: Tensor  # [N] long
    iterations: int
    seconds: float
    resumed_from: int
    history: dict[str, list[float]] = field(default_factory=dict)
    poses: Any = None  # the PoseTrack after the last pose refinement (None: no refinement ran)


def initial_gaussians_for(data: TrainingData, config: TrainConfig, sample_frames: int = 16):
    """Starting Gaussians coloured from up to `sample_frames` training frames spread over the clip."""
    picks = torch.linspace(0, len(data.train_indices) - 1, min(sample_frames, len(data.train_indices))).round().long()
    indices = [data.train_indices[int(i)] for i in picks]
    return initial_gaussians(data.vertices[indices], data.faces, torch.stack([data.frame(i) for i in indices]),
                             torch.stack([data.matte(i) for i in indices]), data.camera, config.gaussians_per_face,
                             seed=config.seed)


def render_frame(params: dict[str, Tensor], parent: Tensor, vertices: Tensor, faces: Tensor, camera: Any,
                 background: Tensor, backend: str = "auto", keep_means_grad: bool = False):
    """Bind the Gaussians to one frame's vertices [V, 3] and render; returns (RenderOutput, bound means)."""
    from render import render_gaussians

    bound = bind_gaussians(vertices, faces, parent, params["local_means"], params["local_quats"], params["local_log_scales"])
    means = bound.means
    if keep_means_grad:
        means.retain_grad()
    out = render_gaussians(means, bound.quats, bound.log_scales, params["opacity_logits"], params["colors"], camera,
                           background, backend=backend)
    return out, means


def composite(frame: Tensor, matte: Tensor, background: Tensor) -> Tensor:
    """frame [H, W, 3] over background ([3] or [H, W, 3]) with matte [H, W]."""
    return frame * matte[..., None] + background * (1 - matte[..., None])


def _apply_plan(params: dict[str, Tensor], optimizer: torch.optim.Adam, plan) -> dict[str, Tensor]:
    """Replace every parameter by the planned one, carrying Adam moments along `plan.source_index`."""
    new_params = {k: plan.params[k].detach().clone().requires_grad_(True) for k in PARAM_KEYS}
    update_optimizer_state(optimizer, params, new_params, plan.source_index)
    return new_params


def train(data: TrainingData, config: TrainConfig, checkpoint_dir: Path | None = None,
          progress: ProgressCallback | None = None, preview: Callable[[dict, Tensor, int], None] | None = None,
          resume: bool = True, initial: tuple[dict[str, Tensor], Tensor] | None = None,
          frozen_faces: Tensor | None = None) -> TrainResult:
    """Optimise Gaussians bound to `data`'s mesh; resumes from `checkpoint_dir` when it holds a checkpoint.

    With `config.pose_refine_at` and `data.poses`, the training frames' head poses are refined against the
    Gaussians so far at those schedule fractions (`avatar.pose_refine`) and training continues on the refined
    vertices; the refined track is in the result (and in checkpoints, so a resumed run keeps it).

    progress(stage, fraction, info) is called about every 1 % with info {"iteration", "loss", "psnr"};
    preview(params, parent, iteration) every `config.preview_every` iterations (for preview PNGs).
    initial: starting (params, parent) instead of `initial_gaussians` on the first training frame.
    frozen_faces: [F] bool, triangles whose Gaussians keep their values (no gradient step, never densified or
    pruned), e.g. `ExtendedMeshTopology.parts_mask(config.frozen_parts)`.
    """
    if frozen_faces is not None and tuple(frozen_faces.shape) != (int(data.faces.shape[0]),):
        raise ValueError(f"frozen_faces must be [{int(data.faces.shape[0])}], got {list(frozen_faces.shape)}")
    torch.manual_seed(config.seed)
    restored = None
    if checkpoint_dir is not None and resume:
        restored = load_checkpoint(checkpoint_dir, config, data.fingerprint)
    refinements = 0
    if restored is not None:
        params, parent, optimizer, stats, start, elapsed_before, history, refined = restored
        if refined is not None and data.poses is not None:
            rotations, translations, refinements = refined
            data = with_poses(data, replace(data.poses, rotations=rotations, translations=translations))
    else:
        params, parent = initial if initial is not None else initial_gaussians_for(data, config)
        params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        optimizer = make_optimizer(params, config)
        stats = {"grad_accum": torch.zeros(parent.shape[0]), "grad_count": torch.zeros(parent.shape[0])}
        start, elapsed_before, history = 0, 0.0, {"iteration": [], "loss": [], "psnr": []}
    num_faces = int(data.faces.shape[0])
    base_rates = {"colors": config.lr_colors, "opacity_logits": config.lr_opacity}
    run_start = time.monotonic()
    last_checkpoint = run_start
    report_every = max(1, config.iterations // 100)
    iteration = start
    window_loss, window_psnr = [], []
    refine = config.pose_refine_at if data.poses is not None else ()
    while iteration < config.iterations:
        elapsed = elapsed_before + (time.monotonic() - run_start)
        if elapsed > config.time_budget_s:
            break
        # Schedules follow whichever budget runs out first (iterations or time), so a slow machine still
        # anneals and stops densifying before the end.
        schedule = max(iteration / config.iterations, elapsed / config.time_budget_s)
        if refinements < len(refine) and schedule >= refine[refinements]:
            from avatar.pose_refine import refine_poses

            def refine_progress(stage: str, fraction: float, info: dict) -> None:
                if progress is not None:
                    progress(stage, fraction, {**info, "iteration": iteration, "pass": refinements + 1})

            track = refine_poses(params, parent, data.poses, data, data.train_indices, config.pose_refine_options(),
                                 config.backend, refine_progress)
            data = with_poses(data, track)
            refinements += 1
            if checkpoint_dir is not None:  # a pass is minutes of work: keep it even if the run is killed next
                last_checkpoint = time.monotonic()
                save_checkpoint(checkpoint_dir, params, parent, optimizer, stats, iteration,
                                elapsed_before + last_checkpoint - run_start, config, history, data.fingerprint,
                                data.poses, refinements)
            continue  # the refinement took time: re-check the budget and schedule before the next iteration
        index = data.train_indices[int(torch.randint(len(data.train_indices), (1,)))]
        background, target = training_pair(data, index, config)
        out, means = render_frame(params, parent, data.vertices[index], data.faces, data.camera, background,
                                  config.backend, keep_means_grad=True)
        loss = photometric_loss(out.color, target, config.dssim_weight)
        if config.mouth_weight > 0 and data.mouth_boxes is not None:
            loss = loss + config.mouth_weight * box_l1_loss(out.color, target, data.mouth_boxes[index])
        loss = loss + config.position_weight * local_position_penalty(params["local_means"], config.position_threshold)
        loss = loss + config.scale_weight * local_scale_penalty(params["local_log_scales"], config.max_log_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            frozen = None if frozen_faces is None else frozen_faces[parent]  # [N]
            if frozen is not None:
                for value in params.values():
                    if value.grad is not None:
                        value.grad[frozen] = 0.0  # Adam's moments stay 0, so the step is 0 too
            if means.grad is not None:
                # Gradient w.r.t. the projected centre in normalised device units (pixels * 2 / width), the
                # quantity 3DGS thresholds: d loss / d xy_cam * z / fx gives per-pixel, * width / 2 gives NDC.
                z = means[:, 2:3].clamp_min(1e-6)
                screen = means.grad[:, :2] * z / data.camera.fx * (data.camera.width / 2)
                stats["grad_accum"] += screen.norm(dim=-1) if frozen is None else screen.norm(dim=-1) * ~frozen
                stats["grad_count"] += 1
        optimizer.step()
        for group in optimizer.param_groups:
            if group["name"] == "local_means":
                group["lr"] = config.lr_means * config.lr_final_factor ** schedule
            elif group["name"] in ("colors", "opacity_logits"):
                # a milder anneal: late updates should not chase the last few random frames
                group["lr"] = base_rates[group["name"]] * config.lr_final_factor ** (0.5 * schedule)
        iteration += 1
        window_loss.append(float(loss.detach()))
        window_psnr.append(psnr(out.color, target))

        densifying = config.densify_from <= iteration and schedule <= config.densify_until_fraction
        if densifying and iteration % config.densify_every == 0:
            mean_grad = stats["grad_accum"] / stats["grad_count"].clamp_min(1)
            plan = plan_densify(params, parent, mean_grad > config.densify_grad_threshold, config.split_log_scale,
                                config.max_gaussians, num_faces, score=mean_grad)
            if plan is not None:
                params, parent = _apply_plan(params, optimizer, plan), plan.parent
            faint = torch.sigmoid(params["opacity_logits"].detach()) < config.prune_opacity
            plan = plan_prune(params, parent, faint if frozen_faces is None else faint & ~frozen_faces[parent],
                              num_faces)
            if plan is not None:
                params, parent = _apply_plan(params, optimizer, plan), plan.parent
            stats = {"grad_accum": torch.zeros(parent.shape[0]), "grad_count": torch.zeros(parent.shape[0])}

        if iteration % report_every == 0 or iteration == config.iterations:
            history["iteration"].append(iteration)
            history["loss"].append(sum(window_loss) / len(window_loss))
            history["psnr"].append(sum(window_psnr) / len(window_psnr))
            window_loss, window_psnr = [], []
            if progress is not None:
                progress("training", max(iteration / config.iterations, elapsed / config.time_budget_s),
                         {"iteration": iteration, "loss": history["loss"][-1], "psnr": history["psnr"][-1],
                          "gaussians": int(parent.shape[0])})
        if preview is not None and config.preview_every and iteration % config.preview_every == 0:
            preview({k: v.detach() for k, v in params.items()}, parent, iteration)
        now = time.monotonic()
        due_by_count = config.checkpoint_every_iterations and iteration % config.checkpoint_every_iterations == 0
        if checkpoint_dir is not None and (due_by_count or now - last_checkpoint > config.checkpoint_every_s):
            save_checkpoint(checkpoint_dir, params, parent, optimizer, stats, iteration,
                            elapsed_before + now - run_start, config, history, data.fingerprint, data.poses,
                            refinements)
            last_checkpoint = now
    elapsed = elapsed_before + time.monotonic() - run_start
    if checkpoint_dir is not None:
        save_checkpoint(checkpoint_dir, params, parent, optimizer, stats, iteration, elapsed, config, history,
                        data.fingerprint, data.poses, refinements)
    return TrainResult(params={k: v.detach() for k, v in params.items()}, parent=parent, iterations=iteration,
                       seconds=elapsed, resumed_from=start, history=history,
                       poses=data.poses if refinements else None)


def with_poses(data: TrainingData, track) -> TrainingData:
    """`data` with its head poses (and so its vertices) replaced by those of PoseTrack `track`."""
    return replace(data, poses=track, vertices=track.vertices())
