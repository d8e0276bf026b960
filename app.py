"""TalkingAvatar-3DGS: the studio (no arguments) and the command line (subcommands).

    python app.py                      # Gradio studio on 127.0.0.1:7860
    python app.py speak --text T --out speech.wav --timing timing.json
    python app.py timing AUDIO [--text T] --out timing.json
    python app.py say [--avatar NAME] (--text T | --audio FILE) [--voice V] --out OUT.mp4
    python app.py models [convert IN.pth OUT.safetensors]
    python app.py avatars [rename OLD NEW | delete NAME];  python app.py videos [delete ID]

The studio's library (avatars, voices, videos, jobs; SQLite index `library.sqlite`) lives in the data folder,
`$TALKING_AVATAR_HOME` or `~/.talking_avatar`. Upload limits: 500 MB for training videos/photos, 50 MB for
speech audio, 20 MB for voice references and background pictures; scripts up to 5,000 characters.

Each package registers its own subcommands (`<package>/cli.py: add_commands(subparsers)`), so this file stays
a dispatcher. Heavy imports happen inside the command handlers, so `--help` is instant.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# Idle OpenMP threads must sleep, not spin: torch and numba each keep a pool, and on a shared 2-core machine
# spinning pools starve each other (rendering measured 5-15x slower without this). Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

# (module, function) pairs that register subcommands, in the order they appear in --help.
_CLI_MODULES = (
    ("audio.cli", "add_commands"),
    ("audio.voice_cli", "add_commands"),
    ("animation.timing_plot", "add_plot_command"),
    ("avatar.cli", "add_commands"),
    ("render.cli", "add_commands"),
    ("render.model_files", "add_commands"),
    ("avatar.library_cli", "add_commands"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="app.py", description="TalkingAvatar-3DGS studio and command line")
    parser.add_argument("--host", default="127.0.0.1", help="studio address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="studio port (default 7860)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, register in _CLI_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name == name:  # a package still being written: its commands are simply absent
                continue
            raise
        getattr(module, register)(commands)
    return parser


def serve(host: str, port: int) -> None:
    """Build the Gradio studio and serve it until interrupted."""
    from avatar.library import data_home

    home = data_home()
    home.mkdir(parents=True, exist_ok=True)
    demo = build_studio(home)
    demo.queue(default_concurrency_limit=8)
    demo.launch(server_name=host, server_port=port, allowed_paths=[str(home)], max_file_size="500mb",
                show_error=True, footer_links=["api"])


OWN_SIZE = "avatar's own"  # the studio's size choice for "the avatar's training resolution"


def build_studio(home):
    """The studio's Blocks app over the data folder `home` (tabs: Create video, Avatars, Voices)."""
    import time

    import gradio as gr

    from animation.motion import EMOTIONS
    from avatar.jobs import JobRunner
    from render.generate import DEFAULT_AVATAR, DEFAULT_VOICE, GenerateRequest, known_voices
    from render.enhance import ENHANCE_KINDS
    from render.pipeline import BACKGROUND_KINDS, BackgroundSpec

    runner = JobRunner(home)
    catalog = runner.catalog

    def avatar_names() -> list[str]:
        names = [a["name"] for a in catalog.list_avatars()]
        return names if DEFAULT_AVATAR in names else [DEFAULT_AVATAR] + names

    def voice_names() -> list[str]:
        return known_voices(home)

    def wait_for(job_id: str, progress, stages: dict | None = None) -> dict:
        """Poll a job until it ends, mirroring its stage in the page's progress bar."""
        while True:
            job = runner.status(job_id)
            if job["status"] in ("done", "failed"):
                return job
            label = job["stage"] or job["status"]
            if stages and label in stages:  # overall progress over the generation stages
                index = stages[label]
                progress((index + float(job["progress"] or 0)) / len(stages), desc=f"{label}: {job['message']}")
            else:
                progress(float(job["progress"] or 0), desc=f"{label} {job['message']}".strip())
            time.sleep(0.5)

    def generate(script, audio, avatar, voice, background, color, image, head_motion, expression, still, emotion,
                 size=OWN_SIZE, enhance="none", progress=gr.Progress()):
        from animation.motion import MotionOptions
        from render.pipeline import RenderOptions

        try:
            request = GenerateRequest(
                text=script or "", audio=audio or None, avatar=avatar or None, voice=voice or DEFAULT_VOICE,
                motion=MotionOptions(head_motion=float(head_motion), expression=float(expression),
                                     still=bool(still), emotion=emotion or "neutral"),
                background=BackgroundSpec(kind=background or "plate", color=color or "#30343c", image=image or None),
                render=RenderOptions(size=None if str(size) in ("", "None", OWN_SIZE) else int(size),
                                     enhance=enhance or "none"))
            job_id = runner.submit_generate(request)
        except (ValueError, FileNotFoundError) as error:
            raise gr.Error(str(error))
        job = wait_for(job_id, progress, {"speech": 0, "motion": 1, "frames": 2, "encoding": 3})
        if job["status"] == "failed":
            raise gr.Error(job["message"])
        result = job["result"]
        timing = ", ".join(f"{k} {v:.1f} s" for k, v in result["stages"].items())
        notes = "".join(f"\n\nnote: {n}" for n in result["notes"])
        text = f"Done: {result['audio_seconds']:.1f} s of speech, {result['frames']} frames ({timing}).{notes}"
        return result["video"], result["video"], text

    def videos_table():
        return [[v["id"], v["avatar"], v["voice"], (v["text"] or "")[:60], round(v["audio_seconds"] or 0, 1)]
                for v in catalog.list_videos()]

    def video_ids():
        return [v["id"] for v in catalog.list_videos()]

    def refresh_videos():
        return videos_table(), gr.update(choices=video_ids(), value=None)

    def open_video(video_id):
        try:
            path = catalog.get_video(video_id or "")["path"]
        except ValueError as error:
            raise gr.Error(str(error))
        return path, path

    def delete_video(video_id):
        try:
            catalog.delete_video(video_id or "")
        except ValueError as error:
            raise gr.Error(str(error))
        return (*refresh_videos(), None, None)

    def train(upload, name, preset):
        if not upload:
            raise gr.Error("upload a selfie video (20-60 s) or a portrait photo first")
        try:
            job_id = runner.submit_train(upload, name or "", preset or "fast")
        except (ValueError, FileNotFoundError) as error:
            raise gr.Error(str(error))
        return f"Training job {job_id} queued for {name!r}; progress shows below (it continues if you leave)."

    def training_status():
        jobs = catalog.list_jobs("train", limit=10)
        rows = [[j["params"]["name"], j["status"], j["stage"], f"{100 * float(j['progress'] or 0):.0f}%",
                 j["message"]] for j in jobs]
        running = [j for j in jobs if j["status"] == "running" and j["result"] and j["result"].get("preview")]
        preview = running[0]["result"]["preview"] if running else None
        return rows, preview

    def avatars_table():
        return [[a["name"], a["kind"], a["gaussians"], a["resolution"], a["psnr"]] for a in catalog.list_avatars()]

    def refresh_avatars():
        names = avatar_names()
        return avatars_table(), gr.update(choices=names), gr.update(choices=names)

    def rename(old, new):
        try:
            catalog.rename_avatar(old or "", new or "")
        except (ValueError, OSError) as error:
            raise gr.Error(str(error))
        runner.generator.forget(old)
        return refresh_avatars()

    def delete(name):
        try:
            catalog.delete_avatar(name or "")
        except (ValueError, OSError) as error:
            raise gr.Error(str(error))
        runner.generator.forget(name)
        return refresh_avatars()

    def add_voice(name, clip):
        if not clip:
            raise gr.Error("upload or record a reference clip first (5-30 s of clean speech)")
        try:
            entry = catalog.add_voice(name or "", clip, engine=runner.generator.tts())
        except (ValueError, FileNotFoundError) as error:
            raise gr.Error(str(error))
        names = voice_names()
        return voices_table(), gr.update(choices=names), gr.update(choices=names), \
            f"Saved voice {entry['name']!r} ({entry['seconds']:.1f} s of speech)."

    def voices_table():
        return [[v["name"], v["path"]] for v in catalog.list_voices()]

    def delete_voice(name):
        try:
            catalog.delete_voice(name or "")
        except (ValueError, OSError) as error:
            raise gr.Error(str(error))
        names = voice_names()
        return voices_table(), gr.update(choices=names, value=DEFAULT_VOICE), gr.update(choices=names, value=None)

    def preview_voice(name):
        """A sample sentence in the chosen voice (the reference clip itself is in the library folder)."""
        from render.generate import apply_voice

        if not name:
            return None
        try:
            speech = runner.generator.tts().synthesize("Hello! This is how I sound in your videos.")
            speech = apply_voice(speech, name, home)
        except (ValueError, FileNotFoundError) as error:
            raise gr.Error(str(error))
        return speech.sample_rate, speech.waveform

    with gr.Blocks(title="TalkingAvatar-3DGS studio") as demo:
        gr.Markdown("# TalkingAvatar-3DGS studio")
        with gr.Tab("Create video"):
            with gr.Row():
                with gr.Column():
                    script = gr.Textbox(label="Script", lines=5, max_length=5000, elem_id="script",
                                        placeholder="Type what the avatar should say (up to 5,000 characters).")
                    audio = gr.Audio(label="...or upload / record speech instead", type="filepath",
                                     sources=["upload", "microphone"])
                    avatar = gr.Dropdown(avatar_names(), value=DEFAULT_AVATAR, label="Avatar", elem_id="avatar",
                                         allow_custom_value=True)
                    voice = gr.Dropdown(voice_names(), value=DEFAULT_VOICE, label="Voice", allow_custom_value=True)
                    with gr.Accordion("Background and motion", open=False):
                        background = gr.Radio(list(BACKGROUND_KINDS), value="plate", label="Background")
                        color = gr.ColorPicker("#30343c", label="Colour (background 'color')")
                        image = gr.Image(label="Picture (background 'image')", type="filepath")
                        head_motion = gr.Slider(0, 2, 1, step=0.1, label="Head motion")
                        expression = gr.Slider(0, 2, 1, step=0.1, label="Expression intensity")
                        still = gr.Checkbox(False, label="Still (no head motion)")
                        emotion = gr.Dropdown(list(EMOTIONS), value="neutral", label="Emotion")
                    with gr.Accordion("Size and enhancement", open=False):
                        size = gr.Dropdown([OWN_SIZE, "512", "768", "1024"], value=OWN_SIZE,
                                           label="Video width = height in pixels")
                        enhance = gr.Dropdown(list(ENHANCE_KINDS), value="none", label="Enhance",
                                              info="GFPGAN faces / Wav2Lip lips / Real-ESRGAN upscaling: needs "
                                                   "their weights in models/ (python app.py models); slow on a "
                                                   "CPU: about 2.5 s (face) and 0.5-0.9 s (upscale) per frame")
                    make = gr.Button("Generate video", variant="primary", elem_id="generate")
                with gr.Column():
                    video = gr.Video(label="Video", elem_id="video")
                    download = gr.File(label="Download MP4", elem_id="download")
                    status = gr.Markdown(elem_id="status")
            videos = gr.Dataframe(headers=["id", "avatar", "voice", "script", "seconds"], value=videos_table,
                                  label="Library: videos", interactive=False)
            with gr.Row():
                video_pick = gr.Dropdown(video_ids(), label="Video from the library", allow_custom_value=True)
                open_button = gr.Button("Open")
                delete_video_button = gr.Button("Delete video", variant="stop")
            make.click(generate, [script, audio, avatar, voice, background, color, image, head_motion, expression,
                                  still, emotion, size, enhance], [video, download, status], api_name="generate"
                       ).then(refresh_videos, None, [videos, video_pick])
            open_button.click(open_video, video_pick, [video, download], api_name="open_video")
            delete_video_button.click(delete_video, video_pick, [videos, video_pick, video, download],
                                      api_name="delete_video")
        with gr.Tab("Avatars"):
            with gr.Row():
                with gr.Column():
                    upload = gr.File(label="Selfie video (20-60 s) or portrait photo",
                                     file_types=["video", "image"], type="filepath")
                    new_name = gr.Textbox(label="Name")
                    preset = gr.Radio(["fast", "standard"], value="fast", label="Preset")
                    train_button = gr.Button("Train", variant="primary")
                    train_message = gr.Markdown()
                with gr.Column():
                    preview = gr.Image(label="Training preview (real | rendered)", interactive=False)
                    jobs = gr.Dataframe(headers=["name", "status", "stage", "progress", "details"],
                                        label="Training jobs", interactive=False)
            avatars = gr.Dataframe(headers=["name", "kind", "Gaussians", "pixels", "held-out PSNR"],
                                   value=avatars_table, label="Avatars", interactive=False)
            with gr.Row():
                pick = gr.Dropdown(avatar_names(), label="Avatar", allow_custom_value=True)
                rename_to = gr.Textbox(label="New name")
                rename_button = gr.Button("Rename")
                delete_button = gr.Button("Delete", variant="stop")
            train_button.click(train, [upload, new_name, preset], train_message, api_name="train")
            gr.Timer(2.0).tick(training_status, None, [jobs, preview])
            rename_button.click(rename, [pick, rename_to], [avatars, pick, avatar], api_name="rename_avatar")
            delete_button.click(delete, pick, [avatars, pick, avatar], api_name="delete_avatar")
            gr.Button("Refresh").click(refresh_avatars, None, [avatars, pick, avatar], api_name="list_avatars")
        with gr.Tab("Voices"):
            gr.Markdown("Upload or record 5-30 s of clean speech of one speaker as a reference voice (up to 20 MB). "
                        "The built-in voice is converted towards it (pitch and timbre).")
            with gr.Row():
                with gr.Column():
                    voice_name = gr.Textbox(label="Voice name")
                    clip = gr.Audio(label="Reference clip", type="filepath", sources=["upload", "microphone"])
                    save_voice = gr.Button("Save voice", variant="primary")
                    voice_message = gr.Markdown()
                with gr.Column():
                    voices = gr.Dataframe(headers=["name", "file"], value=voices_table, interactive=False)
                    listen_pick = gr.Dropdown(voice_names(), label="Preview a voice", allow_custom_value=True)
                    with gr.Row():
                        listen_button = gr.Button("Preview")
                        delete_voice_button = gr.Button("Delete voice", variant="stop")
                    listen = gr.Audio(label="Sample", interactive=False)
            save_voice.click(add_voice, [voice_name, clip], [voices, voice, listen_pick, voice_message],
                             api_name="add_voice")
            listen_button.click(preview_voice, listen_pick, listen, api_name="preview_voice")
            delete_voice_button.click(delete_voice, listen_pick, [voices, voice, listen_pick], api_name="delete_voice")

        def refresh_choices():  # a reloaded page sees avatars, voices and videos added since the server started
            names, voices_now = avatar_names(), voice_names()
            return gr.update(choices=names), gr.update(choices=voices_now), gr.update(choices=names), \
                gr.update(choices=voices_now), gr.update(choices=video_ids())
        demo.load(refresh_choices, None, [avatar, voice, pick, listen_pick, video_pick])
    return demo


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        serve(host=args.host, port=args.port)
        return 0
    try:
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError) as error:  # bad input: one clear line, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
