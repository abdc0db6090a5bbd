"""Command line: ``python -m lib <command>``; ``python -m lib --help`` lists the commands.

Each command lives in the module that owns the work; this file only dispatches.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib", description="Face colorization: command line.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="run the end-to-end demo and write the README figures to figures/")
    p.add_argument("--data", default=None, help="CelebA-HQ folder (default: $CELEBAHQ_DIR, data/celeba_hq/, else toy faces)")
    p.add_argument("--out", default="figures", help="folder for the figures (default: figures)")

    args = parser.parse_args(argv)
    if args.command == "demo":
        from lib.demo import main as demo_main

        return demo_main(data=args.data, out=args.out)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
