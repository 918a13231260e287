"""PoseNet: shapes, MFL heads, config errors, and pretrained loading from files and (mocked) hubs."""

from __future__ import annotations

import pytest
import timm
import torch

from components.config import InputConfig, ModelConfig, load_config
from components.models import PoseNet, PretrainedWeightsError, build_model, build_pose_net
from components.models import backbone as backbone_module
from components.models.heads import DeconvHead, FPNHead

TINY_INPUT = InputConfig(image_size=(64, 48))
TINY_MODEL = ModelConfig(deconv_channels=16, mfl_channels=8)


def tiny_net(**model_changes) -> PoseNet:
    torch.manual_seed(0)
    return build_pose_net(TINY_MODEL.model_copy(update=model_changes), TINY_INPUT)


def test_main_and_aux_heatmaps_have_heatmap_shape_and_aux_runs_only_in_training():
    net = tiny_net()
    x = torch.randn(2, 3, 64, 48)
    out = net(x)
    assert out.heatmaps.shape == (2, 17, 16, 12)
    assert [a.shape for a in out.aux] == [(2, 17, 16, 12)] * 3
    net.eval()
    assert net(x).aux == []
    assert len(net(x, with_aux=True).aux) == 3


def test_aux_heads_follow_the_configured_strides_in_order():
    net = tiny_net(mfl_strides=(16, 8))
    assert net.mfl_strides == (16, 8)
    assert [h.body[0].in_channels for h in net.aux_heads] == [net.backbone.channels[16], net.backbone.channels[8]]


def test_baselines_are_built_without_mfl_parameters():
    overrides = ["input.image_size=[64,48]", "model.deconv_channels=16"]
    trs = build_model(load_config(None, overrides + ["train.method=trs"]))
    for cfg in (
        load_config(None, overrides + ["train.method=supervised"]),
        load_config(None, overrides + ["train.method=trs", "train.mfl.enabled=false"]),
    ):
        plain = build_model(cfg)
        assert len(plain.aux_heads) == 0
        assert sum(p.numel() for p in plain.parameters()) < sum(p.numel() for p in trs.parameters())
    deep = build_model(load_config(None, overrides + ["train.method=supervised", "train.mfl.in_baselines=true"]))
    assert deep.mfl_strides == trs.mfl_strides and len(deep.aux_heads) == len(trs.aux_heads)


def test_wrong_deconv_count_and_unknown_mfl_stride_are_config_errors():
    with pytest.raises(ValueError, match="deconv_layers=2"):
        tiny_net(deconv_layers=2)
    with pytest.raises(ValueError, match="mfl_strides"):
        tiny_net(mfl_strides=(64,))
    with pytest.raises(ValueError, match="resnet_nope"):
        tiny_net(backbone="resnet_nope")


def test_same_seed_builds_the_same_weights():
    a, b = tiny_net(), tiny_net()
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_pretrained_file_with_wrapper_and_prefix_loads_the_whole_net(tmp_path):
    source = tiny_net()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p))
    path = tmp_path / "student.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    target = tiny_net()
    report = target.load_pretrained(str(path))
    assert report.missing == [] and report.unexpected == []
    assert all(torch.equal(x, y) for x, y in zip(source.state_dict().values(), target.state_dict().values()))


def test_classifier_weights_load_into_the_backbone_and_report_the_leftovers(tmp_path):
    classifier = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    torch.save(classifier.state_dict(), path)
    net = tiny_net()
    head_before = net.head.final.weight.clone()
    report = net.load_pretrained(str(path))
    assert "fc.weight" in report.unexpected
    assert torch.equal(net.backbone.body.conv1.weight, classifier.conv1.weight)
    assert torch.equal(net.head.final.weight, head_before)


def test_unrelated_or_missing_weights_file_is_a_clear_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"foo.weight": torch.zeros(3)}, path)
    with pytest.raises(PretrainedWeightsError, match="other.pth"):
        tiny_net().load_pretrained(str(path))
    with pytest.raises(PretrainedWeightsError, match="not found"):
        tiny_net().load_pretrained(str(tmp_path / "absent.pth"))


def test_hub_name_asks_timm_for_pretrained_weights_from_that_hub_id(monkeypatch):
    calls = []
    real_create = timm.create_model

    def fake_create(name, pretrained=False, **kwargs):
        calls.append((name, pretrained, kwargs.get("pretrained_cfg_overlay")))
        model = real_create(
            name, pretrained=False, **{k: v for k, v in kwargs.items() if k != "pretrained_cfg_overlay"}
        )
        if pretrained:
            with torch.no_grad():
                model.conv1.weight.fill_(0.25)
        return model

    monkeypatch.setattr(backbone_module.timm, "create_model", fake_create)
    net = tiny_net()
    report = net.load_pretrained("timm/resnet18.a1_in1k")
    assert calls[-1] == ("resnet18", True, {"hf_hub_id": "timm/resnet18.a1_in1k"})
    assert report.loaded > 0 and torch.all(net.backbone.body.conv1.weight == 0.25)


@pytest.mark.slow
def test_hrnet_uses_its_stride_4_branch_with_a_1x1_head():
    torch.manual_seed(0)
    net = build_pose_net(ModelConfig(backbone="hrnet_w18_small", mfl_channels=8), InputConfig(image_size=(64, 64)))
    assert net.backbone.main_reduction == 4 and len(net.head.upsample) == 0
    out = net(torch.randn(1, 3, 64, 64))  # HRNet's fuse layers need sides divisible by 32
    assert out.heatmaps.shape == (1, 17, 16, 16) and len(out.aux) == 3
    with pytest.raises(ValueError, match="divisible by 32"):
        net(torch.randn(1, 3, 64, 48))


def test_unreachable_hub_is_a_clear_error(monkeypatch):
    net = tiny_net()

    def offline(name, pretrained=False, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(backbone_module.timm, "create_model", offline)
    with pytest.raises(PretrainedWeightsError, match="local weights file"):
        net.load_pretrained("timm/resnet18.a1_in1k")


@pytest.mark.parametrize("size", [(64, 48), (128, 96)])
def test_fpn_head_gives_stride_4_heatmaps_from_resnet18(size):
    net = tiny_net(head="fpn")
    assert isinstance(net.head, FPNHead)
    assert sorted(net.head_strides) == [4, 8, 16, 32]
    out = net(torch.randn(2, 3, *size))
    expected = (2, 17, size[0] // 4, size[1] // 4)
    assert out.heatmaps.shape == expected
    assert [a.shape for a in out.aux] == [expected] * 3


def test_fpn_gradients_reach_every_backbone_stage_through_the_skips():
    net = tiny_net(head="fpn", mfl_strides=())
    net(torch.randn(2, 3, 64, 48)).heatmaps.square().sum().backward()
    first_conv = net.backbone.body.conv1.weight.grad
    assert first_conv is not None and first_conv.abs().sum() > 0
    for stride in (4, 8, 16, 32):
        assert net.head.lateral[str(stride)][0].weight.grad.abs().sum() > 0


def test_build_model_respects_the_head_switch():
    overrides = ["input.image_size=[64,48]", "model.deconv_channels=16", "train.method=supervised"]
    assert isinstance(build_model(load_config(None, overrides)).head, DeconvHead)
    assert isinstance(build_model(load_config(None, overrides + ["model.head=fpn"])).head, FPNHead)
    with pytest.raises(ValueError, match="head"):
        load_config(None, overrides + ["model.head=unet"])
