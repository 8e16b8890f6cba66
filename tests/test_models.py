"""Model construction, shapes at several input sizes, Vim position-embedding resizing, detectors."""
import pytest
import torch

from avssm.errors import UnknownModelError
from avssm.models import create_model, describe_models, list_models
from avssm.models.vim import resize_pos_embed
from avssm.models.vmamba import cross_merge, cross_scan

SMALL_VMAMBA = dict(depths=(1, 1, 1, 1), embed_dim=16)
SMALL_VIM = dict(embed_dim=32, depth=2)

# Published parameter counts (with the 1000-class head) of the official models.
PUBLISHED_PARAMS_M = {
    "vmamba_tiny": 30.25, "vmamba_small": 50.15, "vmamba_base": 88.56,
    "vmamba_v0_tiny": 22.89, "vmamba_v0_small": 44.42, "vmamba_v0_base": 76.25,
    "vim_tiny": 7.15, "vim_small": 25.80, "vim_base": 97.60, "vim_tiny_stride8": 7.25, "vim_small_stride8": 26.00,
}


def test_registry_lists_every_model():
    names = list_models()
    for n in list(PUBLISHED_PARAMS_M) + ["vmamba_tiny_det", "vim_tiny_det", "vmamba_small_det", "vim_base_det"]:
        assert n in names


def test_parameter_counts_match_the_papers():
    counts = {r["name"]: r["params"] / 1e6 for r in describe_models()}
    for name, published in PUBLISHED_PARAMS_M.items():
        assert abs(counts[name] - published) < 0.01, name


def test_unknown_model_lists_valid_names():
    with pytest.raises(UnknownModelError) as e:
        create_model("vmamba_tinyy")
    assert "vmamba_tiny" in str(e.value) and "vim_tiny" in str(e.value)


def test_cross_scan_merge_is_a_sum_of_four_directions():
    x = torch.randn(2, 3, 5, 7)
    xs = cross_scan(x)
    assert xs.shape == (2, 4, 3, 35)
    assert torch.equal(xs[:, 1, :, 7], x[:, :, 2, 1])  # column-major: l = w*H + h -> (h=2, w=1)
    assert torch.allclose(cross_merge(xs, 5, 7), 4 * x)


@pytest.mark.parametrize("name", ["vmamba_tiny", "vmamba_v0_tiny"])
@pytest.mark.parametrize("hw", [(64, 64), (96, 160), (100, 76)])
def test_vmamba_any_size(name, hw):
    model = create_model(name, num_classes=7, **SMALL_VMAMBA).eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, *hw))
    assert y.shape == (2, 7) and torch.isfinite(y).all()


@pytest.mark.parametrize("name,hw", [("vim_tiny", (224, 224)), ("vim_tiny", (160, 320)), ("vim_tiny_stride8", (96, 128))])
def test_vim_any_size(name, hw):
    model = create_model(name, num_classes=5, **SMALL_VIM).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, *hw))
    assert y.shape == (1, 5) and torch.isfinite(y).all()


