"""avssm's SelectiveScan op for ONNX Runtime on the CPU (avssm/csrc/ort/ort_selective_scan.c), run by the real
ONNX Runtime: the node contract against the reference, its errors, and plugin-form detectors on the runtime."""
import os

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from avssm import native
from avssm.graph.scan_node import DOMAIN
from avssm.ops import selective_scan_ref
from conftest import make_inputs, rel_err

pytestmark = pytest.mark.skipif(native.ort_scan_op_library() is None,
                                reason="avssm's ONNX Runtime op not built (no C compiler, or AVSSM_CPU_KERNEL=0)")


def scan_node_model(has_D, has_z, has_delta_bias, delta_softplus, overrides=None):
    """One SelectiveScan node as `avssm export --scan-op plugin` writes it (avssm/csrc/trt/README.md);
    ``overrides`` replaces attributes (None drops one)."""
    names = ["u", "delta", "A", "B", "C"] + ["D"] * has_D + ["z"] * has_z + ["delta_bias"] * has_delta_bias
    attributes = dict(has_D=has_D, has_z=has_z, has_delta_bias=has_delta_bias, delta_softplus=delta_softplus,
                      plugin_version="1", plugin_namespace="avssm")
    attributes.update(overrides or {})
    attributes = {k: v for k, v in attributes.items() if v is not None}
    node = helper.make_node("SelectiveScan", names, ["y"], domain=DOMAIN, **attributes)
    graph = helper.make_graph([node], "scan", [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)])
    return model, names


def session(model):
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(native.ort_scan_op_library()))
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


CASES = [
    # (batch, dim, L, N, groups, has_D, has_z, has_delta_bias, delta_softplus)
    (1, 8, 1, 16, 1, 1, 1, 1, 1),
    (2, 8, 300, 1, 4, 1, 0, 1, 1),  # VMamba v2: four cross-scan directions as groups
    (2, 8, 300, 16, 2, 1, 1, 1, 1),  # Vim: both directions as groups
    (1, 6, 129, 4, 3, 0, 1, 0, 1),  # z without D: the optional inputs shift
    (2, 4, 70, 16, 1, 0, 0, 0, 0),  # no optional input, delta given after softplus
]


@pytest.mark.parametrize("batch,dim,length,n,groups,has_D,has_z,has_bias,softplus", CASES)
def test_op_matches_the_reference(batch, dim, length, n, groups, has_D, has_z, has_bias, softplus):
    torch.manual_seed(0)
    u, delta, A, B, C, D, z, bias = make_inputs(batch, dim, length, n, groups)
    if not softplus:
        delta = torch.nn.functional.softplus(delta)
    kw = dict(D=D if has_D else None, z=z if has_z else None, delta_bias=bias if has_bias else None,
              delta_softplus=bool(softplus))
    expected = selective_scan_ref(u, delta, A, B, C, **kw)
    model, names = scan_node_model(has_D, has_z, has_bias, softplus)
    feeds = dict(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=bias)
    (y,) = session(model).run(None, {k: feeds[k].numpy() for k in names})
    assert y.shape == (batch, dim, length) and y.dtype == np.float32
    assert rel_err(torch.from_numpy(y), expected) < 1e-5


def test_op_names_the_tensor_whose_shape_is_wrong():
    u, delta, A, B, C, D, z, bias = (t.numpy() for t in make_inputs(1, 8, 50, 1, 4))
    model, names = scan_node_model(1, 0, 1, 1)
    feeds = dict(u=u, delta=delta, A=A, B=B, C=C[:, :, :, :49], D=D, delta_bias=bias)
    with pytest.raises(Exception, match=r"SelectiveScan: C has shape \(1, 4, 1, 49\), expected \(1, 4, 1, 50\)"):
        session(model).run(None, {k: feeds[k] for k in names})
    feeds = dict(u=u, delta=delta, A=A, B=B, C=C, D=D[:7], delta_bias=bias)
    with pytest.raises(Exception, match=r"SelectiveScan: D has shape \(7,\), expected \(8,\)"):
        session(model).run(None, {k: feeds[k] for k in names})


