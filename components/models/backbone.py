"""Backbones: a timm `features_only` network exposed as feature maps keyed by their stride.

Heads ask for features by stride (the main head takes `main_reduction`, the Multi-level Feature
Learning heads take the strides in `model.mfl_strides`), so the same PoseNet works for plain CNNs
whose deepest stage is stride 32 and for HRNet whose pose branch is already stride 4.

Pretrained weights come from a local file (state dict, possibly wrapped or prefixed) or a hub name
that timm downloads; loading reports missing and unexpected keys so a wrong file is obvious.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import timm
import torch
from timm.models._features import FeatureInfo
from torch import nn

from components.errors import TrsPoseError

log = logging.getLogger(__name__)

# Families whose final stage keeps a high-resolution branch; timm's raw branches are used
# (feature_location="") and the main head reads the branch at the heatmap stride.
_HIGH_RESOLUTION_FAMILIES = ("hrnet",)
# Wrappers other training code puts around a state dict, and prefixes it puts on keys.
_WRAPPER_KEYS = ("state_dict", "model", "student", "model_state", "module")
_KEY_PREFIXES = ("module.", "_orig_mod.", "model.", "backbone.body.", "backbone.", "encoder.", "body.")
_WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".pth.tar")


class PretrainedWeightsError(TrsPoseError, ValueError):
    """A weights file that does not fit the network; the message names the file and the keys."""


@dataclass
class LoadReport:
    """What a weights file contributed: shown to the user so a silent partial load cannot happen."""

    source: str
    loaded: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def summary(self) -> str:
        def head(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

        text = f"{self.source}: loaded {self.loaded} tensors"
        if self.missing:
            text += f"; missing {len(self.missing)}: {head(self.missing)}"
        if self.unexpected:
            text += f"; unexpected {len(self.unexpected)}: {head(self.unexpected)}"
        return text


def is_high_resolution(name: str) -> bool:
    return name.split("/")[-1].startswith(_HIGH_RESOLUTION_FAMILIES)


def is_weights_file(spec: str) -> bool:
    """A pretrained spec names a file when it exists locally or looks like one."""
    return Path(spec).expanduser().exists() or spec.endswith(_WEIGHT_SUFFIXES)


def hub_overlay(hub_name: str) -> dict[str, str]:
    """timm's pretrained_cfg_overlay for a hub name such as `timm/resnet18.a1_in1k` or `hf-hub:org/repo`."""
    return {"hf_hub_id": hub_name.removeprefix("hf-hub:")}


def create_timm_features(name: str, pretrained_hub: str | None = None) -> nn.Module:
    """The timm feature extractor; downloads weights only when `pretrained_hub` is given."""
    kwargs: dict = {"features_only": True}
    if is_high_resolution(name):
        kwargs["feature_location"] = ""
    if pretrained_hub is not None:
        kwargs["pretrained_cfg_overlay"] = hub_overlay(pretrained_hub)
    try:
        return timm.create_model(name, pretrained=pretrained_hub is not None, **kwargs)
    except RuntimeError as exc:
        raise ValueError(f"model.backbone={name!r}: timm cannot build it with features_only: {exc}") from exc


