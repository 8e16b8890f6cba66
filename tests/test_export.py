"""ONNX export: both forms, both families, dynamic shapes, fp16, metadata, the node contract, errors."""
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from avssm.errors import AvssmError, CheckpointError
from avssm.export import export_onnx, lower_selective_scan, read_metadata
from avssm.models import create_model
from avssm.ops import selective_scan, selective_scan_ref
from conftest import tensorrt_parser_problems

SMALL = {
    "vmamba_tiny_det": dict(backbone_overrides=dict(depths=(1, 1, 2, 1), embed_dim=16)),
    "vim_tiny_det": dict(backbone_overrides=dict(embed_dim=32, depth=2)),
}


def small_model(name):
    model = create_model(name, **SMALL[name])
    model.model_name = name
    return model


def assert_verified(result, tol):
    assert result.verification, "no verification ran"
    for v in result.verification:
        assert v["finite"], v
        assert v["max_rel"] < tol, v


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("scan_op", ["plugin", "portable"])
@pytest.mark.parametrize("size", [(96, 160), (100, 132)])
def test_both_forms_match_pytorch(tmp_path, name, scan_op, size):
    result = export_onnx(small_model(name), tmp_path / "m.onnx", input_size=size, scan_op=scan_op, verify=True)
    assert_verified(result, 1e-4)
    n_scans = sum(n.op_type == "SelectiveScan" for n in onnx.load(result.path).graph.node)
    blocks = 5 if name.startswith("vmamba") else 2  # one node per block
    assert n_scans == (blocks if scan_op == "plugin" else 0)
    assert result.outputs[0].shape[0] == 1 and result.outputs[0].shape[2] == 4


@pytest.mark.parametrize("cpu_kernel", ["1", "0"])
def test_plugin_form_verification_runtime(tmp_path, monkeypatch, cpu_kernel):
    """Plugin files verify on ONNX Runtime with avssm's op, or on onnx.reference where the op is off."""
    monkeypatch.setenv("AVSSM_CPU_KERNEL", cpu_kernel)
    result = export_onnx(small_model("vim_tiny_det"), tmp_path / "p.onnx", input_size=(96, 160), verify=True)
    assert_verified(result, 1e-4)
    expected = ("onnxruntime CPU + avssm SelectiveScan op" if cpu_kernel == "1"
                else "onnx.reference + Python SelectiveScan")
    assert {v["runtime"] for v in result.verification} == {expected}


@pytest.mark.parametrize("scan_op", ["plugin", "portable"])
def test_dynamic_file_runs_at_two_sizes(tmp_path, scan_op):
    result = export_onnx(small_model("vmamba_tiny_det"), tmp_path / "d.onnx", input_size=(128, 192), dynamic=True,
                         scan_op=scan_op, verify=True)
    assert {tuple(v["size"]) for v in result.verification} == {(128, 192), (104, 136)}
    assert_verified(result, 1e-4)
    assert result.inputs[0].shape == ["batch", 3, "height", "width"]
    if scan_op == "portable":  # batch 2 through the dynamic file as well
        sess = ort.InferenceSession(result.path, providers=["CPUExecutionProvider"])
        boxes, scores = sess.run(None, {"images": np.zeros((2, 3, 64, 96), np.float32)})
        assert boxes.shape[0] == 2 and scores.shape == (2, boxes.shape[1], 6)


