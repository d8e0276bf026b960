"""`avatar.from_source.build_from_source`: the upload -> avatar path of `train` and the studio."""
from __future__ import annotations

import warnings

import pytest


def test_a_video_trains_with_an_honest_held_out_score_and_notes(shared_data, tmp_path):
    from avatar.from_source import build_from_source

    video = shared_data / "video" / "retalking_face4_woman_6s.mp4"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the rig must not have seen the frames it is scored on
        avatar, notes = build_from_source(video, "woman", "tiny", tmp_path / "avatars" / "woman", None)
    assert (tmp_path / "avatars" / "woman" / "avatar.json").is_file()
    assert avatar.metrics["held_out_frames"] > 0 and avatar.metrics["psnr"] > 10
    assert any(note.startswith("short video (6.6 s") for note in notes), notes


def test_long_uploads_are_cut_with_a_note(shared_data):
    from avatar.preprocess import PreprocessConfig, preprocess_video

    assert PreprocessConfig().max_seconds == 120.0  # the default every upload gets
    clip = preprocess_video(shared_data / "video" / "aoc_wda_8s.mp4", PreprocessConfig(max_seconds=4.0),
                            show_bar=False)
    assert clip.num_frames == 100
    assert any(note.startswith("long video (8 s): only its first 4 s are used") for note in clip.meta["notes"])


def test_a_photo_takes_the_photo_path(shared_data, tmp_path, monkeypatch):
    from avatar import from_source

    built = {}

    def fake_photo_build(clip, name, destination, checkpoint, progress, config):
        built.update(frames=clip.num_frames, preset=config.preset)
        return "photo avatar"

    monkeypatch.setattr("avatar.photo.build_photo_avatar", fake_photo_build)
    avatar, notes = from_source.build_from_source(shared_data / "portrait" / "obama_official_portrait.jpg", "p",
                                                  "fast", tmp_path / "p", None)
    assert avatar == "photo avatar" and built == {"frames": 1, "preset": "photo"} and isinstance(notes, list)


def test_a_sideways_video_without_rotation_metadata_is_turned_upright(shared_data, tmp_path):
    import subprocess

    import numpy as np

    from avatar import video
    from avatar.preprocess import PreprocessConfig, preprocess_video, upright_turn

    source = shared_data / "video" / "retalking_face4_woman_6s.mp4"
    sideways = tmp_path / "sideways.mp4"  # the picture turned a quarter counter-clockwise, no metadata to undo it
    subprocess.run([video.ffmpeg_exe(), "-v", "error", "-y", "-i", str(source), "-t", "3.5", "-vf",
                    "transpose=cclock", "-map_metadata", "-1", "-c:v", "libx264", "-crf", "18", "-c:a", "aac",
                    str(sideways)], check=True)
    info = video.probe_media(sideways)
    assert info.rotation_deg == 0  # (the clip is square: only the face shows which way is up)
    upright = next(video.iter_video_frames(source, 25.0, 0.2))
    turned = next(video.iter_video_frames(sideways, 25.0, 0.2, info, turn=90))
    assert turned.shape == upright.shape
    assert np.abs(turned.astype(int) - upright.astype(int)).mean() < 4  # the same picture, re-encoded once
    assert upright_turn(sideways, info, PreprocessConfig()) == 90
    assert upright_turn(source, video.probe_media(source), PreprocessConfig()) == 0
    clip = preprocess_video(sideways, PreprocessConfig(min_seconds=3.0), show_bar=False)
    assert clip.valid.mean() > 0.9
    assert any("turned 90 degrees clockwise" in note for note in clip.meta["notes"])


def test_a_sideways_photo_is_turned_upright(shared_data, tmp_path):
    import cv2
    import numpy as np

    from avatar.preprocess import preprocess_photo
    from avatar.video import load_image

    upright = load_image(shared_data / "portrait" / "obama_official_portrait.jpg")
    for k, turn in ((1, 90), (-1, 270), (2, 180)):  # np.rot90 k=1: a quarter counter-clockwise
        path = tmp_path / f"turned{k}.png"
        cv2.imwrite(str(path), cv2.cvtColor(np.rot90(upright, k=k), cv2.COLOR_RGB2BGR))
        clip = preprocess_photo(path, show_bar=False)
        assert bool(clip.valid[0]), turn
        assert any(f"turned {turn} degrees clockwise" in note for note in clip.meta["notes"]), clip.meta["notes"]
    clip = preprocess_photo(shared_data / "portrait" / "obama_official_portrait.jpg", show_bar=False)
    assert not any("turned" in note for note in clip.meta["notes"])
