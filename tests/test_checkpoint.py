"""Checkpoint loading: the frozen official-parity fixture, legacy names, nesting, safety, errors.

tests/fixtures/official_*.pth were written by the official VMamba / Vim code (reduced configs, see
tests/fixtures/README.md); official_outputs.pt holds the official logits for a fixed input.
"""
import argparse
import os
import pickle

import pytest
import torch

from avssm.errors import CheckpointError
from avssm.models import create_model, load_checkpoint
from conftest import FIXTURES

OUTPUTS = torch.load(os.path.join(FIXTURES, "official_outputs.pt"), weights_only=True)
SMALL_VMAMBA = dict(depths=(1, 1, 1, 1), embed_dim=16)


@pytest.mark.parametrize("case", sorted(OUTPUTS))
def test_official_parity_fixture(case):
    c = OUTPUTS[case]
    model = create_model(c["model"], checkpoint=os.path.join(FIXTURES, f"official_{case}.pth"), **c["overrides"]).eval()
    with torch.no_grad():
        logits = model(c["input"])
    assert (logits - c["logits"]).abs().max().item() < 1e-4


def test_fixture_files_carry_pickled_config_objects():
    # The official files pickle a yacs CfgNode / argparse.Namespace; they load without running code.
    from avssm.models.checkpoint import PickledConfig, read_checkpoint_file

    v = read_checkpoint_file(os.path.join(FIXTURES, "official_vmamba_v2.pth"))
    assert isinstance(v["config"], PickledConfig) and v["config"]["MODEL"]["TYPE"] == "vssm"
    assert isinstance(read_checkpoint_file(os.path.join(FIXTURES, "official_vim.pth"))["args"], argparse.Namespace)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_arbitrary_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="refused to load.*posix.system"):
        load_checkpoint(create_model("vmamba_tiny", **SMALL_VMAMBA), path)


def test_4d_one_by_one_weights_and_ema_and_module_prefix():
    src = create_model("vmamba_tiny", **SMALL_VMAMBA)
    state = {k: (v[:, :, None, None] if k.endswith(("in_proj.weight", "out_proj.weight", "fc1.weight")) else v)
             for k, v in src.state_dict().items()}
    assert state["layers.0.blocks.0.op.in_proj.weight"].dim() == 4
    ema = {"module." + k: v + 1.0 for k, v in src.state_dict().items()}
    dst = create_model("vmamba_tiny", **SMALL_VMAMBA)
    load_checkpoint(dst, {"model": state, "model_ema": ema})
    assert torch.equal(dst.layers[0].blocks[0].op.in_proj.weight, src.layers[0].blocks[0].op.in_proj.weight)
    load_checkpoint(dst, {"model": state, "model_ema": ema}, ema=True)
    assert torch.equal(dst.classifier.head.bias, src.classifier.head.bias + 1.0)


def test_config_mismatch_names_key_and_both_shapes():
    tiny = create_model("vim_tiny", depth=1)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(create_model("vim_tiny_stride8", depth=1), {"model": tiny.state_dict()})
    assert "pos_embed" in str(e.value) and "(1, 197, 192)" in str(e.value) and "(1, 730, 192)" in str(e.value)


def test_missing_and_unexpected_keys_are_named():
    state = create_model("vmamba_tiny", **SMALL_VMAMBA).state_dict()
    state.pop("classifier.head.bias")
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(create_model("vmamba_tiny", **SMALL_VMAMBA), state)
    assert "missing 'classifier.head.bias'" in str(e.value) and "unexpected 'extra.weight'" in str(e.value)
    report = load_checkpoint(create_model("vmamba_tiny", **SMALL_VMAMBA), state, strict=False)
    assert report["missing"] == ["classifier.head.bias"] and report["unexpected"] == ["extra.weight"]


def test_not_a_checkpoint(tmp_path):
    bad = tmp_path / "notes.pth"
    bad.write_text("hello")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_checkpoint(create_model("vim_tiny", depth=1), bad)
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(create_model("vim_tiny", depth=1), tmp_path / "missing.pth")
    lst = tmp_path / "list.pth"
    torch.save([1, 2], lst)
    with pytest.raises(CheckpointError, match="not a state dict"):
        load_checkpoint(create_model("vim_tiny", depth=1), lst)


@pytest.mark.parametrize("case,det", [("vmamba_v0_legacy", None), ("vmamba_v2", "vmamba_tiny_det"), ("vim", "vim_tiny_det")])
def test_detector_backbone_loads_imagenet_checkpoint(case, det):
    c = OUTPUTS[case]
    path = os.path.join(FIXTURES, f"official_{case}.pth")
    if det is None:
        return  # the v0 family has no registered detector; covered by parity above
    over = {k: v for k, v in c["overrides"].items() if k != "num_classes"}
    model = create_model(det, backbone_overrides=over)
    head_before = model.head.cls_logits.weight.clone()
    load_checkpoint(model, path)
    ref = create_model(c["model"], checkpoint=path, **c["overrides"])
    own = model.backbone.state_dict()
    for k, v in ref.state_dict().items():
        if k in own:
            assert torch.equal(own[k], v), k
    assert torch.equal(model.head.cls_logits.weight, head_before)  # heads start fresh


def test_detector_checkpoint_roundtrip(tmp_path):
    a = create_model("vim_tiny_det", backbone_overrides=dict(embed_dim=32, depth=1)).eval()
    path = tmp_path / "det.pth"
    torch.save({"model": a.state_dict()}, path)
    b = create_model("vim_tiny_det", checkpoint=str(path), backbone_overrides=dict(embed_dim=32, depth=1)).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(a(x)[1], b(x)[1])


def test_pickle_module_is_untouched():
    assert pickle.Unpickler.__module__ in ("_pickle", "pickle")
