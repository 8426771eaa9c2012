"""``fskd info MODEL``: print an encoder file's metadata."""

from __future__ import annotations

import argparse
import json

from fskd_ros.core.encoder_file import read_encoder_info, resolve_encoder_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default="default",
                        help="ONNX encoder file ('default' = the shipped encoder)")


def run(args: argparse.Namespace) -> int:
    info = read_encoder_info(resolve_encoder_path(args.model))
    shown = {k: v for k, v in vars(info).items() if k != "base_mean"}
    shown["encoder_id"] = info.encoder_id
    shown["base_mean"] = f"<{len(info.base_mean)} values>"
    print(json.dumps(shown, indent=2))
    if not info.trained:
        print("WARNING: this encoder has random weights; its accuracy is meaningless.")
    return 0