def test_fp16_portable_within_1e2_and_scan_params_stay_fp32(tmp_path):
    result = export_onnx(small_model("vim_tiny_det"), tmp_path / "h.onnx", input_size=(96, 160), scan_op="portable",
                         precision="fp16", verify=True)
    assert_verified(result, 1e-2)
    assert result.inputs[0].dtype == "float16" and result.outputs[0].dtype == "float32"
    plugin = export_onnx(small_model("vim_tiny_det"), tmp_path / "hp.onnx", input_size=(96, 160), precision="fp16")
    model = onnx.shape_inference.infer_shapes(onnx.load(plugin.path))
    types = {v.name: v.type.tensor_type.elem_type for v in list(model.graph.value_info) + list(model.graph.input)}
    types.update({i.name: i.data_type for i in model.graph.initializer})
    for node in model.graph.node:
        if node.op_type == "SelectiveScan":
            assert types[node.input[0]] == onnx.TensorProto.FLOAT16  # u
            for i in (2, 5, 7):  # A, D, delta_bias (Vim passes D, z, delta_bias)
                assert types[node.input[i]] == onnx.TensorProto.FLOAT, node.input[i]


@pytest.mark.parametrize("fused", [True, False])
def test_node_contract_vmamba_groups_and_attributes(tmp_path, fused):
    result = export_onnx(small_model("vmamba_tiny_det"), tmp_path / "c.onnx", input_size=(64, 96), fused=fused)
    model = onnx.shape_inference.infer_shapes(onnx.load(result.path))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.value_info}
    shapes.update({i.name: list(i.dims) for i in model.graph.initializer})
    nodes = [n for n in model.graph.node if n.op_type == "SelectiveScan"]
    assert nodes and all(n.domain == "trt.plugins" for n in nodes)
    assert any(op.domain == "trt.plugins" for op in model.opset_import)
    for n in nodes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        assert attrs["has_D"] == 1 and attrs["has_z"] == 0 and attrs["has_delta_bias"] == 1
        assert attrs["delta_softplus"] == 1
        assert attrs["plugin_version"] == (b"2" if fused else b"1") and attrs["plugin_namespace"] == b"avssm"
        assert attrs.get("layout") == (1 if fused else None)  # cross-2d; version 1 nodes have no layout
        assert len(n.input) == 7 and all(n.input)  # u, delta, A, B, C, D, delta_bias; no empty names
        assert shapes[n.input[2]][1] == 1  # A (4*Di, N=1)
        if not fused:
            assert shapes[n.input[3]][1] == 4  # B grouped by the 4 directions


def test_metadata_is_enough_for_a_runtime(tmp_path):
    result = export_onnx(small_model("vim_tiny_det"), tmp_path / "m.onnx", input_size=(64, 96), scan_op="portable")
    meta = read_metadata(result.path)
    assert meta["model"] == "vim_tiny_det" and meta["task"] == "detection"
    assert meta["class_names"] == ["car", "truck", "pedestrian", "cyclist", "traffic_sign", "traffic_light"]
    assert meta["input"]["color"] == "RGB" and meta["input"]["mean"] == [0.485, 0.456, 0.406]
    assert meta["padding"] == {"multiple": 32, "where": "bottom_right", "inside_model": True}
    assert meta["scan_op"] == "portable" and meta["precision"] == "fp32" and meta["avssm_version"]


