"""The studio through `gradio_client`: generation, bad input, queueing, a client that leaves mid-job."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.talking_fixtures import StudioServer, studio_home

pytest.importorskip("gradio_client")

ARGS = dict(audio=None, avatar="tiny", voice="joe", background="color", color="#205080", image=None,
            head_motion=1.0, expression=1.0, still=False, emotion="neutral", size="avatar's own", enhance="none")


def _call(client, text, **overrides):
    args = {**ARGS, **overrides}
    return client.predict(text, args["audio"], args["avatar"], args["voice"], args["background"], args["color"],
                          args["image"], args["head_motion"], args["expression"], args["still"], args["emotion"],
                          args["size"], args["enhance"], api_name="/generate")


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    with StudioServer(studio_home(tmp_path_factory.mktemp("studio"))) as server:
        yield server


@pytest.fixture(scope="module")
def client(studio):
    from gradio_client import Client

    return Client(studio.url, verbose=False)


def test_generates_a_video_and_files_it_in_the_library(studio, client):
    from avatar.catalog import Catalog
    from render.video import probe

    video, download, status = _call(client, "Hello from the studio test.")
    info = probe(download)
    assert (info.video_codec, info.pix_fmt, info.audio_codec) == ("h264", "yuv420p", "aac")
    assert status.startswith("Done")
    videos = Catalog(studio.home).list_videos()
    assert any(v["text"] == "Hello from the studio test." for v in videos)


@pytest.mark.parametrize("text, overrides, message", [
    ("   ", {}, "script is empty"),
    ("Hi.", {"avatar": "nobody"}, "unknown avatar"),
    ("Hi.", {"voice": "nobody"}, "unknown voice"),
    ("x" * 5001, {}, "limit is 5000"),
    ("Hi.", {"background": "image", "image": None}, "needs an image"),
    ("Hi.", {"enhance": "face"}, "GFPGAN weights not found"),  # the studio's model folders are empty
    ("Hi.", {"enhance": "face+upscale"}, "Real-ESRGAN weights not found"),
    ("Hi.", {"enhance": "lips"}, "Wav2Lip weights not found"),
])
def test_bad_input_gets_a_clear_message(client, text, overrides, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=message):
        _call(client, text, **overrides)


def test_second_request_queues_and_a_client_that_leaves_loses_nothing(studio, client):
    from avatar.catalog import Catalog

    catalog = Catalog(studio.home)
    before = {j["id"] for j in catalog.list_jobs("generate")}
    first = client.submit("First of two queued videos, a little longer than the others.", *list(ARGS.values()),
                          api_name="/generate")
    from gradio_client import Client

    leaving = Client(studio.url, verbose=False)  # its own session: cancelling closes that session's stream
    second = leaving.submit("Second of two queued videos.", *list(ARGS.values()), api_name="/generate")
    submitted = time.monotonic()
    most_running, deadline, cancelled = 0, submitted + 120, False
    while time.monotonic() < deadline:  # polled from the start: a fast render may finish within a second
        if not cancelled and time.monotonic() - submitted > 1.0:
            second.cancel()  # the page goes away: its job must still finish and be filed
            cancelled = True
        jobs = [j for j in catalog.list_jobs("generate") if j["id"] not in before]
        most_running = max(most_running, sum(j["status"] == "running" for j in jobs))
        if cancelled and len(jobs) == 2 and all(j["status"] in ("done", "failed") for j in jobs):
            break
        time.sleep(0.01)
    assert [j["status"] for j in jobs] == ["done", "done"], jobs
    assert most_running == 1  # one worker: never two renders at once
    assert first.result(timeout=60)[2].startswith("Done")
    texts = {v["text"] for v in catalog.list_videos()}
    assert "Second of two queued videos." in texts


def test_voice_upload_checks_kind_and_size(studio, client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    picture = tmp_path / "not_audio.wav"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2000))
    with pytest.raises(AppError):
        client.predict("bad", handle_file(str(picture)), api_name="/add_voice")
    huge = tmp_path / "huge.wav"
    with open(huge, "wb") as handle:
        handle.truncate(21 * 1024 * 1024)
    with pytest.raises(AppError, match="limited to 20 MB"):
        client.predict("huge", handle_file(str(huge)), api_name="/add_voice")


def test_avatar_rename_and_bad_names(studio, client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="leave the data folder|must not contain"):
        client.predict("tiny", "../x", api_name="/rename_avatar")
    with pytest.raises(AppError, match="unknown avatar"):
        client.predict("ghost", None, api_name="/delete_avatar")


def test_voice_from_a_real_clip_then_a_video_in_it(studio, client, shared_data):
    from gradio_client import handle_file

    from render.video import probe

    clip = shared_data / "speech" / "ljspeech_LJ001-0001.wav"
    voices, _, _, message = client.predict("lj", handle_file(str(clip)), api_name="/add_voice")
    assert "Saved voice 'lj'" in message and any(row[0] == "lj" for row in voices["data"])
    video, download, status = _call(client, "Now in the new voice.", voice="lj")
    assert probe(download).audio_codec == "aac" and status.startswith("Done")
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="built-in voice"):
        client.predict("joe", api_name="/delete_voice")
    voices, _, _ = client.predict("lj", api_name="/delete_voice")
    assert not any(row[0] == "lj" for row in voices["data"])
    with pytest.raises(AppError, match="unknown voice 'lj'"):
        _call(client, "The voice is gone.", voice="lj")


def test_library_videos_open_and_delete(studio, client):
    from gradio_client.exceptions import AppError

    from avatar.catalog import Catalog

    _call(client, "A video to open and delete.")
    catalog = Catalog(studio.home)
    row = next(v for v in catalog.list_videos() if v["text"] == "A video to open and delete.")
    video, download = client.predict(row["id"], api_name="/open_video")
    assert Path(download).read_bytes() == Path(row["path"]).read_bytes()
    table, _, _, _ = client.predict(row["id"], api_name="/delete_video")
    assert not Path(row["path"]).exists() and all(r[0] != row["id"] for r in table["data"])
    assert all(v["id"] != row["id"] for v in catalog.list_videos())  # gone from the index too
    for action in ("/open_video", "/delete_video"):
        with pytest.raises(AppError, match="unknown video"):
            client.predict(row["id"], api_name=action)


def test_training_upload_checks(studio, client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from avatar.catalog import Catalog

    fake = tmp_path / "clip.mp4"
    fake.write_text("this is not a video")
    with pytest.raises(AppError, match="must not contain|leave the data folder"):
        client.predict(handle_file(str(fake)), "../x", "fast", api_name="/train")
    with pytest.raises(AppError, match="exists already"):
        client.predict(handle_file(str(fake)), "tiny", "fast", api_name="/train")
    message = client.predict(handle_file(str(fake)), "fresh", "fast", api_name="/train")
    assert "queued" in message
    catalog, deadline = Catalog(studio.home), time.monotonic() + 60
    while time.monotonic() < deadline:
        job = catalog.list_jobs("train", limit=1)[0]
        if job["status"] in ("done", "failed"):
            break
        time.sleep(0.2)
    assert job["status"] == "failed" and job["message"]  # a clear reason, and no avatar was made
    assert "fresh" not in [a["name"] for a in catalog.list_avatars()]
