"""Training checkpoints: parameters, Adam state, densify statistics, refined poses and the RNG state.

Tensors go to `state.safetensors`, the rest (iteration, elapsed time, config, learning rates, history, the data's
fingerprint) to `state.json`, written together atomically; never pickles. `load_checkpoint` refuses a checkpoint of
another version, preset or resolution, and ignores one made from other data (a stale run).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from avatar.densify import PARAM_KEYS
from avatar.library import atomic_folder

CHECKPOINT_VERSION = 1


def make_optimizer(params: dict[str, Tensor], config) -> torch.optim.Adam:
    """Adam with one learning rate per parameter group (`avatar.train.TrainConfig` lr_*)."""
    rates = {"local_means": config.lr_means, "local_quats": config.lr_quats, "local_log_scales": config.lr_scales,
             "opacity_logits": config.lr_opacity, "colors": config.lr_colors}
    groups = [{"params": [params[k]], "lr": rates[k], "name": k} for k in PARAM_KEYS]
    return torch.optim.Adam(groups, eps=1e-15)


def checkpoint_paths(checkpoint_dir: Path) -> tuple[Path, Path]:
    return checkpoint_dir / "state.safetensors", checkpoint_dir / "state.json"


def save_checkpoint(checkpoint_dir: Path, params: dict[str, Tensor], parent: Tensor, optimizer: torch.optim.Adam,
                    stats: dict[str, Tensor], iteration: int, elapsed_s: float, config,
                    history: dict[str, list[float]], fingerprint: str = "", poses=None, pose_refinements: int = 0) -> None:
    """Write parameters, Adam moments, densify statistics, refined poses (a PoseTrack or None) and the RNG
    state atomically."""
    tensors = {f"param.{k}": v.detach().contiguous() for k, v in params.items()}
    tensors["parent"] = parent.contiguous()
    steps = {}
    for group in optimizer.param_groups:
        state = optimizer.state.get(group["params"][0], {})
        if state:
            tensors[f"adam.{group['name']}.exp_avg"] = state["exp_avg"].contiguous()
            tensors[f"adam.{group['name']}.exp_avg_sq"] = state["exp_avg_sq"].contiguous()
            steps[group["name"]] = float(state["step"])
    for k, v in stats.items():
        tensors[f"stats.{k}"] = v.contiguous()
    tensors["rng"] = torch.get_rng_state()
    if poses is not None:
        tensors["poses.rotations"] = poses.rotations.contiguous()
        tensors["poses.translations"] = poses.translations.contiguous()
    meta = {"version": CHECKPOINT_VERSION, "iteration": iteration, "elapsed_s": elapsed_s, "config": config.to_dict(),
            "adam_steps": steps, "lrs": {g["name"]: g["lr"] for g in optimizer.param_groups}, "history": history,
            "fingerprint": fingerprint, "pose_refinements": pose_refinements if poses is not None else 0}
    with atomic_folder(checkpoint_dir) as staging:
        tensor_path, json_path = checkpoint_paths(staging)
        save_file(tensors, str(tensor_path))
        json_path.write_text(json.dumps(meta))


def load_checkpoint(checkpoint_dir: Path, config, fingerprint: str | None = None):
    """Read a checkpoint; returns (params, parent, optimizer, stats, iteration, elapsed, history, refined) or
    None, where refined is (rotations [T, 3, 3], translations [T, 3], passes done) after a pose refinement, else None.

    None also when the checkpoint was made from other data (its fingerprint differs): that run is stale.
    """
    tensor_path, json_path = checkpoint_paths(checkpoint_dir)
    if not (tensor_path.is_file() and json_path.is_file()):
        return None
    meta = json.loads(json_path.read_text())
    if fingerprint is not None and meta.get("fingerprint", "") != fingerprint:
        return None
    if meta.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint in {checkpoint_dir} has version {meta.get('version')}, expected {CHECKPOINT_VERSION}")
    from avatar.train import TrainConfig

    saved = TrainConfig.from_dict(meta["config"])
    if saved.resolution != config.resolution or saved.preset != config.preset:
        raise ValueError(f"checkpoint in {checkpoint_dir} is for preset {saved.preset} at {saved.resolution} px, "
                         f"not {config.preset} at {config.resolution} px; delete it to start over")
    tensors = load_file(str(tensor_path))
    params = {k: tensors[f"param.{k}"].clone().requires_grad_(True) for k in PARAM_KEYS}
    parent = tensors["parent"]
    optimizer = make_optimizer(params, config)
    for group in optimizer.param_groups:
        name = group["name"]
        group["lr"] = meta["lrs"][name]
        if name in meta["adam_steps"]:
            optimizer.state[group["params"][0]] = {
                "step": torch.tensor(meta["adam_steps"][name]),
                "exp_avg": tensors[f"adam.{name}.exp_avg"].clone(),
                "exp_avg_sq": tensors[f"adam.{name}.exp_avg_sq"].clone(),
            }
    stats = {k[len("stats."):]: v.clone() for k, v in tensors.items() if k.startswith("stats.")}
    torch.set_rng_state(tensors["rng"])
    refined = None
    if meta.get("pose_refinements", 0) and "poses.rotations" in tensors:
        refined = (tensors["poses.rotations"], tensors["poses.translations"], int(meta["pose_refinements"]))
    return (params, parent, optimizer, stats, int(meta["iteration"]), float(meta["elapsed_s"]), meta.get("history", {}),
            refined)
