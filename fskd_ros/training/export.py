"""``fskd export``: a checkpoint (or a bare architecture) -> ONNX encoder file.

The file carries everything the runtime needs (input size, normalisation,
base-class mean, content hash) in its metadata, and is checked against the
PyTorch model with onnxruntime before it is written.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from fskd_ros.core.encoder_file import (INPUT_NAME, OUTPUT_NAME, EncoderInfo, as_float_list,
                                        graph_hash, write_encoder_info)
from fskd_ros.training.common import CheckpointError, atomic_write_bytes, load_checkpoint, set_threads
from fskd_ros.training.models import EncoderSpec, create_encoder, create_teacher

OPSET = 17
MAX_RELATIVE_DIFF = 1e-3


class ExportError(RuntimeError):
    """Export failed or the ONNX graph disagrees with PyTorch."""


def load_encoder(source: str, untrained: bool = False, input_size: Optional[int] = None,
                 teacher_weights: Optional[str] = None) -> Tuple[nn.Module, EncoderSpec, dict]:
    """Checkpoint path, ``teacher:NAME`` or (with ``untrained``) an architecture name.

    Returns the eval-mode encoder, its spec and the checkpoint's summary fields.
    """
    path = Path(source)
    if path.suffix in (".pt", ".pth", ".ckpt") or path.is_file():
        ckpt = load_checkpoint(path)
        spec = EncoderSpec.from_dict(ckpt["spec"]) if "spec" in ckpt else EncoderSpec(
            ckpt["arch"], [input_size or 84] * 2)
        if input_size:
            spec.input_size = [input_size, input_size]
        model = create_encoder(spec.arch, **spec.kwargs)
        try:
            model.load_state_dict(ckpt["model"], strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: weights do not fit {spec.arch}: {exc}") from exc
        summary = {"trained": True, "method": ckpt.get("method", "?"),
                   "epochs": ckpt.get("epoch"), "args": ckpt.get("args", {})}
        return model.eval(), spec, summary
    if source.startswith("teacher:"):
        model, spec = create_teacher(source.split(":", 1)[1], teacher_weights, input_size)
        return model.eval(), spec, {"trained": True, "method": "pretrained teacher"}
    if not untrained:
        raise CheckpointError(
            f"{source} is not a checkpoint file; pass --untrained to export a randomly "
            "initialised architecture")
    torch.manual_seed(0)
    model = create_encoder(source)
    spec = EncoderSpec(source, [input_size or 84] * 2)
    return model.eval(), spec, {"trained": False, "method": "random initialisation"}


@torch.no_grad()
def compute_base_mean(model: nn.Module, spec: EncoderSpec, base_specs: List[str],
                      max_per_class: int = 0, cache_dir: Optional[str] = None,
                      split_file: Optional[str] = None, batch_size: int = 64) -> np.ndarray:
    """Mean pooled feature over base-class images, with runtime preprocessing."""
    from fskd_ros.training.evaluate import extract_features
    from fskd_ros.training.data import parse_set_spec

    feats = []
    for set_spec in base_specs:
        imageset = parse_set_spec(set_spec, split_file)
        if max_per_class > 0:
            imageset = imageset.subset(max_per_class)
        feats.append(extract_features(model, spec, imageset, cache_dir=cache_dir,
                                      batch_size=batch_size))
    return np.concatenate(feats).mean(axis=0).astype(np.float32)


def export_onnx_bytes(model: nn.Module, input_size: List[int]) -> bytes:
    """TorchScript-based ONNX export with a dynamic batch axis."""
    dummy = torch.zeros(2, 3, int(input_size[0]), int(input_size[1]))
    buffer = io.BytesIO()
    torch.onnx.export(model, (dummy,), buffer, dynamo=False, opset_version=OPSET,
                      input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                      dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                      do_constant_folding=True)
    return buffer.getvalue()


def verify_onnx(model_bytes: bytes, model: nn.Module, input_size: List[int],
                batch: int = 3, seed: int = 0) -> float:
    """Max |onnx - torch| relative to max |torch| on a random batch; raises if too big."""
    import onnxruntime as ort

    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, int(input_size[0]), int(input_size[1]), generator=generator)
    with torch.no_grad():
        expected = model(x).numpy()
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
    max_abs = float(np.abs(got - expected).max())
    relative = max_abs / max(float(np.abs(expected).max()), 1e-12)
    print(f"onnx vs torch: max abs diff {max_abs:.3g}, relative {relative:.3g} "
          f"(batch {batch}, output {tuple(got.shape)})")
    if got.shape != expected.shape or relative > MAX_RELATIVE_DIFF:
        raise ExportError(f"ONNX output differs from PyTorch (relative {relative:.3g} > "
                          f"{MAX_RELATIVE_DIFF})")
    return relative


def export_encoder(model: nn.Module, spec: EncoderSpec, output: Path | str, trained: bool,
                   base_mean: Optional[np.ndarray], description: str) -> EncoderInfo:
    """Export, verify, attach metadata and write the encoder file atomically."""
    import onnx

    model = model.eval()
    model_bytes = export_onnx_bytes(model, spec.input_size)
    verify_onnx(model_bytes, model, spec.input_size)
    proto = onnx.load_from_string(model_bytes)
    onnx.checker.check_model(proto)
    dim = int(proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value) or int(
        model(torch.zeros(1, 3, *spec.input_size)).shape[1])
    info = EncoderInfo(
        arch=spec.arch, input_size=[int(v) for v in spec.input_size], mean=as_float_list(spec.mean),
        std=as_float_list(spec.std), embedding_dim=dim,
        base_mean=as_float_list(base_mean) if base_mean is not None else [],
        trained=bool(trained), description=description, content_hash=graph_hash(model_bytes))
    write_encoder_info(proto, info)
    atomic_write_bytes(output, proto.SerializeToString())
    return info


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="checkpoint file, 'teacher:NAME', or an architecture "
                        "name with --untrained (e.g. mobilevit_xxs)")
    parser.add_argument("--output", "-o", required=True, help="ONNX encoder file to write")
    parser.add_argument("--untrained", action="store_true",
                        help="export random weights (marked trained=False in the metadata)")
    parser.add_argument("--input-size", type=int, default=None,
                        help="square input size (default: the checkpoint's, or 84)")
    parser.add_argument("--base-data", nargs="*", default=[],
                        help="[NAME=]DIR[@SPLIT] sets whose mean feature becomes base_mean")
    parser.add_argument("--base-max-per-class", type=int, default=0,
                        help="use at most this many images per base class (0 = all)")
    parser.add_argument("--split-file", default=None)
    parser.add_argument("--cache-dir", default=None, help="decoded-image cache folder")
    parser.add_argument("--teacher-weights", default=None)
    parser.add_argument("--description", default=None)
    parser.add_argument("--threads", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    try:
        model, spec, summary = load_encoder(args.source, args.untrained, args.input_size,
                                            args.teacher_weights)
    except CheckpointError as exc:
        print(f"fskd export: {exc}", file=sys.stderr)
        return 2
    trained = bool(summary["trained"]) and not args.untrained
    if args.base_data:
        base_mean = compute_base_mean(model, spec, args.base_data, args.base_max_per_class,
                                      args.cache_dir, args.split_file)
    elif not trained:
        base_mean = np.zeros(int(model(torch.zeros(1, 3, *spec.input_size)).shape[1]), np.float32)
    else:
        print("fskd export: a trained encoder needs --base-data to compute base_mean",
              file=sys.stderr)
        return 2
    if args.description is not None:
        description = args.description
    elif not trained:
        description = (f"UNTRAINED {spec.arch} (random weights): a placeholder so the runtime "
                       "can load a model; its few-shot accuracy is meaningless.")
    else:
        description = f"{spec.arch} @{spec.input_size[0]}px, {summary.get('method', '')}"
    info = export_encoder(model, spec, args.output, trained, base_mean, description)
    size_mb = Path(args.output).stat().st_size / 1e6
    print(f"wrote {args.output} ({size_mb:.2f} MB): {info.encoder_id}, dim {info.embedding_dim}, "
          f"input {info.input_size}, trained={info.trained}")
    return 0