@pytest.mark.parametrize("overrides,field", [({"has_z": None}, "has_z"), ({"delta_softplus": 2}, "delta_softplus")])
def test_op_rejects_a_missing_or_invalid_attribute(overrides, field):
    model, _ = scan_node_model(1, 0, 1, 1, overrides=overrides)
    with pytest.raises(Exception, match=f"attribute {field} is missing or not 0/1"):
        session(model)


@pytest.fixture(scope="module")
def detector_files(tmp_path_factory):
    from avssm.export import export_onnx
    from avssm.models import create_model

    folder = tmp_path_factory.mktemp("det")
    files = {}
    for name, overrides in (("vim_tiny_det", dict(embed_dim=32, depth=2)),
                            ("vmamba_tiny_det", dict(depths=(1, 1, 2, 1), embed_dim=16))):
        torch.manual_seed(0)
        model = create_model(name, backbone_overrides=overrides).eval()
        for scan_op in ("plugin", "portable"):
            files[name, scan_op] = folder / f"{name}_{scan_op}.onnx"
            export_onnx(model, files[name, scan_op], input_size=(96, 160), dynamic=True, scan_op=scan_op)
    return files


@pytest.mark.parametrize("name", ["vim_tiny_det", "vmamba_tiny_det"])
def test_plugin_form_detector_runs_on_onnxruntime_cpu(detector_files, name, monkeypatch):
    from avssm.runtime import load_backend

    images = np.random.default_rng(0).standard_normal((1, 3, 96, 160)).astype(np.float32)
    portable = load_backend(str(detector_files[name, "portable"]), "onnxruntime")
    with_op = load_backend(str(detector_files[name, "plugin"]), "onnxruntime")
    assert with_op.info["scan"] == "avssm CPU op" and portable.info["scan"] == "standard ops"
    monkeypatch.setenv("AVSSM_CPU_KERNEL", "0")  # no compiled op: the nodes are lowered when the file loads
    lowered = load_backend(str(detector_files[name, "plugin"]), "onnxruntime")
    assert lowered.info["scan"] == "standard ops (lowered at load)"
    expected = portable.infer(images)
    for backend in (with_op, lowered):
        got = backend.infer(images)
        for key in ("boxes", "scores"):
            assert np.abs(got[key] - expected[key]).max() <= 1e-4 * max(1.0, np.abs(expected[key]).max())


def test_fp16_plugin_form_is_lowered_on_the_cpu(tmp_path):
    """The op takes fp32; an fp16 file's scans run as standard ops instead of failing to load."""
    from avssm.export import export_onnx
    from avssm.models import create_model
    from avssm.runtime import load_backend

    path = tmp_path / "fp16.onnx"
    model = create_model("vim_tiny_det", backbone_overrides=dict(embed_dim=32, depth=1)).eval()
    export_onnx(model, path, input_size=(64, 64), precision="fp16")
    backend = load_backend(str(path), "onnxruntime")
    assert backend.info["scan"] == "standard ops (lowered at load)"
    out = backend.infer(np.zeros((1, 3, 64, 64), np.float16))
    assert np.isfinite(out["scores"].astype(np.float32)).all()


def test_unwritable_cache_falls_back_to_lowering(detector_files):
    """Where the op cannot be built (here: a cache folder that cannot be created), plugin files still run."""
    import json
    import subprocess
    import sys

    code = ("import json, sys, numpy as np\n"
            "from avssm.runtime import load_backend\n"
            "backend = load_backend(sys.argv[1], 'onnxruntime')\n"
            "out = backend.infer(np.zeros((1, 3, 96, 160), np.float32))\n"
            "print(json.dumps({'scan': backend.info['scan'], 'finite': bool(np.isfinite(out['scores']).all())}))\n")
    env = {**os.environ, "AVSSM_CACHE_DIR": "/proc/avssm-cache"}  # not creatable, even as root
    r = subprocess.run([sys.executable, "-c", code, str(detector_files["vim_tiny_det", "plugin"])], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1]) == {"scan": "standard ops (lowered at load)", "finite": True}
