"""The studio's library index: avatars, voices, videos and jobs in SQLite under the data folder.

`<data folder>/library.sqlite` indexes what the studio made; the files themselves live beside it
(`avatars/NAME/`, `voices/NAME.wav`, `videos/ID.mp4`). Avatar folders stay the truth for avatars (the CLI can
add them too), so avatar listings read the folders and the table only adds bookkeeping. Every call opens its
own connection (SQLite serialises writers; WAL lets readers run beside them), so threads need no sharing.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
import uuid
from contextlib import closing
from pathlib import Path

from avatar.library import avatar_path, check_upload, list_avatars, validate_name

MAX_VOICE_BYTES = 20_000_000
SCHEMA = """
CREATE TABLE IF NOT EXISTS voices (name TEXT PRIMARY KEY, path TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS videos (id TEXT PRIMARY KEY, path TEXT NOT NULL, avatar TEXT, voice TEXT, text TEXT,
    audio_seconds REAL, created REAL NOT NULL, job_id TEXT);
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL, stage TEXT,
    progress REAL, message TEXT, params TEXT NOT NULL, result TEXT, created REAL NOT NULL, updated REAL NOT NULL);
"""
JOB_STATES = ("queued", "running", "done", "failed")


class Catalog:
    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.path = self.home / "library.sqlite"
        with closing(self._connect()) as db, db:
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def _rows(self, query: str, args: tuple = ()) -> list[dict]:
        with closing(self._connect()) as db:
            return [dict(r) for r in db.execute(query, args).fetchall()]

    def _write(self, query: str, args: tuple = ()) -> None:
        with closing(self._connect()) as db, db:
            db.execute(query, args)

    # --- avatars (folders are the truth) ---------------------------------------------------------------
    def list_avatars(self) -> list[dict]:
        out = []
        for name in list_avatars(self.home):
            try:
                meta = json.loads((avatar_path(name, self.home) / "avatar.json").read_text())
            except (OSError, json.JSONDecodeError):
                continue
            out.append({"name": name, "kind": meta.get("stats", {}).get("kind", "video"),
                        "gaussians": meta.get("num_gaussians"), "psnr": meta.get("metrics", {}).get("psnr"),
                        "resolution": meta.get("camera", {}).get("width")})
        return out

    def rename_avatar(self, old: str, new: str) -> None:
        source, target = avatar_path(old, self.home), avatar_path(new, self.home)
        if not (source / "avatar.json").is_file():
            raise ValueError(f"unknown avatar {old!r}")
        if target.exists():
            raise ValueError(f"an avatar named {validate_name(new)!r} exists already; choose another name")
        meta = json.loads((source / "avatar.json").read_text())
        os.replace(source, target)
        meta["name"] = validate_name(new)
        tmp = target / ".avatar.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2))
        tmp.replace(target / "avatar.json")

    def delete_avatar(self, name: str) -> None:
        folder = avatar_path(name, self.home)
        if not (folder / "avatar.json").is_file():
            raise ValueError(f"unknown avatar {name!r}")
        _remove_folder(folder)

    # --- voices (folders written by `audio.voice` are the truth; the table indexes them) ----------------
    def add_voice(self, name: str, source: Path, engine=None, progress=None) -> dict:
        """Check a reference recording and learn the voice from it (`audio.voice.add_voice`)."""
        from audio import voice

        name = validate_name(name)
        if name == "joe":
            raise ValueError("'joe' is the built-in voice; choose another name")
        source = check_upload(source, MAX_VOICE_BYTES, "reference clips")
        profile = voice.add_voice(source, name, engine=engine, home=self.home, progress=progress)
        path = voice.voice_path(name, self.home) / "reference.wav"
        self._write("INSERT OR REPLACE INTO voices VALUES (?, ?, ?)", (name, str(path), time.time()))
        return {"name": name, "path": str(path), "seconds": float(profile.reference.speech_s)}

    def list_voices(self) -> list[dict]:
        from audio import voice

        return [{"name": n, "path": str(voice.voice_path(n, self.home) / "reference.wav")}
                for n in voice.list_voices(self.home)]

    def get_voice(self, name: str) -> dict | None:
        return next((v for v in self.list_voices() if v["name"] == name), None)

    def delete_voice(self, name: str) -> None:
        """Remove a saved voice (its folder and its row); ValueError for an unknown name or the built-in voice."""
        from audio import voice

        if name == "joe":
            raise ValueError("'joe' is the built-in voice; it cannot be deleted")
        folder = voice.voice_path(name, self.home)  # validates the name (no paths outside the library)
        if not (folder / "voice.json").is_file():
            known = ", ".join(voice.list_voices(self.home)) or "none"
            raise ValueError(f"unknown voice {name!r}; known voices: {known}")
        _remove_folder(folder)
        self._write("DELETE FROM voices WHERE name = ?", (name,))

    # --- videos -----------------------------------------------------------------------------------------
    def new_video_path(self) -> tuple[str, Path]:
        video_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        folder = self.home / "videos"
        folder.mkdir(parents=True, exist_ok=True)
        return video_id, folder / f"{video_id}.mp4"

    def add_video(self, video_id: str, path: Path, avatar: str, voice: str, text: str, audio_seconds: float,
                  job_id: str | None) -> None:
        self._write("INSERT OR REPLACE INTO videos VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (video_id, str(path), avatar, voice, text[:500], audio_seconds, time.time(), job_id))

    def list_videos(self, limit: int = 50) -> list[dict]:
        return self._rows("SELECT * FROM videos ORDER BY created DESC LIMIT ?", (limit,))

    def _video_row(self, video_id: str) -> dict:
        rows = self._rows("SELECT * FROM videos WHERE id = ?", (str(video_id),))
        if not rows:
            raise ValueError(f"unknown video {video_id!r}; `python app.py videos` lists them")
        return rows[0]

    def get_video(self, video_id: str) -> dict:
        """The library row of a video; ValueError if there is none (or its file is gone)."""
        row = self._video_row(video_id)
        if not Path(row["path"]).is_file():
            raise ValueError(f"video {video_id!r} is in the library but its file {row['path']} is gone")
        return row

    def delete_video(self, video_id: str) -> None:
        """Remove a video's row and its MP4 (only a file inside the data folder's videos/ is ever removed)."""
        path = Path(self._video_row(video_id)["path"])
        self._write("DELETE FROM videos WHERE id = ?", (str(video_id),))
        if path.resolve().parent == (self.home / "videos").resolve():
            path.unlink(missing_ok=True)
            path.with_suffix(".motion.json").unlink(missing_ok=True)

    # --- jobs -------------------------------------------------------------------------------------------
    def add_job(self, kind: str, params: dict) -> str:
        job_id = uuid.uuid4().hex[:12]
        now = time.time()
        self._write("INSERT INTO jobs VALUES (?, ?, 'queued', '', 0, '', ?, NULL, ?, ?)",
                    (job_id, kind, json.dumps(params), now, now))
        return job_id

    def update_job(self, job_id: str, **fields) -> None:
        allowed = {"status", "stage", "progress", "message", "result"}
        if set(fields) - allowed:
            raise ValueError(f"unknown job fields {sorted(set(fields) - allowed)}")
        if "status" in fields and fields["status"] not in JOB_STATES:
            raise ValueError(f"unknown job status {fields['status']!r}")
        if "result" in fields:
            fields["result"] = json.dumps(fields["result"])
        assignments = ", ".join(f"{k} = ?" for k in fields)
        self._write(f"UPDATE jobs SET {assignments}, updated = ? WHERE id = ?", (*fields.values(), time.time(), job_id))

    def get_job(self, job_id: str) -> dict | None:
        rows = self._rows("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _decode_job(rows[0]) if rows else None

    def list_jobs(self, kind: str | None = None, limit: int = 50) -> list[dict]:
        if kind:
            rows = self._rows("SELECT * FROM jobs WHERE kind = ? ORDER BY created DESC LIMIT ?", (kind, limit))
        else:
            rows = self._rows("SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (limit,))
        return [_decode_job(r) for r in rows]

    def unfinished_jobs(self) -> list[dict]:
        return [_decode_job(r) for r in
                self._rows("SELECT * FROM jobs WHERE status IN ('queued', 'running') ORDER BY created")]


def _remove_folder(folder: Path) -> None:
    """One rename first, so the item disappears at once even if removing its files is slow or fails."""
    trash = folder.parent / f".{folder.name}.deleted-{uuid.uuid4().hex[:6]}"
    os.replace(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _decode_job(row: dict) -> dict:
    row = dict(row)
    row["params"] = json.loads(row["params"])
    row["result"] = json.loads(row["result"]) if row.get("result") else None
    return row
