"""Library subcommands for `app.py`: what the studio's Avatars tab and video list do, from the command line.

    python app.py avatars                      # name, kind, Gaussians, pixels, held-out PSNR
    python app.py avatars rename OLD NEW
    python app.py avatars delete NAME
    python app.py videos                       # the generated videos, newest first
    python app.py videos delete ID

(`python app.py voice list` / `voice delete NAME` do the same for voices.) Unknown names and ids are refused with
one `error:` line (exit 2); deleting removes one item only, never anything outside the data folder.
"""
from __future__ import annotations

import argparse


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    avatars = subparsers.add_parser("avatars", help="avatar library: list, rename, delete",
                                    description="List, rename or delete the avatars in the library.")
    actions = avatars.add_subparsers(dest="avatars_action", metavar="ACTION")
    rename = actions.add_parser("rename", help="rename an avatar")
    rename.add_argument("old")
    rename.add_argument("new")
    delete = actions.add_parser("delete", help="delete an avatar")
    delete.add_argument("name")
    avatars.set_defaults(handler=run_avatars)

    videos = subparsers.add_parser("videos", help="generated videos: list, delete",
                                   description="List or delete the videos the studio and `say` filed.")
    video_actions = videos.add_subparsers(dest="videos_action", metavar="ACTION")
    remove = video_actions.add_parser("delete", help="delete a video (its MP4 and its library row)")
    remove.add_argument("id")
    videos.set_defaults(handler=run_videos)


def _catalog():
    from avatar.catalog import Catalog
    from avatar.library import data_home

    return Catalog(data_home())


def run_avatars(args: argparse.Namespace) -> int:
    catalog = _catalog()
    action = getattr(args, "avatars_action", None)
    if action == "rename":
        catalog.rename_avatar(args.old, args.new)
        print(f"renamed avatar {args.old!r} to {args.new!r}")
    elif action == "delete":
        catalog.delete_avatar(args.name)
        print(f"deleted avatar {args.name!r}")
    else:
        rows = catalog.list_avatars()
        if not rows:
            print(f"no avatars in {catalog.home}; make one with `python app.py train VIDEO_OR_PHOTO --name NAME`")
        for row in rows:
            psnr = f"{row['psnr']:.2f} dB held-out" if isinstance(row["psnr"], (int, float)) else "no held-out score"
            print(f"{row['name']}\t{row['kind']}\t{row['gaussians']} Gaussians\t{row['resolution']} px\t{psnr}")
    return 0


def run_videos(args: argparse.Namespace) -> int:
    catalog = _catalog()
    if getattr(args, "videos_action", None) == "delete":
        catalog.delete_video(args.id)
        print(f"deleted video {args.id}")
        return 0
    rows = catalog.list_videos()
    if not rows:
        print(f"no videos in {catalog.home}: the studio files the videos it makes here (`say` writes to --out)")
    for row in rows:
        script = " ".join((row["text"] or "").split())
        script = script if len(script) <= 60 else script[:57] + "..."
        print(f"{row['id']}\t{row['audio_seconds'] or 0:.1f} s\t{row['avatar']}\t{row['voice']}\t{script}\t"
              f"{row['path']}")
    return 0