class FeatureBackbone(nn.Module):
    """timm features_only network returning {stride: feature map} for the strides in `reductions`."""

    def __init__(
        self,
        name: str,
        heatmap_stride: int,
        extra_reductions: tuple[int, ...] = (),
        skip_reductions: bool = False,
    ):
        """`skip_reductions` also exposes every stage between the heatmap stride and the deepest (fpn skips)."""
        super().__init__()
        self.name = name
        self.body = create_timm_features(name)
        info = cast(FeatureInfo, self.body.feature_info)  # set by timm on features_only models
        available = dict(zip(info.reduction(), info.channels()))
        if is_high_resolution(name):
            if heatmap_stride not in available:
                raise ValueError(f"model.backbone={name!r} has no branch at the heatmap stride {heatmap_stride}")
            self.main_reduction = heatmap_stride
        else:
            self.main_reduction = max(available)
        missing = [r for r in extra_reductions if r not in available]
        if missing:
            raise ValueError(
                f"model.mfl_strides {list(missing)} are not strides of {name!r} (it has {sorted(available)})"
            )
        # HRNet fuses branches by exact 2x resampling, so its input sides must divide by the deepest stride
        self.size_multiple = max(available) if is_high_resolution(name) else 1
        skips = {r for r in available if heatmap_stride <= r < self.main_reduction} if skip_reductions else set()
        self.skip_reductions = tuple(sorted(skips))
        self.reductions = tuple(sorted({self.main_reduction, *extra_reductions, *skips}))
        self.channels = {r: available[r] for r in self.reductions}
        # feature_info lists one entry per returned map, in order; keep the index of each stride we need
        self._index_of = {r: info.reduction().index(r) for r in self.reductions}

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        if x.shape[-2] % self.size_multiple or x.shape[-1] % self.size_multiple:
            raise ValueError(
                f"{self.name!r} needs input sides divisible by {self.size_multiple}; got {tuple(x.shape[-2:])} "
                "(set input.image_size accordingly, e.g. [256, 192])"
            )
        features = self.body(x)
        return {r: features[i] for r, i in self._index_of.items()}

    def load_hub_weights(self, hub_name: str) -> LoadReport:
        """Build the same extractor with timm's pretrained weights from the hub and copy them in."""
        try:
            pretrained = create_timm_features(self.name, pretrained_hub=hub_name)
        except Exception as exc:  # hub clients raise many types (HTTP, OS, hash mismatch)
            raise PretrainedWeightsError(
                f"model.pretrained={hub_name!r}: could not fetch hub weights for {self.name!r} ({exc}); "
                "offline machines can pass a local weights file instead"
            ) from exc
        return load_state_dict_into(self.body, pretrained.state_dict(), source=hub_name)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file, unwrapped from common checkpoint containers."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PretrainedWeightsError(f"{path}: pretrained weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: object = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for corrupt or pickled-object files
            raise PretrainedWeightsError(f"{path}: not a readable torch weights file: {exc}") from exc
    while isinstance(state, Mapping):
        wrapper = next((k for k in _WRAPPER_KEYS if isinstance(state.get(k), Mapping)), None)
        if wrapper is None:
            break
        state = state[wrapper]
    if not isinstance(state, Mapping) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise PretrainedWeightsError(f"{path}: holds no state dict of tensors")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def strip_prefixes(state: Mapping[str, torch.Tensor], wanted: set[str]) -> dict[str, torch.Tensor]:
    """Drop wrapper prefixes (DDP's `module.`, torch.compile's `_orig_mod.`, ...) until keys match."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key
        while name not in wanted:
            prefix = next((p for p in _KEY_PREFIXES if name.startswith(p)), None)
            if prefix is None:
                break
            name = name[len(prefix) :]
        out[name] = value
    return out


def load_state_dict_into(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> LoadReport:
    """Copy matching tensors; refuse shape mismatches and files that match nothing."""
    own = module.state_dict()
    cleaned = strip_prefixes(state, set(own))
    matched = {k: v for k, v in cleaned.items() if k in own}
    bad_shapes = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in matched.items() if v.shape != own[k].shape
    ]
    if bad_shapes:
        raise PretrainedWeightsError(
            f"{source}: shape mismatch for {len(bad_shapes)} tensors: {'; '.join(bad_shapes[:5])}"
        )
    if not matched:
        raise PretrainedWeightsError(
            f"{source}: none of its {len(cleaned)} tensors match the network (e.g. {next(iter(cleaned), '-')!r} "
            f"vs {next(iter(own), '-')!r}); is it for another architecture?"
        )
    module.load_state_dict(matched, strict=False)
    report = LoadReport(
        source=source,
        loaded=len(matched),
        missing=sorted(set(own) - set(matched)),
        unexpected=sorted(set(cleaned) - set(own)),
    )
    log.info("pretrained weights %s", report.summary())
    return report
