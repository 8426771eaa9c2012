"""``fskd build-engine MODEL``: build (or verify) the cached TensorRT engine ahead of time.

Run it once per device/JetPack, e.g. in a Jetson image build or before the
first launch, so the node starts in seconds instead of building for minutes:

    fskd build-engine default --precision fp16 --max-batch 8
    fskd build-engine default --precision int8 --calib-dir ~/calib_images
    fskd build-engine default --check      # only report whether the cache is valid

It uses the same cache and key as the node (``$FSKD_ENGINE_CACHE`` or
``~/.cache/fskd_ros/engines``): an engine built here is found there as long as
the ONNX file, TensorRT, GPU, precision, input size and batch range match.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from fskd_ros.core.backends.base import BackendError
from fskd_ros.core.backends.engine_cache import PRECISIONS, EngineCache
from fskd_ros.core.encoder_file import read_encoder_info, resolve_encoder_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default="default",
                        help="ONNX encoder ('default' = the shipped encoder)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16")
    parser.add_argument("--calib-dir", default=None,
                        help="int8: folder of calibration images (not needed for a Q/DQ model "
                             "from `fskd quantize --target tensorrt`)")
    parser.add_argument("--calib-images", type=int, default=512)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--opt-batch", type=int, default=1,
                        help="batch size TensorRT tunes kernels for (1 = per-frame latency)")
    parser.add_argument("--cache-dir", default=None,
                        help="engine cache (default $FSKD_ENGINE_CACHE or ~/.cache/fskd_ros/engines)")
    parser.add_argument("--workspace-mb", type=int, default=1024)
    parser.add_argument("--device", type=int, default=0)
    parser.add_argument("--check", action="store_true",
                        help="do not build: exit 0 if a valid engine is cached, 1 otherwise")
    parser.add_argument("--verbose", action="store_true", help="TensorRT info messages too")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from fskd_ros.core.backends import tensorrt_backend as trtb

    model = resolve_encoder_path(args.model)
    info = read_encoder_info(model)
    if args.precision == "int8" and not args.calib_dir and not trtb.onnx_has_qdq(model):
        print("int8 needs --calib-dir DIR (images like the deployment ones), or a Q/DQ model "
              "made with `fskd quantize --target tensorrt`")
        return 2
    try:
        env = trtb.check_environment(args.device)
    except BackendError as exc:
        print(f"error: {exc}")
        return 1
    calib = trtb.list_images(args.calib_dir, args.calib_images) if (
        args.precision == "int8" and args.calib_dir and not trtb.onnx_has_qdq(model)) else []
    key = trtb.make_engine_key(model, info, args.precision, args.max_batch, env,
                               args.opt_batch, calib)
    cache = EngineCache(args.cache_dir)
    status = cache.check(model.name, key)
    report = {"model": str(model), "engine": str(status.engine_path), "state": status.state,
              "reason": status.reason, "key": key.to_dict()}
    if args.check:
        print(json.dumps(report, indent=2))
        return 0 if status.valid else 1
    if status.valid:
        print(json.dumps(report, indent=2))
        print("engine is up to date; nothing to build")
        return 0
    try:
        backend = trtb.TensorRTBackend(model, info, precision=args.precision,
                                       max_batch=args.max_batch, opt_batch=args.opt_batch,
                                       cache_dir=args.cache_dir, allow_build=True,
                                       calib_dir=args.calib_dir, calib_images=args.calib_images,
                                       device=args.device, workspace_mb=args.workspace_mb)
    except BackendError as exc:
        print(f"error: {exc}")
        return 1
    report.update(state="built" if backend.built_now else "valid", backend=backend.describe(),
                  engine=str(backend.engine_path))
    backend.close()
    print(json.dumps(report, indent=2))
    return 0
