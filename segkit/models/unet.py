"""UNet = encoder (from the registry) + decoder + 1×1 segmentation head (+ deep-supervision heads).

Any input size works: the input is padded at the end of each axis to a multiple of
the encoder's total stride and the logits are cropped back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn import functional as F

from segkit.config import ModelCfg
from segkit.errors import ConfigError
from segkit.models.decoder import DecoderArgs, UNetDecoder
from segkit.models.encoders.base import Encoder, EncoderArgs
from segkit.models.layers import conv
from segkit.registry import ENCODERS


class UNet(nn.Module):
    """A UNet whose encoder is any registered encoder; outputs logits (no softmax) at input resolution.

    Usually made by :func:`build_model`. ``in_channels`` (from the encoder's first convolution) and
    ``num_classes`` say what it takes and gives. Deep-supervision heads exist on every decoder stage but the
    last (so checkpoints always load); in training mode with ``deep_supervision`` the forward pass returns
    ``[logits, aux_1, aux_2, ...]`` from the highest resolution down, each at its own resolution
    (``output_reductions``).
    """

    def __init__(self, encoder: Encoder, decoder: UNetDecoder, spatial_dims: int, num_classes: int,
                 deep_supervision: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.head = conv(spatial_dims, decoder.stage_channels[-1], num_classes, 1, bias=True)
        self.aux_heads = nn.ModuleList(conv(spatial_dims, c, num_classes, 1, bias=True)
                                       for c in decoder.stage_channels[:-1])
        first_conv = next((m for m in encoder.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
        self.in_channels = first_conv.in_channels if first_conv is not None else None
        self.num_classes = num_classes
        self.deep_supervision = deep_supervision

    @property
    def deep_supervision(self) -> bool:
        """Whether training-mode forward passes also return the auxiliary outputs; settable after building."""
        return self._deep_supervision

    @deep_supervision.setter
    def deep_supervision(self, enabled: bool) -> None:
        self._deep_supervision = bool(enabled)
        self.aux_heads.requires_grad_(self._deep_supervision)  # unused heads must not wait for gradients (DDP)

    @property
    def size_divisor(self) -> tuple[int, ...]:
        """Per-axis total stride; other sizes are padded up to a multiple internally."""
        return self.encoder.total_reduction

    @property
    def output_reductions(self) -> list[tuple[int, ...]]:
        """Per-axis reduction of each output in training with deep supervision: the logits, then aux_1, aux_2, …"""
        return list(reversed(self.decoder.stage_reductions))

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Logits ``(batch, num_classes, *spatial)`` for ``x`` of shape ``(batch, in_channels, *spatial)``, any
        spatial size; with deep supervision in training mode the list ``[logits, aux_1, aux_2, …]``."""
        self._check_input(x)
        spatial = x.shape[2:]
        padding = _padding(spatial, self.size_divisor)
        # a traced graph (torch.jit.trace, ONNX) keeps the padding even for an example that needs none
        if torch.jit.is_tracing() or any(padding):
            x = F.pad(x, [p for pad in reversed(padding) for p in (0, pad)])
        outputs = self.decoder(self.encoder(x))
        logits = self.head(outputs[-1])[(..., *(slice(0, s) for s in spatial))]
        if not (self.deep_supervision and self.training):
            return logits
        aux = [self._crop(head(out), spatial, x.shape[2:]) for head, out in zip(self.aux_heads, outputs[:-1],
                                                                                    strict=True)]
        return [logits, *reversed(aux)]

    def _check_input(self, x: torch.Tensor) -> None:
        """Foreseeable mistakes as one line, before torch reports them on the padded tensor deep inside."""
        dims = len(self.size_divisor)
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            kind = f"a {x.dtype} tensor" if isinstance(x, torch.Tensor) else f"a {type(x).__name__}"
            raise TypeError(f"the UNet takes a floating-point torch.Tensor (e.g. x.float()); got {kind}")
        if x.dim() != dims + 2:
            raise ValueError(f"a {dims}D UNet takes (batch, channels, {dims} spatial axes); got a tensor of shape "
                             f"{tuple(x.shape)}")
        if torch.jit.is_tracing():  # sizes are traced tensors there: a Python comparison would freeze them
            return
        if self.in_channels is not None and x.shape[1] != self.in_channels:
            raise ValueError(f"the UNet was built with in_channels={self.in_channels} but the input has {x.shape[1]} "
                             f"channels (shape {tuple(x.shape)}, read as (batch, channels, *spatial))")
        if min(x.shape[2:]) < 1:
            raise ValueError(f"every spatial axis needs at least 1 voxel; got a tensor of shape {tuple(x.shape)}")

    @staticmethod
    def _crop(aux: torch.Tensor, spatial: torch.Size, padded: torch.Size) -> torch.Tensor:
        """An auxiliary output without the voxels that see only the padding: ``ceil(size / reduction)`` per axis,
        so that the label resized to it (``DeepSupervisionLoss``) lines up with what the head saw."""
        keep = [-(-size // (full // low)) for size, full, low in zip(spatial, padded, aux.shape[2:], strict=True)]
        return aux[(..., *(slice(0, k) for k in keep))]


def _padding(spatial: torch.Size, divisor: tuple[int, ...]) -> list[int]:
    """Voxels to add at the end of each axis: up to a multiple of ``divisor``, plus one more divisor on the last axis
    when the input is within one divisor on every axis (the deepest stage then holds 2 voxels: instance norm refuses
    one). Arithmetic, not a branch, so that a traced graph (ONNX export) keeps the rule for every input size."""
    padding = [(-s) % d for s, d in zip(spatial, divisor, strict=True)]
    within = 1
    for s, d in zip(spatial, divisor, strict=True):
        within = within * ((2 * d - 1) // (s + d - 1))  # 1 where s <= d (s >= 1), else 0
    padding[-1] = padding[-1] + within * divisor[-1]
    return padding


def encoder_args(cfg: ModelCfg) -> EncoderArgs:
    """The encoder's construction arguments from the model config."""
    return EncoderArgs(cfg.spatial_dims, cfg.in_channels, cfg.norm, cfg.act, cfg.strides)


_INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "kaiming_uniform_",
                   "kaiming_normal_", "xavier_uniform_", "xavier_normal_", "orthogonal_")


@contextlib.contextmanager
def _without_initialisation() -> Iterator[None]:
    """Make ``torch.nn.init`` a no-op while modules are built whose weights will be loaded anyway
    (random initialisation of the 72M-parameter 3D UNet takes ~1.3 s on a CPU; not thread-safe)."""
    saved = {name: getattr(nn.init, name) for name in _INIT_FUNCTIONS}
    for name in _INIT_FUNCTIONS:
        setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(nn.init, name, function)


def build_model(cfg: ModelCfg, initialise: bool = True) -> UNet:
    """Build the UNet described by ``cfg``, a :class:`segkit.config.ModelCfg` (names resolve through the registries).

    ``initialise=False`` is for loading a checkpoint: parameters are left uninitialised and
    ``model.encoder_weights`` is not read (the checkpoint holds every weight; load it strictly).
    Raises :class:`~segkit.errors.UnknownNameError` for an unknown encoder, upsampling mode or fusion,
    :class:`ConfigError` for strides or ``decoder_channels`` that do not fit the encoder, and
    :class:`~segkit.errors.CheckpointError` for an ``encoder_weights`` file that cannot be loaded.
    """
    _require_model_cfg(cfg, "build_model")
    if not initialise:
        with _without_initialisation():
            return _build(cfg, load_pretrained=False)
    return _build(cfg, load_pretrained=True)


def check_model_config(cfg: ModelCfg) -> None:
    """Raise the error that :func:`build_model` would (an unknown name, strides or decoder_channels against the
    encoder's stages) without allocating a weight: the model is built on the meta device and
    ``encoder_weights`` is not read."""
    _require_model_cfg(cfg, "check_model_config")
    with torch.device("meta"), _without_initialisation():
        _build(cfg, load_pretrained=False)


def _require_model_cfg(cfg: object, caller: str) -> None:
    if isinstance(cfg, ModelCfg):
        return
    if isinstance(getattr(cfg, "model", None), ModelCfg):
        hint = f"pass its model section, {caller}(config.model)"
    else:
        hint = "make one with ModelCfg(**options) or ModelCfg(spatial_dims=2, encoder='resnet34', num_classes=2)"
    raise TypeError(f"{caller} takes a segkit.config.ModelCfg, got a {type(cfg).__name__}: {hint}")


def _build(cfg: ModelCfg, load_pretrained: bool) -> UNet:
    try:
        encoder = ENCODERS.get(cfg.encoder)(encoder_args(cfg))
    except ValueError as exc:
        raise ConfigError(f"model.strides: {exc}") from None
    stages = len(encoder.feature_info)
    if len(cfg.decoder_channels) != stages:
        raise ConfigError(
            f"model.decoder_channels: encoder '{cfg.encoder}' has {stages} stages, so give {stages} "
            f"values (got {len(cfg.decoder_channels)})"
        )
    if cfg.encoder_weights is not None and load_pretrained:
        from segkit.models.pretrained import load_encoder_weights

        load_encoder_weights(encoder, cfg.encoder_weights)
    decoder_args = DecoderArgs(cfg.decoder_channels, cfg.upsample, cfg.fusion, cfg.norm, cfg.act)
    decoder = UNetDecoder(encoder.feature_info, cfg.spatial_dims, decoder_args)
    return UNet(encoder, decoder, cfg.spatial_dims, cfg.num_classes, cfg.deep_supervision)
