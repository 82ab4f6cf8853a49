"""Interactive segmentation in the browser: open a video, draw the objects, propagate, correct, export.

    python interactive_demo.py --model saves/s03_pcvos_ytvos.pth
    python interactive_demo.py --model recipe --port 8000 --workdir sessions/

Starts a local web app (FastAPI + uvicorn) and prints its URL. Sessions (annotations, propagated
masks, exports) live in --workdir, one folder each, and can be reopened after a restart. The engine
flags are those of every driver; L, precision, memory strategy and size can also be changed in the
page. See docs/interactive.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Only light modules here: --help and a wrong path answer before torch loads (docs/cli.md, "Fast answers").
from inference.cli import (  # noqa: E402
    add_engine_args,
    check_engine_flags,
    engine_settings,
    load_network_and_settings,
    memory_options,
)
from util.arguments import new_parser  # noqa: E402
from util.errors import run_cli  # noqa: E402
from util.runtime import resolve_device  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The command line (docs/cli.md)."""
    parser = new_parser(__doc__)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes the "
                             "app, which reads and writes files as you, to the network)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--workdir", type=Path, default=Path("interactive_sessions"), metavar="FOLDER",
                        help="folder of the session folders (default ./interactive_sessions)")
    add_engine_args(parser)
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_app(args: argparse.Namespace):
    """The app for parsed arguments: loads the network once and checks the engine flags."""
    check_engine_flags(args, one_strategy=False)  # the page can switch to the strategy a knob is for
    from inference.interactive.propagate import Propagator
    from inference.interactive.server import create_app
    from inference.interactive.session import Settings

    device = resolve_device(args.device)
    network, recorded = load_network_and_settings(args.model, device, args.quality_weights)
    config = engine_settings(args, recorded)
    memory_options(args, network)  # checks the memory flags before the first propagation
    from inference.report import header_line

    print(header_line("interactive_demo.py", args, device, config.clip_length, config=config,
                      extra=["the page can change L, precision, memory and size per session"]), flush=True)
    defaults = Settings(clip_length=config.clip_length, precision=config.precision, memory=args.memory, size=args.size)
    return create_app(args.workdir, defaults, lambda session: Propagator(session, network, config, args))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    app = build_app(args)
    import uvicorn

    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
    server = uvicorn.Server(config)
    # uvicorn reports the bound port only after startup: print the URL from the started socket
    original_startup = server.startup

    async def startup(sockets=None) -> None:
        await original_startup(sockets)
        for socket_server in server.servers:
            for sock in socket_server.sockets:
                host, port = sock.getsockname()[:2]
                shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
                print(f"PCVOS interactive: http://{shown}:{port}/  (sessions in {args.workdir})", flush=True)
                return

    server.startup = startup
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
