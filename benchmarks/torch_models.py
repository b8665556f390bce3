"""PyTorch references of jaxseg's FCN, RRCNN ("custom") and U-Net, and a weight copier.

The modules mirror ``jaxseg.models`` knob for knob and name for name: a torch key such as
``encoder.0.conv.weight`` is the Flax path ``encoder_0/conv/kernel``, so
:func:`copy_torch_to_flax` is a table of per-layer-type transposes. Only imported where
torch is installed (benchmarks and parity tests).
"""

import re

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _xavier_init(module: nn.Module) -> None:
    """Xavier-uniform conv weights and zero biases, as the Flax FCN/RRCNN models do."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ConvReLUBN(nn.Module):
    """Conv 3x3 s2 p1 (or ConvTranspose k3 s2 p1 op1) -> ReLU -> BatchNorm."""

    def __init__(self, cin: int, cout: int, transpose: bool = False):
        super().__init__()
        if transpose:
            self.conv = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)
        else:
            self.conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))


def _fcn_decoder(widths: tuple[int, ...]) -> nn.ModuleList:
    outs = tuple(reversed(widths))
    ins = (outs[0], *outs[:-1])
    return nn.ModuleList(ConvReLUBN(i, o, transpose=True) for i, o in zip(ins, outs, strict=True))


class FCN(nn.Module):
    """``jaxseg.models.FCN`` in PyTorch (NCHW)."""

    def __init__(
        self, num_classes: int, widths: tuple[int, ...] = (32, 64, 128, 256, 512), in_ch: int = 3
    ):
        super().__init__()
        ins = (in_ch, *widths[:-1])
        self.encoder = nn.ModuleList(ConvReLUBN(i, o) for i, o in zip(ins, widths, strict=True))
        self.decoder = _fcn_decoder(widths)
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)
        _xavier_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in (*self.encoder, *self.decoder):
            x = layer(x)
        return self.classifier(x)


class RecurrentBlock(nn.Module):
    """R2U-Net ``Recurrent_block``: one shared Conv+BN+ReLU applied t + 1 times."""

    def __init__(self, ch: int, t: int = 2):
        super().__init__()
        self.t = t
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)
        self.bn = nn.BatchNorm2d(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = F.relu(self.bn(self.conv(x)))
        for _ in range(self.t):
            x1 = F.relu(self.bn(self.conv(x + x1)))
        return x1


class RRCNNBlock(nn.Module):
    """R2U-Net ``RRCNN_block``: 1x1 conv, two recurrent blocks, residual."""

    def __init__(self, cin: int, cout: int, t: int = 2):
        super().__init__()
        self.conv1x1 = nn.Conv2d(cin, cout, 1)
        self.rcnn = nn.ModuleList([RecurrentBlock(cout, t), RecurrentBlock(cout, t)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1x1(x)
        y = x
        for block in self.rcnn:
            y = block(y)
        return x + y


class RRCNNFCN(nn.Module):
    """``jaxseg.models.RRCNNFCN`` in PyTorch (NCHW)."""

    def __init__(self, num_classes: int, depth: int = 5, t: int = 2, in_ch: int = 3):
        super().__init__()
        widths = (32, 64, 128, 256, 512)[:depth]
        ins = (in_ch, *widths[:-1])
        self.encoder = nn.ModuleList(RRCNNBlock(i, o, t) for i, o in zip(ins, widths, strict=True))
        self.decoder = _fcn_decoder(widths)
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)
        _xavier_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.encoder:
            x = F.max_pool2d(block(x), 2)
        for layer in self.decoder:
            x = layer(x)
        return self.classifier(x)


class DoubleConv(nn.Module):
    """2 x [Conv3x3 pad 1 (no bias) -> BatchNorm -> ReLU]."""

    def __init__(self, cin: int, cout: int, mid: int | None = None):
        super().__init__()
        mid = mid or cout
        self.conv1 = nn.Conv2d(cin, mid, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(x)))


class Up(nn.Module):
    """milesial ``Up``: upsample x2, concatenate [skip, x], DoubleConv."""

    def __init__(self, cin: int, cout: int, upsample: str):
        super().__init__()
        self.upsample = upsample
        if upsample == "bilinear":
            self.conv = DoubleConv(cin, cout, cin // 2)
        else:
            self.up = nn.ConvTranspose2d(cin, cin // 2, 2, stride=2)
            self.conv = DoubleConv(cin, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.upsample == "bilinear":
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        else:
            x = self.up(x)
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """``jaxseg.models.UNet`` in PyTorch (NCHW); milesial/Pytorch-UNet layout."""

    def __init__(
        self, num_classes: int, base_width: int = 64, upsample: str = "transpose", in_ch: int = 3
    ):
        super().__init__()
        w = [base_width * m for m in (1, 2, 4, 8, 16)]
        factor = 2 if upsample == "bilinear" else 1
        self.inc = DoubleConv(in_ch, w[0])
        self.down = nn.ModuleList(
            DoubleConv(w[i], w[i + 1] // (factor if i == 3 else 1)) for i in range(4)
        )
        self.up = nn.ModuleList(
            Up(w[4 - i], w[3 - i] // (factor if i < 3 else 1), upsample) for i in range(4)
        )
        self.outc = nn.Conv2d(w[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for block in self.down:
            skips.append(block(F.max_pool2d(skips[-1], 2)))
        x = skips.pop()
        for block in self.up:
            x = block(x, skips.pop())
        return self.outc(x)


def _flax_path(torch_name: str) -> tuple[str, ...]:
    """``encoder.0.conv`` -> ``("encoder_0", "conv")`` (list index joins its parent)."""
    return tuple(re.sub(r"\.(\d+)", r"_\1", torch_name).split("."))


def _set(tree: dict, path: tuple[str, ...], leaf: str, value: torch.Tensor, perm=None) -> None:
    # clone(): numpy() would share memory that torch's BatchNorm updates in place.
    array = value.detach().cpu().float().clone().numpy()
    node = tree
    for key in path:
        node = node.setdefault(key, {})
    node[leaf] = np.ascontiguousarray(array.transpose(perm) if perm else array)


def copy_torch_to_flax(module: nn.Module) -> dict[str, dict]:
    """Copies a reference module's weights into Flax variables, layer by layer.

    Conv2d weight OIHW -> ``kernel`` HWIO; ConvTranspose2d weight (in, out, kh, kw) ->
    ``kernel`` (kh, kw, in, out); BatchNorm2d weight/bias -> ``scale``/``bias`` params and
    running_mean/running_var -> ``mean``/``var`` batch_stats.

    Args:
      module: one of this file's models (or any module built from these layer types whose
        names follow the same convention).

    Returns:
      ``{"params": ..., "batch_stats": ...}`` of float32 numpy arrays.

    Raises:
      TypeError: if a module with parameters is of an unsupported type.
    """
    params: dict = {}
    stats: dict = {}
    for name, m in module.named_modules():
        path = _flax_path(name)
        if isinstance(m, nn.ConvTranspose2d):
            _set(params, path, "kernel", m.weight, (2, 3, 0, 1))
        elif isinstance(m, nn.Conv2d):
            _set(params, path, "kernel", m.weight, (2, 3, 1, 0))
        elif isinstance(m, nn.BatchNorm2d):
            _set(params, path, "scale", m.weight)
            _set(params, path, "bias", m.bias)
            _set(stats, path, "mean", m.running_mean)
            _set(stats, path, "var", m.running_var)
            continue
        elif any(True for _ in m.parameters(recurse=False)):
            raise TypeError(f"no Flax mapping for {name!r} ({type(m).__name__})")
        else:
            continue
        if m.bias is not None:
            _set(params, path, "bias", m.bias)
    return {"params": params, "batch_stats": stats}
