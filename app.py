"""TalkingAvatar-3DGS: the studio (no arguments) and the command line (subcommands).

    python app.py                      # Gradio studio on 127.0.0.1:7860
    python app.py speak --text T --out speech.wav --timing timing.json
    python app.py timing AUDIO [--text T] --out timing.json

Each package registers its own subcommands (`<package>/cli.py: add_commands(subparsers)`), so this file stays
a dispatcher. Heavy imports happen inside the command handlers, so `--help` is instant.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# (module, function) pairs that register subcommands, in the order they appear in --help.
_CLI_MODULES = (
    ("audio.cli", "add_commands"),
    ("animation.timing_plot", "add_plot_command"),
    ("avatar.cli", "add_commands"),
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
    raise SystemExit("the studio is not built yet; use the subcommands (python app.py --help)")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
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