def test_vim_pos_embed_resize_keeps_class_slot():
    m, d = 14 * 14, 8
    pos = torch.randn(1, m + 1, d)
    assert resize_pos_embed(pos, (14, 14)) is pos
    out = resize_pos_embed(pos, (10, 20))
    assert out.shape == (1, 201, d)
    assert torch.equal(out[:, 100], pos[:, m // 2])  # class slot re-inserted at M'//2
    # a constant grid stays constant: the class slot was not mixed into the grid
    const = torch.ones(1, m + 1, d)
    const[:, m // 2] = 5.0
    out = resize_pos_embed(const, (9, 9))
    assert torch.allclose(out[:, :40], torch.ones(1, 40, d)) and torch.allclose(out[:, 41:], torch.ones(1, 41, d)) and out[0, 40, 0] == 5.0


def test_vim_classifies_from_the_middle_token():
    model = create_model("vim_tiny", num_classes=3, **SMALL_VIM).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        tokens, grid = model.forward_tokens(x)
        assert torch.allclose(model(x), model.head(tokens[:, 8]))  # 4x4 grid -> class token at 16 // 2


@pytest.mark.parametrize("name,over", [("vmamba_tiny_det", SMALL_VMAMBA), ("vim_tiny_det", SMALL_VIM)])
@pytest.mark.parametrize("hw", [(96, 160), (100, 150)])
def test_detector_outputs_in_caller_frame(name, over, hw):
    model = create_model(name, backbone_overrides=over).eval()
    with torch.no_grad():
        boxes, scores = model(torch.randn(2, 3, *hw))
    h, w = hw
    padded = [(-(-h // 32) * 32) // s * (-(-w // 32) * 32) // s for s in (8, 16, 32)]
    assert boxes.shape == (2, sum(padded), 4)
    assert scores.shape == (2, sum(padded), len(model.class_names))
    assert (boxes[..., 0] >= 0).all() and (boxes[..., 2] <= w).all() and (boxes[..., 3] <= h).all()
    assert (boxes[..., 2] >= boxes[..., 0]).all() and (boxes[..., 3] >= boxes[..., 1]).all()
    assert ((scores >= 0) & (scores <= 1)).all()


def test_detector_custom_classes():
    model = create_model("vim_tiny_det", backbone_overrides=SMALL_VIM, class_names=("a", "b"))
    assert model.class_names == ["a", "b"]
    model = create_model("vim_tiny_det", num_classes=3, backbone_overrides=SMALL_VIM)
    assert len(model.class_names) == 3


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vmamba_tiny_det", "vim_tiny_det"])
def test_real_tiny_detector_at_1080p(name):
    model = create_model(name).eval()
    with torch.inference_mode():
        boxes, scores = model(torch.randn(1, 3, 1080, 1920))  # padded to 1088 rows
    assert boxes.shape == (1, 136 * 240 + 68 * 120 + 34 * 60, 4)
    assert torch.isfinite(boxes).all() and torch.isfinite(scores).all()
    assert boxes[..., 2].max() <= 1920 and boxes[..., 3].max() <= 1080


@pytest.mark.parametrize("name,overrides", [("vmamba_tiny", dict(depths=(1, 1, 1, 1), embed_dim=16)),
                                            ("vmamba_v0_tiny", dict(depths=(1, 1, 1, 1), embed_dim=16)),
                                            ("vim_tiny", dict(depth=1, embed_dim=32)),
                                            ("vim_tiny_stride8", dict(depth=1, embed_dim=32)),
                                            ("deit_tiny", dict(depth=1))])
def test_every_backbone_speaks_the_feature_protocol(name, overrides):
    # One API for detectors and users (timm's): feature_info says what forward_intermediates returns.
    model = create_model(name, num_classes=0, **overrides).eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        maps = model.forward_intermediates(x)
    assert len(maps) == len(model.feature_info) >= 1
    for info, m in zip(model.feature_info, maps):
        r = info["reduction"]
        assert m.shape[:2] == (1, info["num_chs"]), (info, m.shape)
        # stride r: H/r cells (H/r - 1 where patches overlap, as in the stride-8 Vim models)
        assert m.shape[2] in (96 // r, 96 // r - 1) and m.shape[3] in (128 // r, 128 // r - 1), (info, m.shape)
        assert info["module"] in dict(model.named_modules())
    last = len(maps) - 1
    with torch.no_grad():
        assert torch.equal(model.forward_intermediates(x, [last])[0], maps[last])
    assert model.default_cfg["input"]["mean"] == [0.485, 0.456, 0.406]


def test_detector_metadata_comes_from_its_default_config():
    det = create_model("vim_tiny_det", backbone_overrides=dict(embed_dim=32, depth=1), class_names=("a", "b"))
    assert det.default_cfg["class_names"] == ["a", "b"] and det.default_cfg["pad_to"] == 32
    from avssm.export.onnx_export import build_metadata

    meta = build_metadata(det, "vim_tiny_det", (64, 64), "plugin", "fp32", 17, False)
    assert meta["class_names"] == ["a", "b"] and meta["padding"]["multiple"] == 32
