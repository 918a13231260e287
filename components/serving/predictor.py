"""The whole top-down predictor as one torch module: image and person boxes in, keypoints out.

`TopDownPredictor` runs what `components.evaluation.inference.predict_boxes` runs, on tensors and
without leaving the graph, so that the same module serves eager PyTorch, the MLflow model and the
ONNX export: box expansion (`geometry.boxes_to_centers_scales`), the crop (`grid_sample` through
`geometry.crop_to_image`, rounded to whole intensities like the `cv2.warpAffine` crop of the
datasets), ImageNet normalisation, the network (with flip test if asked), argmax decoding with the
quarter-pixel nudge (`heatmap_codec.decode_heatmaps`) and back-projection (`crop_to_image` again).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from components.config import ExperimentConfig
from components.data.geometry import boxes_to_centers_scales, crop_to_image
from components.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from components.evaluation.inference import model_heatmaps
from components.heatmap_codec import decode_heatmaps, heatmap_to_input_tensor


class TopDownPredictor(nn.Module):
    """`forward(image uint8 [H, W, 3] RGB, boxes float32 [N, 4] x, y, w, h)` -> keypoints `[N, K, 3]`
    (x, y in image pixels, peak heatmap value). N, H and W are free; boxes are not checked here
    (the callers validate, see `components.serving.inputs`)."""

    mean: torch.Tensor
    std: torch.Tensor
    crop_pixels: torch.Tensor
    flip_index: torch.Tensor

    def __init__(self, network: nn.Module, cfg: ExperimentConfig, flip_test: bool = False) -> None:
        super().__init__()
        self.network = network.eval()
        self.input_size: tuple[int, int] = (int(cfg.input.image_size[0]), int(cfg.input.image_size[1]))
        self.heatmap_stride = cfg.input.heatmap_stride
        self.aspect_ratio = cfg.input.aspect_ratio
        self.box_padding = cfg.input.box_padding
        self.flip_test = flip_test
        self.register_buffer(
            "flip_index", torch.as_tensor(cfg.keypoints.keypoint_set().flip_index, dtype=torch.int64), persistent=False
        )
        self.register_buffer("mean", torch.from_numpy(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.from_numpy(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        rows, cols = torch.meshgrid(
            torch.arange(self.input_size[0], dtype=torch.float32),
            torch.arange(self.input_size[1], dtype=torch.float32),
            indexing="ij",
        )
        # the crop's pixel centres (x, y), row-major: [h * w, 2]
        self.register_buffer("crop_pixels", torch.stack([cols, rows], -1).reshape(-1, 2), persistent=False)

    def forward(self, image: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        centers, scales = boxes_to_centers_scales(boxes.float(), self.aspect_ratio, self.box_padding)
        crops = self.crop(image, centers, scales)
        inputs = (crops / 255.0 - self.mean) / self.std
        heatmaps = model_heatmaps(self.network, inputs, self.flip_index if self.flip_test else None)
        coords, maxvals = decode_heatmaps(heatmaps, "argmax")
        points = crop_to_image(heatmap_to_input_tensor(coords, self.heatmap_stride), centers, scales, self.input_size)
        return torch.cat([points, maxvals.unsqueeze(-1)], dim=-1)

    def crop(self, image: torch.Tensor, centers: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """Bilinear crops `[N, 3, h, w]` (0-255, zeros outside the image) of one `[H, W, 3]` image.

        The N sampling grids are stacked along the grid's height against the one image, so the image
        is never copied N times.
        """
        height, width = self.input_size
        pixels = image.permute(2, 0, 1).unsqueeze(0).float()
        size = torch.tensor(image.shape[:2], dtype=pixels.dtype).flip(0)
        points = crop_to_image(self.crop_pixels, centers, scales, self.input_size)  # [N, h*w, 2]
        grid = points * (2.0 / (size - 1.0)) - 1.0  # align_corners=True: -1 and 1 are the corner pixel centres
        sampled = F.grid_sample(
            pixels, grid.reshape(1, -1, width, 2), mode="bilinear", padding_mode="zeros", align_corners=True
        )
        return sampled.reshape(3, -1, height, width).transpose(0, 1).round()
