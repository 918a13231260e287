"""Heatmap losses: the SimpleBaseline scale, masks that really stop gradients, and the ramp-up."""

from __future__ import annotations

import pytest
import torch

from components.engine.losses import consistency_loss, heatmap_mse, rampup


def test_unit_weights_give_half_the_mean_squared_error():
    generator = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 17, 8, 6, generator=generator), torch.rand(2, 17, 8, 6, generator=generator)
    torch.testing.assert_close(heatmap_mse(pred, target, torch.ones(2, 17)), 0.5 * torch.mean((pred - target) ** 2))


@pytest.mark.parametrize("loss", [heatmap_mse, consistency_loss])
def test_zero_weight_means_zero_gradient_on_that_channel_only(loss):
    generator = torch.Generator().manual_seed(1)
    pred = torch.rand(2, 17, 8, 6, generator=generator, requires_grad=True)
    target = torch.rand(2, 17, 8, 6, generator=generator)
    weight = torch.ones(2, 17)
    weight[0, 3] = 0
    weight[1, 10] = 0
    loss(pred, target, weight if loss is heatmap_mse else weight.bool()).backward()
    assert torch.all(pred.grad[0, 3] == 0) and torch.all(pred.grad[1, 10] == 0)
    assert torch.all(pred.grad[0, 4].abs() > 0) and torch.all(pred.grad[1, 3].abs() > 0)


def test_consistency_takes_no_gradient_through_the_pseudo_labels_and_bool_equals_float_mask():
    pred = torch.rand(1, 17, 4, 4)
    pseudo = torch.rand(1, 17, 4, 4, requires_grad=True)
    mask = torch.rand(1, 17) > 0.5
    value = consistency_loss(pred, pseudo, mask)
    assert not value.requires_grad
    torch.testing.assert_close(value, consistency_loss(pred, pseudo, mask.float()))


def test_shape_mistakes_are_reported():
    with pytest.raises(ValueError, match="weight"):
        heatmap_mse(torch.zeros(2, 17, 4, 4), torch.zeros(2, 17, 4, 4), torch.ones(2))
    with pytest.raises(ValueError, match="target"):
        heatmap_mse(torch.zeros(2, 17, 4, 4), torch.zeros(2, 17, 4, 3), torch.ones(2, 17))


def test_rampup_is_a_monotone_sigmoid_from_exp_minus_5_to_one():
    values = [rampup(step, 100) for step in range(0, 151, 10)]
    assert values[0] == pytest.approx(torch.exp(torch.tensor(-5.0)).item())
    assert all(a < b for a, b in zip(values[:10], values[1:11]))
    assert values[10:] == [1.0] * 6
    assert rampup(0, 0) == 1.0
