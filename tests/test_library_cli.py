"""`app.py avatars`, `videos` and `voice delete`: the library from the command line, bad names refused."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from avatar.catalog import Catalog
from tests.talking_fixtures import tiny_avatar

ROOT = Path(__file__).resolve().parents[1]


def _app(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TALKING_AVATAR_HOME": str(home)}
    return subprocess.run([sys.executable, str(ROOT / "app.py"), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_avatars_list_rename_delete(tmp_path):
    tiny_avatar(size=32).save(tmp_path / "avatars" / "tiny")
    listed = _app(tmp_path, "avatars")
    assert listed.returncode == 0 and listed.stdout.startswith("tiny\t")
    assert _app(tmp_path, "avatars", "rename", "tiny", "small").returncode == 0
    assert [a["name"] for a in Catalog(tmp_path).list_avatars()] == ["small"]
    for args, message in ((("rename", "ghost", "x"), "unknown avatar 'ghost'"),
                          (("delete", "../small"), "leave the data folder"),
                          (("delete", "tiny"), "unknown avatar 'tiny'")):
        bad = _app(tmp_path, "avatars", *args)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
    assert (tmp_path / "avatars" / "small" / "avatar.json").is_file()  # nothing lost by the refusals
    assert _app(tmp_path, "avatars", "delete", "small").returncode == 0
    assert Catalog(tmp_path).list_avatars() == [] and "no avatars" in _app(tmp_path, "avatars").stdout


def test_videos_list_and_delete_only_their_own_files(tmp_path):
    catalog = Catalog(tmp_path)
    video_id, path = catalog.new_video_path()
    path.write_bytes(b"mp4")
    path.with_suffix(".motion.json").write_text("{}")
    catalog.add_video(video_id, path, "tiny", "joe", "Hello there.", 1.5, None)
    elsewhere = tmp_path / "mine.mp4"
    elsewhere.write_bytes(b"keep")
    catalog.add_video("foreign", elsewhere, "tiny", "joe", "Not in videos/.", 1.0, None)
    listed = _app(tmp_path, "videos")
    assert listed.returncode == 0 and video_id in listed.stdout and "Hello there." in listed.stdout
    bad = _app(tmp_path, "videos", "delete", "nope")
    assert bad.returncode == 2 and "unknown video 'nope'" in bad.stderr
    assert _app(tmp_path, "videos", "delete", video_id).returncode == 0
    assert not path.exists() and not path.with_suffix(".motion.json").exists()
    assert _app(tmp_path, "videos", "delete", "foreign").returncode == 0
    assert elsewhere.read_bytes() == b"keep"  # a row pointing outside the videos folder never deletes that file
    assert catalog.list_videos() == []


def test_voice_delete_refuses_unknown_and_builtin(tmp_path):
    for name, message in (("joe", "built-in voice"), ("ghost", "unknown voice 'ghost'"), ("../x", "leave the data")):
        bad = _app(tmp_path, "voice", "delete", name)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
    folder = tmp_path / "voices" / "alice"
    folder.mkdir(parents=True)
    (folder / "voice.json").write_text("{}")
    done = _app(tmp_path, "voice", "delete", "alice")
    assert done.returncode == 0 and not folder.exists()
