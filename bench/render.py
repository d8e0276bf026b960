"""Benchmark of the CPU rasterizer on a head-sized scene: `python -m bench.render [--json] [--repeats R]`.

Scene: N Gaussians on and just under an ellipsoid "head" (semi-axes 9 x 12 x 10 cm), scales of a few mm,
random rotations, colours and opacities, seen from 0.5 m by a 30 degree camera that the head fills.
forward = render without autograd (display path); forward_backward = render with autograd + backward of
a loss on colour, alpha and depth (training path). Times are medians (and bests) of wall time after
warm-up, plus the median CPU time summed over threads (what the work costs on a machine shared with
other busy processes, where wall time includes waiting for a core).
compile_s = numba's one-time cold compile, measured in a subprocess with an empty NUMBA_CACHE_DIR;
cached_load_s = the same subprocess once the cache is filled (the cost of every later start).
Sets OMP_WAIT_POLICY=PASSIVE unless set (see below); the machine's other load is not controlled, so run it
on a quiet machine or read the best-of times.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time

# Idle OpenMP threads (torch's and numba's share one libgomp) spin by default, which on a shared machine
# steals the time slices of the threads doing the work; the env var is read once, before torch loads it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from bench.common import emit, format_table, json_flag_parser, peak_rss_mb, time_ms  # noqa: E402
from render import Camera, render_gaussians  # noqa: E402

SIZES = (256, 512)
COUNTS = (10_000, 30_000, 100_000)


def head_scene(n: int, seed: int = 0) -> list[torch.Tensor]:
    """[means, quats, log_scales, opacity_logits, colors] of a head-sized cloud around the origin."""
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(n, 3, generator=g)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    depth_below_surface = 1.0 - 0.1 * torch.rand(n, 1, generator=g)
    means = directions * depth_below_surface * torch.tensor([0.09, 0.12, 0.10])
    quats = torch.randn(n, 4, generator=g)
    log_scales = math.log(0.003) + 0.4 * torch.randn(n, 3, generator=g)
    opacity_logits = 1.0 + 1.5 * torch.randn(n, generator=g)
    colors = torch.rand(n, 3, generator=g)
    return [means, quats, log_scales, opacity_logits, colors]


def measure(n: int, size: int, repeats: int) -> dict:
    params = head_scene(n)
    camera = Camera.look_at_origin(size, size, fov_deg=30.0, distance=0.5)
    background = torch.ones(3)

    def forward() -> None:
        with torch.no_grad():
            render_gaussians(*params, camera, background, backend="cpu")

    inputs = [p.clone().requires_grad_(True) for p in params]

    def forward_backward() -> None:
        out = render_gaussians(*inputs, camera, background, backend="cpu")
        (out.color.sum() + out.alpha.sum() + 0.1 * out.depth.sum()).backward()

    fwd_median, fwd_best, fwd_cpu = time_ms(forward, repeats)
    fb_median, fb_best, fb_cpu = time_ms(forward_backward, repeats)
    return {"gaussians": n, "size": f"{size}x{size}", "forward_ms": fwd_median, "forward_backward_ms": fb_median,
            "forward_best_ms": fwd_best, "forward_backward_best_ms": fb_best,
            "forward_cpu_ms": fwd_cpu, "forward_backward_cpu_ms": fb_cpu}


_COMPILE_SNIPPET = (
    "import torch; from bench.render import head_scene; from render import Camera, render_gaussians;"
    "p=[t.requires_grad_(True) for t in head_scene(100)];"
    "o=render_gaussians(*p, Camera.look_at_origin(64, 64, 30.0, 0.5), torch.ones(3), backend='cpu');"
    "o.color.sum().backward()"
)


def compile_seconds() -> tuple[float, float]:
    """(cold compile, cached load) seconds of a tiny render + backward in fresh interpreters with an
    empty, then filled, numba cache; the start-up time of an interpreter that only imports the same
    modules is subtracted from both."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=repo)

        def run(code: str) -> float:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=repo)
            return time.perf_counter() - start

        baseline = run("import torch, numba, render.projection, bench.render")
        cold = run(_COMPILE_SNIPPET)
        cached = run(_COMPILE_SNIPPET)
    return max(cold - baseline, 0.0), max(cached - baseline, 0.0)


def main() -> None:
    parser = json_flag_parser(__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per case (median reported)")
    args = parser.parse_args()
    compile_s, cached_load_s = compile_seconds()
    rows = []
    for size in SIZES:
        for n in COUNTS:
            rows.append(measure(n, size, args.repeats))
            print(f"measured {n} Gaussians at {size}x{size}", file=sys.stderr, flush=True)
    columns = ["gaussians", "size", "forward_ms", "forward_best_ms", "forward_cpu_ms",
               "forward_backward_ms", "forward_backward_best_ms", "forward_backward_cpu_ms"]
    table = format_table(rows, columns)
    peak = peak_rss_mb()
    table += f"\ncompile_s {compile_s:.2f} (cold), cached load {cached_load_s:.2f} s; peak RSS {peak:.0f} MB; "
    table += f"torch threads {torch.get_num_threads()}, cores {os.cpu_count()}"
    result = {"rows": rows, "compile_s": round(compile_s, 2), "cached_load_s": round(cached_load_s, 2),
              "peak_mb": round(peak, 1)}
    emit(result, table, args.json)


if __name__ == "__main__":
    main()
