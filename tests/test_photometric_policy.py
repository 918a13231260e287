"""RandAugment / TrivialAugment photometric ops: each op matches PIL's, each image gets its own op, draws follow their law."""

from __future__ import annotations

import numpy as np
import PIL.Image
import PIL.ImageEnhance
import PIL.ImageOps
import pytest
import torch

from components.engine.photometric_policy import (
    MAGNITUDE_LEVELS,
    OPS,
    PolicyDraws,
    apply_op,
    apply_policy,
    randaugment_draws,
    trivialaugment_draws,
)

B, H, W = 4, 24, 20


def _images(seed: int = 0) -> tuple[torch.Tensor, list[np.ndarray]]:
    """8-bit RGB images (a gradient plus noise, so every op has something to change) as tensors in [0, 1] and arrays."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(20, 200, W)[None, :, None] + np.linspace(0, 40, H)[:, None, None]
    arrays = [np.clip(ramp * rng.uniform(0.6, 1.2, 3) + rng.normal(0, 12, (H, W, 3)), 0, 255).astype(np.uint8)]
    arrays += [np.clip(rng.normal(110 + 20 * i, 40, (H, W, 3)), 0, 255).astype(np.uint8) for i in range(B - 1)]
    tensor = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).double() / 255.0
    return tensor, arrays


def _pil(name: str, image: PIL.Image.Image, level: float, sign: float) -> PIL.Image.Image:
    """MultiAugs' lib/utils/rand_augment.py ops at a value `level` of their range, as PIL computes them."""
    factor = 1.0 + sign * 0.9 * level
    if name == "autocontrast":
        return PIL.ImageOps.autocontrast(image)
    if name == "equalize":
        return PIL.ImageOps.equalize(image)
    if name == "invert":
        return PIL.ImageOps.invert(image)
    if name == "posterize":
        return PIL.ImageOps.posterize(image, max(2, 6 - int(level * 4)))
    if name == "solarize":
        return PIL.ImageOps.solarize(image, 256 - level * 256)
    if name == "solarize_add":
        added = np.clip(np.asarray(image).astype(int) + level * 110, 0, 255).astype(np.uint8)
        return PIL.ImageOps.solarize(PIL.Image.fromarray(added), 128)
    enhancer = {
        "color": PIL.ImageEnhance.Color,
        "contrast": PIL.ImageEnhance.Contrast,
        "brightness": PIL.ImageEnhance.Brightness,
        "sharpness": PIL.ImageEnhance.Sharpness,
    }[name]
    return enhancer(image).enhance(factor)


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize(("level", "sign"), [(20 / 30, 1.0), (20 / 30, -1.0), (0.4, 1.0)])
def test_each_op_matches_pil_on_8_bit_images(name: str, level: float, sign: float) -> None:
    images, arrays = _images()
    levels = torch.full((B,), level, dtype=torch.float64)
    signs = torch.full((B,), sign, dtype=torch.float64)
    ours = (apply_op(images, name, levels, signs) * 255.0).round().clamp(0, 255)
    for i, array in enumerate(arrays):
        expected = torch.from_numpy(np.array(_pil(name, PIL.Image.fromarray(array), level, sign))).permute(2, 0, 1)
        gap = (ours[i] - expected.double()).abs()
        assert gap.max() <= 1, (name, i, float(gap.max()))  # PIL rounds to 8 bits between steps; we stay in floats
    if name in ("invert", "equalize", "autocontrast", "posterize", "solarize") or level > 0:
        assert not torch.allclose(ours / 255.0, images), f"{name} changed nothing"


def test_each_image_gets_its_own_op_in_each_round() -> None:
    images, _ = _images(seed=1)
    op = torch.tensor([[0, 3], [2, 2], [9, 5], [6, 1]])
    level = torch.tensor([[0.5, 0.2], [1.0, 0.3], [0.7, 0.9], [0.1, 0.6]], dtype=torch.float64)
    sign = torch.tensor([[1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    out = apply_policy(images, PolicyDraws(op, level, sign))
    for i in range(B):
        one = images[i : i + 1]
        for r in range(2):
            one = apply_op(one, OPS[int(op[i, r])], level[i, r : r + 1], sign[i, r : r + 1])
        torch.testing.assert_close(out[i : i + 1], one, rtol=0, atol=1e-12)
    assert torch.allclose(out[1], images[1]), "invert twice is the image again"


def test_randaugment_draws_n_uniform_ops_at_one_magnitude_with_fair_signs() -> None:
    draws = randaugment_draws(20_000, 2, 20, torch.Generator().manual_seed(0))
    assert draws.op.shape == (20_000, 2) and torch.all(draws.level == 20 / 30)
    counts = torch.bincount(draws.op.flatten(), minlength=len(OPS)).double()
    expected = draws.op.numel() / len(OPS)
    assert torch.all((counts - expected).abs() < 5 * expected**0.5), counts  # 5 sigma
    assert abs(float(draws.sign.mean())) < 5 / draws.sign.numel() ** 0.5
    assert set(draws.sign.unique().tolist()) == {-1.0, 1.0}


def test_trivialaugment_draws_one_op_at_a_uniform_magnitude() -> None:
    draws = trivialaugment_draws(31_000, torch.Generator().manual_seed(1))
    assert draws.op.shape == (31_000, 1)
    levels = torch.round(draws.level.flatten() * MAGNITUDE_LEVELS).long()
    counts = torch.bincount(levels, minlength=MAGNITUDE_LEVELS + 1).double()
    assert counts.numel() == MAGNITUDE_LEVELS + 1 and torch.all((counts - 1000).abs() < 5 * 1000**0.5), counts
    op_counts = torch.bincount(draws.op.flatten(), minlength=len(OPS)).double()
    assert torch.all((op_counts - 3100).abs() < 5 * 3100**0.5)


def test_a_seeded_generator_repeats_the_policy() -> None:
    images, _ = _images(seed=2)
    runs = [apply_policy(images, randaugment_draws(B, 2, 20, torch.Generator().manual_seed(s))) for s in (3, 3, 4)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    assert torch.all((runs[0] >= 0) & (runs[0] <= 1))
