"""Background work for the studio: one queue for video generation, one for avatar training.

Jobs are rows in the catalog (`avatar.catalog`), so their status survives a page reload and a browser that
closes mid-job: the work runs in this server process, not in the page, and the finished video is entered in
the library whether anyone is still watching or not. Each queue has one worker thread, so a second request
waits its turn (generation is CPU-bound; two at once would only both be slower). Jobs still queued or running
when the process stopped are queued again at start (training resumes from its checkpoint).
"""
from __future__ import annotations

import queue
import threading
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from avatar.catalog import Catalog

MAX_UPLOAD_BYTES = 500_000_000  # training videos and photos


class JobRunner:
    """Owns the worker threads. `submit_generate` / `submit_train` return a job id to poll with `status`."""

    def __init__(self, home: Path, generator=None, start: bool = True) -> None:
        from render.generate import Generator

        self.home = Path(home)
        self.catalog = Catalog(self.home)
        self.generator = generator or Generator(self.home)
        self._queues = {"generate": queue.Queue(), "train": queue.Queue()}
        self._handlers: dict[str, Callable[[str, dict], dict]] = {"generate": self._run_generate,
                                                                   "train": self._run_train}
        self._threads: list[threading.Thread] = []
        for job in self.catalog.unfinished_jobs():
            self.catalog.update_job(job["id"], status="queued", message="restarted after the server stopped")
            self._queues[job["kind"]].put(job["id"])
        if start:
            self.start()

    def start(self) -> None:
        for kind, jobs in self._queues.items():
            thread = threading.Thread(target=self._work, args=(kind, jobs), name=f"{kind}-worker", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _work(self, kind: str, jobs: queue.Queue) -> None:
        while True:
            job_id = jobs.get()
            job = self.catalog.get_job(job_id)
            if job is None:
                continue
            self.catalog.update_job(job_id, status="running", stage="starting", progress=0.0, message="")
            try:
                result = self._handlers[kind](job_id, job["params"])
                summary = result.get("summary", "") if isinstance(result, dict) else ""
                self.catalog.update_job(job_id, status="done", stage="done", progress=1.0, result=result,
                                        message=summary)
            except (ValueError, FileNotFoundError) as error:
                self.catalog.update_job(job_id, status="failed", message=str(error))
            except Exception as error:  # a bug: keep the worker alive, show the message, log the trace
                traceback.print_exc()
                self.catalog.update_job(job_id, status="failed", message=f"{type(error).__name__}: {error}")

    def _progress(self, job_id: str) -> Callable[[str, float, dict], None]:
        def report(stage: str, fraction: float, info: dict | None = None) -> None:
            info = info or {}
            message = ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items()
                                if k in ("frame", "frames", "iteration", "psnr", "gaussians", "step", "message"))
            extra = {"result": {"preview": str(info["preview"])}} if info.get("preview") else {}
            self.catalog.update_job(job_id, stage=stage, progress=float(fraction), message=message, **extra)
        return report

    # --- generation -------------------------------------------------------------------------------------
    def submit_generate(self, request) -> str:
        """Validate cheaply now (so the user sees bad input at once), then queue."""
        from render.generate import check_voice

        request.validate()
        check_voice(request.voice, self.home, request.audio is not None)
        if request.avatar:
            from avatar.library import avatar_path

            if not (avatar_path(request.avatar, self.home) / "avatar.json").is_file() and request.avatar != "astronaut":
                raise ValueError(f"unknown avatar {request.avatar!r}")
        params = asdict(request)
        job_id = self.catalog.add_job("generate", params)
        self._queues["generate"].put(job_id)
        return job_id

    def _run_generate(self, job_id: str, params: dict) -> dict:
        from animation.motion import MotionOptions
        from render.generate import GenerateRequest
        from render.pipeline import BackgroundSpec, RenderOptions

        request = GenerateRequest(**{**params, "motion": MotionOptions(**params["motion"]),
                                     "background": BackgroundSpec(**params["background"]),
                                     "render": RenderOptions(**params["render"])})
        video_id, path = self.catalog.new_video_path()
        result = self.generator.generate(request, path, self._progress(job_id))
        self.catalog.add_video(video_id, result.path, request.avatar or "astronaut", request.voice, request.text,
                               result.audio_seconds, job_id)
        return {"video": str(result.path), "video_id": video_id, "audio_seconds": result.audio_seconds,
                "frames": result.num_frames, "stages": result.stages, "notes": result.notes}

    # --- training ---------------------------------------------------------------------------------------
    def submit_train(self, source: Path, name: str, preset: str = "fast") -> str:
        from avatar.library import check_upload, require_new_name
        from avatar.train import PRESETS

        name = require_new_name(name, self.home)
        source = check_upload(source, MAX_UPLOAD_BYTES)
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        if any(j["params"].get("name") == name for j in self.catalog.unfinished_jobs() if j["kind"] == "train"):
            raise ValueError(f"an avatar named {name!r} is being trained already")
        # Keep our own copy: the upload's temporary file may vanish before the queue reaches the job.
        uploads = self.home / "uploads"
        uploads.mkdir(parents=True, exist_ok=True)
        kept = uploads / f"{name}{source.suffix.lower()}"
        kept.write_bytes(source.read_bytes())
        job_id = self.catalog.add_job("train", {"source": str(kept), "name": name, "preset": preset})
        self._queues["train"].put(job_id)
        return job_id

    def _run_train(self, job_id: str, params: dict) -> dict:
        from avatar import library
        from avatar.from_source import avatar_summary, build_from_source

        name = params["name"]
        destination, checkpoint = library.avatar_path(name, self.home), library.checkpoint_path(name, self.home)
        avatar, notes = build_from_source(params["source"], name, params["preset"], destination, checkpoint,
                                          self._progress(job_id))
        Path(params["source"]).unlink(missing_ok=True)
        self.generator.forget(name)
        summary = "; ".join([avatar_summary(avatar), *notes])
        return {"name": name, "gaussians": avatar.num_gaussians, "metrics": avatar.metrics, "notes": notes,
                "summary": summary}

    def status(self, job_id: str) -> dict | None:
        return self.catalog.get_job(job_id)
