"""PoseNet: backbone + main heatmap head + optional Multi-level Feature Learning (MFL) heads.

The auxiliary heads only run in training mode (or when asked), so teachers, reviewers and the
shipped student pay for the main head alone. A model built without MFL has no auxiliary
parameters at all, which keeps DistributedDataParallel free of unused parameters.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from components.config import ExperimentConfig, InputConfig, ModelConfig
from components.keypoints import COCO_PERSON
from components.method import method_spec
from components.models.backbone import (
    FeatureBackbone,
    LoadReport,
    PretrainedWeightsError,
    is_weights_file,
    load_state_dict_into,
    read_state_dict,
    strip_prefixes,
)
from components.models.heads import DeconvHead, FPNHead, MFLHead


class PoseOutput(NamedTuple):
    """Main heatmaps [B,K,h,w] and one auxiliary map per MFL stride (same shape), in config order."""

    heatmaps: torch.Tensor
    aux: list[torch.Tensor]


class PoseNet(nn.Module):
    def __init__(
        self,
        backbone: FeatureBackbone,
        num_keypoints: int,
        heatmap_stride: int,
        deconv_layers: int,
        deconv_channels: int,
        mfl_strides: tuple[int, ...] = (),
        mfl_channels: int = 64,
        head: str = "deconv",
    ):
        """`head="fpn"` needs a backbone built with `skip_reductions=True`; it ignores `deconv_layers`."""
        super().__init__()
        self.backbone = backbone
        self.heatmap_stride = heatmap_stride
        self.num_keypoints = num_keypoints
        self.mfl_strides = tuple(mfl_strides)
        main = backbone.main_reduction
        self.head: FPNHead | DeconvHead
        if head == "fpn":
            strides = (main, *backbone.skip_reductions)
            self.head_strides = strides
            self.head = FPNHead({s: backbone.channels[s] for s in strides}, num_keypoints, deconv_channels)
        else:
            self.head_strides = (main,)
            self.head = self._deconv_head(backbone, num_keypoints, heatmap_stride, deconv_layers, deconv_channels)
        # named `aux_heads` in checkpoints (state-dict keys `aux_heads.N.*`), so the attribute keeps that name
        self.aux_heads = nn.ModuleList(
            MFLHead(backbone.channels[s], num_keypoints, mfl_channels) for s in self.mfl_strides
        )

    @staticmethod
    def _deconv_head(
        backbone: FeatureBackbone, num_keypoints: int, heatmap_stride: int, deconv_layers: int, deconv_channels: int
    ) -> DeconvHead:
        """SimpleBaseline head; the deconvolution count must bridge the deepest stride to the heatmap stride."""
        main = backbone.main_reduction
        needed = 0 if main == heatmap_stride else round(math.log2(main / heatmap_stride))
        if main != heatmap_stride and (2**needed * heatmap_stride != main or deconv_layers != needed):
            raise ValueError(
                f"model.deconv_layers={deconv_layers}: {backbone.name!r} ends at stride {main}, so reaching "
                f"heatmap stride {heatmap_stride} takes {math.log2(main / heatmap_stride):g} stride-2 deconvolutions"
            )
        return DeconvHead(backbone.channels[main], num_keypoints, needed, deconv_channels)

    def heatmap_size(self, x: torch.Tensor) -> tuple[int, int]:
        return (x.shape[-2] // self.heatmap_stride, x.shape[-1] // self.heatmap_stride)

    def forward(self, x: torch.Tensor, with_aux: bool | None = None) -> PoseOutput:
        """`with_aux` defaults to training mode: inference uses the main head only."""
        size = self.heatmap_size(x)
        features = self.backbone(x)
        if isinstance(self.head, FPNHead):
            heatmaps = self.head({s: features[s] for s in self.head_strides}, size)
        else:
            heatmaps = self.head(features[self.backbone.main_reduction], size)
        if with_aux is None:
            with_aux = self.training
        aux = [head(features[s], size) for s, head in zip(self.mfl_strides, self.aux_heads)] if with_aux else []
        return PoseOutput(heatmaps, aux)

    def load_pretrained(self, path_or_hub_name: str) -> LoadReport:
        """Weights from a file (whole PoseNet, e.g. a student, or a backbone alone) or a timm hub name."""
        if not is_weights_file(path_or_hub_name):
            return self.backbone.load_hub_weights(path_or_hub_name)
        state = read_state_dict(path_or_hub_name)
        whole = len(set(strip_prefixes(state, set(self.state_dict()))) & set(self.state_dict()))
        body = len(
            set(strip_prefixes(state, set(self.backbone.body.state_dict()))) & set(self.backbone.body.state_dict())
        )
        target = self if whole >= body and whole > 0 else self.backbone.body
        try:
            return load_state_dict_into(target, state, source=str(path_or_hub_name))
        except PretrainedWeightsError as exc:
            raise PretrainedWeightsError(f"model.pretrained: {exc}") from exc


def build_pose_net(
    model_cfg: ModelConfig,
    input_cfg: InputConfig,
    num_keypoints: int = COCO_PERSON.num_keypoints,
    *,
    mfl_strides: tuple[int, ...] | None = None,
) -> PoseNet:
    """The network of `model_cfg`, with MFL heads on `mfl_strides` (default `model_cfg.mfl_strides`; () for none)."""
    strides = tuple(model_cfg.mfl_strides) if mfl_strides is None else tuple(mfl_strides)
    fpn = model_cfg.head == "fpn"
    backbone = FeatureBackbone(model_cfg.backbone, input_cfg.heatmap_stride, strides, skip_reductions=fpn)
    net = PoseNet(
        backbone,
        num_keypoints=num_keypoints,
        heatmap_stride=input_cfg.heatmap_stride,
        deconv_layers=model_cfg.deconv_layers,
        deconv_channels=model_cfg.deconv_channels,
        mfl_strides=strides,
        mfl_channels=model_cfg.mfl_channels,
        head=model_cfg.head,
    )
    if model_cfg.pretrained:
        net.load_pretrained(model_cfg.pretrained)
    return net


def build_model(cfg: ExperimentConfig) -> PoseNet:
    """The student of an experiment: one heatmap a keypoint of its set, with the MFL heads its method
    supervises (rebuilds a checkpoint's too)."""
    num_keypoints = cfg.keypoints.keypoint_set().num_keypoints
    return build_pose_net(cfg.model, cfg.input, num_keypoints, mfl_strides=method_spec(cfg).mfl_strides)
