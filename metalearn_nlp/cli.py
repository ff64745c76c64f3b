"""Command line: ``metalearn-nlp info`` (more sub-commands arrive with the training engine)."""

from __future__ import annotations

import argparse
import sys

from . import __version__


def _info(_: argparse.Namespace) -> int:
    import torch

    from .kernels import describe

    print(f"metalearn-nlp {__version__}")
    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
    print(f"kernels: {describe()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="metalearn-nlp", description=__doc__)
    parser.add_argument("--version", action="version", version=f"metalearn-nlp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions and the active kernel backend").set_defaults(func=_info)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
