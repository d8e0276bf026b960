"""Avatar names, the data folder, and atomic folder saves."""
from __future__ import annotations

import pytest

from avatar import library


@pytest.mark.parametrize("name", ["", "   ", "../x", "a/b", "..", "x..y", "a\\b", ".hidden", "na me", "é", "a" * 65, "a;rm"])
def test_bad_names_are_rejected_with_a_sentence(name):
    with pytest.raises(ValueError) as info:
        library.validate_name(name)
    assert len(str(info.value)) > 15


@pytest.mark.parametrize("name", ["alice", "Bob_2", "obama-weekly.v1", "7up"])
def test_good_names_pass(name):
    assert library.validate_name(name) == name


def test_data_home_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TALKING_AVATAR_HOME", str(tmp_path))
    assert library.data_home() == tmp_path
    assert library.avatar_path("alice") == tmp_path / "avatars" / "alice"
    monkeypatch.delenv("TALKING_AVATAR_HOME")
    assert library.data_home() == library.DEFAULT_HOME.expanduser()


def test_existing_name_is_refused_unless_overwriting(tmp_path):
    folder = library.avatar_path("alice", tmp_path)
    folder.mkdir(parents=True)
    (folder / "avatar.json").write_text("{}")
    with pytest.raises(ValueError, match="exists already"):
        library.require_new_name("alice", tmp_path)
    assert library.require_new_name("alice", tmp_path, overwrite=True) == "alice"
    assert library.list_avatars(tmp_path) == ["alice"]


def test_atomic_folder_keeps_the_old_content_on_failure(tmp_path):
    target = tmp_path / "avatars" / "alice"
    with library.atomic_folder(target) as staging:
        (staging / "avatar.json").write_text("old")
    with pytest.raises(RuntimeError):
        with library.atomic_folder(target) as staging:
            (staging / "avatar.json").write_text("new, half written")
            raise RuntimeError("crash while saving")
    assert (target / "avatar.json").read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["alice"]  # no temporary folders left behind
    with library.atomic_folder(target) as staging:
        (staging / "avatar.json").write_text("new")
    assert (target / "avatar.json").read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["alice"]
