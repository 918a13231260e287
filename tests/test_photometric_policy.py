"""RandAugment / TrivialAugment photometric ops: each matches PIL's, each image gets its own, draws follow their law."""

from __future__ import annotations

import numpy as np
import PIL.Image
import PIL.ImageEnhance
import PIL.ImageOps
import pytest
import torch

from components.engine.photometric_policy import (
    ENHANCERS,
    MAGNITUDE_LEVELS,
    OPS,
    RANDAUGMENT_OPS,
    TRIVIALAUGMENT_OPS,
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


def _pil(name: str, image: PIL.Image.Image, value: float) -> PIL.Image.Image:
    """The PIL op MultiAugs applies, with its parameter `value`."""
    if name == "identity":
        return image
    if name == "autocontrast":
        return PIL.ImageOps.autocontrast(image)
    if name == "equalize":
        return PIL.ImageOps.equalize(image)
    if name == "invert":
        return PIL.ImageOps.invert(image)
    if name == "posterize":
        return PIL.ImageOps.posterize(image, int(value))
    if name == "solarize":
        return PIL.ImageOps.solarize(image, value)
    if name == "solarize_add":
        added = np.clip(np.asarray(image).astype(int) + value, 0, 255).astype(np.uint8)
        return PIL.ImageOps.solarize(PIL.Image.fromarray(added), 128)
    enhancer = {
        "color": PIL.ImageEnhance.Color,
        "contrast": PIL.ImageEnhance.Contrast,
        "brightness": PIL.ImageEnhance.Brightness,
        "sharpness": PIL.ImageEnhance.Sharpness,
    }[name]
    return enhancer(image).enhance(value)


VALUES = {"posterize": (4.0, 2.0, 7.0), "solarize": (85.0 + 1 / 3, 128.0, 256.0), "solarize_add": (73.0 + 1 / 3, 20.0)}


@pytest.mark.parametrize(
    ("name", "value"), [(n, v) for n in OPS for v in VALUES.get(n, (1.6, 0.4, 0.1, 1.9) if n in ENHANCERS else (0.0,))]
)
def test_each_op_matches_pil_on_8_bit_images(name: str, value: float) -> None:
    images, arrays = _images()
    ours = (apply_op(images, name, torch.full((B,), value, dtype=torch.float64)) * 255.0).round().clamp(0, 255)
    for i, array in enumerate(arrays):
        expected = torch.from_numpy(np.array(_pil(name, PIL.Image.fromarray(array), value))).permute(2, 0, 1)
        gap = (ours[i] - expected.double()).abs()
        assert gap.max() <= 1, (name, i, float(gap.max()))  # PIL rounds to 8 bits between steps; we stay in floats
    unchanged = torch.allclose(ours / 255.0, images, atol=0.6 / 255)
    assert unchanged == (name == "identity" or (name == "solarize" and value == 256.0)), f"{name} {value}"


def test_each_image_gets_its_own_op_in_each_round() -> None:
    images, _ = _images(seed=1)
    op = torch.tensor([[1, 4], [3, 3], [10, 6], [7, 0]])
    value = torch.tensor([[0.0, 4.0], [0.0, 0.0], [1.7, 90.0], [0.3, 0.0]], dtype=torch.float64)
    out = apply_policy(images, PolicyDraws(op, value))
    for i in range(B):
        one = images[i : i + 1]
        for r in range(2):
            one = apply_op(one, OPS[int(op[i, r])], value[i, r : r + 1])
        torch.testing.assert_close(out[i : i + 1], one, rtol=0, atol=1e-12)
    assert torch.allclose(out[1], images[1]), "invert twice is the image again"


def _counts(op: torch.Tensor, names: tuple[str, ...]) -> torch.Tensor:
    counts = torch.bincount(op.flatten(), minlength=len(OPS)).double()
    assert set(torch.nonzero(counts).flatten().tolist()) == {OPS.index(n) for n in names}
    return counts[[OPS.index(n) for n in names]]


def test_randaugment_draws_n_uniform_ops_at_multiaugs_magnitude() -> None:
    draws = randaugment_draws(20_000, 2, 20, torch.Generator().manual_seed(0))
    assert draws.op.shape == (20_000, 2)
    counts = _counts(draws.op, RANDAUGMENT_OPS)
    expected = draws.op.numel() / len(RANDAUGMENT_OPS)
    assert torch.all((counts - expected).abs() < 5 * expected**0.5), counts  # 5 sigma
    # m = 20 of 30: enhancers 1 -/+ 0.6, Posterize keeps max(2, 6 - int(2.67)) = 4 bits, Solarize at 256 - 170.7
    for name, values in {
        "color": {0.4, 1.6},
        "posterize": {4.0},
        "solarize": {256 - 256 * 2 / 3},
        "solarize_add": {110 * 2 / 3},
        "equalize": {0.0},
    }.items():
        got = draws.value[draws.op == OPS.index(name)]
        assert set(torch.round(got, decimals=9).tolist()) == {round(v, 9) for v in values}, name
    lower = (draws.value[_is_enhancer(draws.op)] < 1).double().mean()
    assert abs(float(lower) - 0.5) < 0.02, "either way of 1, with a fair coin"


def _is_enhancer(op: torch.Tensor) -> torch.Tensor:
    return torch.isin(op, torch.tensor([OPS.index(n) for n in ENHANCERS]))


def test_trivialaugment_draws_one_op_at_a_uniform_level() -> None:
    draws = trivialaugment_draws(36_000, torch.Generator().manual_seed(1))
    assert draws.op.shape == (36_000, 1)
    counts = _counts(draws.op, TRIVIALAUGMENT_OPS)
    assert torch.all((counts - 4000).abs() < 5 * 4000**0.5), counts
    factors = draws.value[_is_enhancer(draws.op)]
    levels = torch.round((factors - 0.1) / 1.8 * MAGNITUDE_LEVELS).long()
    per_level = torch.bincount(levels, minlength=MAGNITUDE_LEVELS + 1).double()
    expected = factors.numel() / (MAGNITUDE_LEVELS + 1)
    assert per_level.numel() == MAGNITUDE_LEVELS + 1 and torch.all((per_level - expected).abs() < 5 * expected**0.5)
    bits = draws.value[draws.op == OPS.index("posterize")]
    assert set(bits.tolist()) == {4.0, 5.0, 6.0, 7.0, 8.0} and bits.min() >= 4
    thresholds = draws.value[draws.op == OPS.index("solarize")]
    assert thresholds.max() == 256 and thresholds.min() == 0


def test_a_seeded_generator_repeats_the_policy() -> None:
    images, _ = _images(seed=2)
    runs = [apply_policy(images, randaugment_draws(B, 2, 20, torch.Generator().manual_seed(s))) for s in (3, 3, 4)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    assert torch.all((runs[0] >= 0) & (runs[0] <= 1))