def test_portable_scan_is_safe_on_long_sequences(tmp_path):
    class Scan(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.A = torch.nn.Parameter(-torch.exp(torch.randn(4, 16)) * 10)
            self.bias = torch.nn.Parameter(torch.randn(4))

        def forward(self, u, delta, B, C):
            return selective_scan(u, delta, self.A, B, C, delta_bias=self.bias, delta_softplus=True)

    m = Scan()
    L = 100_003
    args = (torch.randn(1, 4, L), torch.randn(1, 4, L) * 30, torch.randn(1, 1, 16, L), torch.randn(1, 1, 16, L))
    path = str(tmp_path / "s.onnx")
    torch.onnx.export(m, args, path, dynamo=False, opset_version=17, input_names=["u", "delta", "B", "C"])
    sess = ort.InferenceSession(lower_selective_scan(onnx.load(path)).SerializeToString(), providers=["CPUExecutionProvider"])
    out = sess.run(None, {k: v.numpy() for k, v in zip(["u", "delta", "B", "C"], args)})[0]
    ref = selective_scan_ref(*args[:2], m.A.detach(), *args[2:], delta_bias=m.bias.detach(), delta_softplus=True).numpy()
    assert np.isfinite(out).all()
    assert np.abs(out - ref).max() / np.abs(ref).max() < 1e-4


@pytest.mark.parametrize("nstate,groups,gated,chunk", [(1, 4, False, 16), (1, 1, True, 8), (16, 2, True, 16),
                                                        (16, 1, False, 256)])
def test_portable_lowering_matches_the_reference(tmp_path, nstate, groups, gated, chunk):
    """Each form of the lowering (N = 1 with precomputed decays, N > 1 computing them per step), with L
    not a multiple of the chunk (padding), several chunks (the carry), one chunk, grouped B/C and the gate."""
    class Scan(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.A = torch.nn.Parameter(-torch.exp(torch.randn(8, nstate)))
            self.D = torch.nn.Parameter(torch.randn(8))
            self.bias = torch.nn.Parameter(torch.randn(8))

        def forward(self, u, delta, B, C, z):
            return selective_scan(u, delta, self.A, B, C, D=self.D, z=z if gated else None, delta_bias=self.bias,
                                  delta_softplus=True)

    m = Scan()
    L = 203
    args = (torch.randn(2, 8, L), torch.randn(2, 8, L), torch.randn(2, groups, nstate, L),
            torch.randn(2, groups, nstate, L), torch.randn(2, 8, L))
    names = ["u", "delta", "B", "C", "z"]
    path = str(tmp_path / "s.onnx")
    torch.onnx.export(m, args, path, dynamo=False, opset_version=17, input_names=names)
    lowered = lower_selective_scan(onnx.load(path), chunk=chunk)
    assert not [n for n in lowered.graph.node if n.op_type == "SelectiveScan"]
    sess = ort.InferenceSession(lowered.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {k: v.numpy() for k, v in zip(names, args) if k in {i.name for i in sess.get_inputs()}}
    out = sess.run(None, feeds)[0]
    ref = selective_scan_ref(*args[:2], m.A.detach(), *args[2:4], D=m.D.detach(), z=args[4] if gated else None,
                             delta_bias=m.bias.detach(), delta_softplus=True).numpy()
    assert np.abs(out - ref).max() / np.abs(ref).max() < 1e-5


def test_real_tiny_detector_portable(tmp_path):
    result = export_onnx("vmamba_tiny_det", tmp_path / "t.onnx", input_size=(128, 192), scan_op="portable", verify=True)
    assert_verified(result, 1e-4)


@pytest.mark.parametrize("kwargs,message", [
    (dict(model="nope"), "unknown model"),
    (dict(input_size=(16, 64)), "between 32 and 16384"),
    (dict(scan_op="cuda"), "scan op 'cuda'"),
    (dict(precision="int8"), "precision 'int8'"),
    (dict(opset=13), "opset 13"),
])
def test_argument_errors(tmp_path, kwargs, message):
    kwargs = {"model": "vim_tiny_det", **kwargs}
    with pytest.raises(AvssmError, match=message):
        export_onnx(kwargs.pop("model"), tmp_path / "x.onnx", **kwargs)
    assert os.listdir(tmp_path) == []


def test_checkpoint_of_another_config_leaves_no_file(tmp_path):
    ckpt = tmp_path / "small.pth"
    torch.save({"model": create_model("vim_small", depth=1).state_dict()}, ckpt)
    with pytest.raises(CheckpointError, match="cls_token"):
        export_onnx("vim_tiny_det", tmp_path / "x.onnx", checkpoint=str(ckpt), input_size=(64, 64))
    assert sorted(os.listdir(tmp_path)) == ["small.pth"]


def test_cli_export_json_and_unwritable_output(tmp_path):
    out = tmp_path / "cli.onnx"
    cmd = [sys.executable, "-m", "avssm.cli", "export", "vim_tiny_det", "-o", str(out), "--input-size", "64x96",
           "--scan-op", "portable", "--json", "-"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["path"] == str(out) and info["scan_nodes"] == 0 and out.is_file()
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    r = subprocess.run(cmd[:5] + [str(locked / "x.onnx")] + cmd[6:], capture_output=True, text=True, timeout=600)
    if os.geteuid() != 0:  # root writes anywhere
        assert r.returncode == 2 and "cannot write in" in r.stderr
    r = subprocess.run([sys.executable, "-m", "avssm.cli", "export", "vim_tiny_det", "-o", str(tmp_path / "no" / "x.onnx")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("scan_op", ["plugin", "portable"])
def test_classifier_export_with_dynamic_batch(tmp_path, scan_op):
    model = create_model("vmamba_v0_tiny", depths=(1, 1, 1, 1), embed_dim=16, num_classes=7)
    model.model_name = "vmamba_v0_tiny"
    result = export_onnx(model, tmp_path / "cls.onnx", input_size=(64, 96), dynamic=True, scan_op=scan_op, verify=True)
    assert_verified(result, 1e-4)
    assert result.outputs[0].name == "logits" and result.outputs[0].shape == ["batch", 7]
    assert read_metadata(result.path)["task"] == "classification"


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("scan_op,precision", [("plugin", "fp32"), ("plugin", "fp16"), ("portable", "fp32"),
                                               ("portable", "fp16")])
def test_graphs_use_only_what_tensorrts_onnx_parser_takes(tmp_path, name, scan_op, precision):
    result = export_onnx(small_model(name), tmp_path / "m.onnx", input_size=(96, 160), dynamic=True,
                         scan_op=scan_op, precision=precision)
    assert tensorrt_parser_problems(onnx.load(result.path)) == []


def test_tensorrt_parser_check_finds_what_it_looks_for():
    h = onnx.helper
    model = h.make_model(h.make_graph(
        [h.make_node("Slice", ["x", "s", "e", "axes"], ["a"]), h.make_node("Hardmax", ["a"], ["b"]),
         h.make_node("Resize", ["b", "", "", "size"], ["c"], mode="cubic", coordinate_transformation_mode="tf_crop_and_resize")],
        "g", [h.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in ("x", "axes", "size")],
        [h.make_tensor_value_info("c", onnx.TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(np.array([0]), "s"), onnx.numpy_helper.from_array(np.array([1]), "e")]),
        opset_imports=[h.make_opsetid("", 21)])
    problems = tensorrt_parser_problems(model)
    assert len(problems) == 4, problems
    assert [p.split(" ")[0] for p in problems] == ["opset", "Slice", "Hardmax", "Resize"]


def test_scan_lengths_are_recorded_for_the_export_in_progress_only(tmp_path):
    # The portable lowering sizes its chunks from the lengths traced at export; they are collected for the
    # export in progress (a context), never left behind for the next one or shared between threads.
    import threading

    from avssm.ops import selective_scan_onnx

    class Scan(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.A = torch.nn.Parameter(-torch.rand(4, 1))

        def forward(self, u, delta, B, C):
            return selective_scan(u, delta, self.A, B, C)

    def export(L, path):
        args = (torch.randn(1, 4, L), torch.rand(1, 4, L), torch.randn(1, 1, 1, L), torch.randn(1, 1, 1, L))
        torch.onnx.export(Scan(), args, str(path), dynamo=False, opset_version=17)

    seen = {}

    def in_thread():
        with selective_scan_onnx.recording_scans() as shapes:
            export(77, tmp_path / "b.onnx")
        seen["thread"] = shapes.lengths

    with selective_scan_onnx.recording_scans() as shapes:
        worker = threading.Thread(target=in_thread)
        worker.start()
        worker.join()
        export(33, tmp_path / "a.onnx")
    assert shapes.lengths == [33] and shapes.groups == [1] and seen["thread"] == [77]
    export(55, tmp_path / "c.onnx")  # outside any recording: nothing collected, nothing fails
    assert shapes.lengths == [33]
