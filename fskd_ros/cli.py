"""The ``fskd`` command line: one sub-command per module, imported lazily.

Each module named in ``COMMANDS`` provides ``add_arguments(parser)`` and
``run(args) -> int``. Only the chosen module is imported, so ``fskd bench``
does not pay for torch and ``fskd distill`` does not need ROS.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

# name -> (module, one-line help)
COMMANDS = {
    "distill": ("fskd_ros.training.distill", "distil a student encoder from a frozen teacher"),
    "train": ("fskd_ros.training.train", "supervised training (ResNet12 baseline, no-teacher student)"),
    "eval": ("fskd_ros.training.evaluate", "episodic few-shot evaluation on folder-per-class data"),
    "export": ("fskd_ros.training.export", "export a checkpoint to an ONNX encoder file"),
    "quantize": ("fskd_ros.edge.quantize", "int8-quantise an ONNX encoder for the CPU path"),
    "build-engine": ("fskd_ros.edge.build_engine", "build/cache a TensorRT engine ahead of time"),
    "bench": ("fskd_ros.edge.bench", "latency/throughput/energy benchmark per backend"),
    "info": ("fskd_ros.core.info", "print an encoder file's metadata"),
}


def build_parser(selected: Optional[str] = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fskd", description="Few-shot knowledge-distillation tools for fskd_ros.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == selected:
            importlib.import_module(module_name).add_arguments(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(selected if selected in COMMANDS else None)
    args = parser.parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
