"""Malformed SelectiveScan nodes never crash the process: avssm's ONNX Runtime op returns an error for each, and
avssm refuses them in one line when it opens the file (exit 2), before any implementation is handed them."""
import json
import random
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from avssm import native
from avssm.graph.metadata import KEY, make_metadata
from avssm.graph.scan_node import DOMAIN, check_scan_nodes

NAMES = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
SHAPES = {"u": [1, 4, 6], "delta": [1, 4, 6], "A": [4, 2], "B": [1, 1, 2, 6], "C": [1, 1, 2, 6], "D": [4],
          "z": [1, 4, 6], "delta_bias": [4]}
TYPES = [TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.INT64]


def fuzzed_node_model(rng: random.Random) -> onnx.ModelProto:
    """One SelectiveScan node with some of: wrong input counts, empty names, other ranks and dtypes, bad or
    missing attributes, unknown layouts, zero-size extents."""
    flags = [rng.randint(0, 1) for _ in range(3)]
    names = NAMES[:5] + [n for n, f in zip(NAMES[5:], flags) if f]
    if rng.random() < 0.15:
        names = names[:rng.randint(0, len(names))] + ["u"] * rng.randint(0, 3)
    names = [("" if rng.random() < (0.3 if i >= 5 else 0.03) else n) for i, n in enumerate(names)]
    attributes = dict(has_D=flags[0], has_z=flags[1], has_delta_bias=flags[2], delta_softplus=1,
                      plugin_version="1", plugin_namespace="avssm")
    if rng.random() < 0.4:
        attributes["layout"] = rng.choice([-1, 0, 1, 2, 3, 7])
    if rng.random() < 0.2:
        key = rng.choice(["has_D", "has_z", "has_delta_bias", "delta_softplus", "layout"])
        attributes[key] = rng.choice([2, -1, 0.5, "1", None])
    attributes = {k: v for k, v in attributes.items() if v is not None}
    node = helper.make_node("SelectiveScan", names, ["y"], domain=DOMAIN, **attributes)
    inputs = []
    for name in dict.fromkeys(n for n in names if n):
        shape = list(SHAPES[name])
        if rng.random() < 0.1:
            shape = shape[:rng.randint(0, len(shape))] + [rng.randint(0, 3)] * rng.randint(0, 3)
        if rng.random() < 0.1:
            shape = [0 if rng.random() < 0.5 else d for d in shape]
        elem = TensorProto.FLOAT if rng.random() < 0.95 else rng.choice(TYPES)
        inputs.append(helper.make_tensor_value_info(name, elem, shape))
    graph = helper.make_graph([node], "scan", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)])


RUN_ALL = """
import sys, numpy as np, onnx, onnxruntime as ort
lib, paths = sys.argv[1], sys.argv[2:]
kinds = {}
for path in paths:
    print(path, flush=True)  # the last line printed names the file if the process dies
    options = ort.SessionOptions()
    options.register_custom_ops_library(lib)
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        feeds = {}
        for i in session.get_inputs():
            dtype = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
                     "tensor(int64)": np.int64}[i.type]
            feeds[i.name] = np.asarray(np.random.rand(*[d if isinstance(d, int) else 1 for d in i.shape])).astype(dtype)
        session.run(None, feeds)
        kinds["ran"] = kinds.get("ran", 0) + 1
    except Exception as e:
        kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
print("done", kinds)
"""


@pytest.mark.skipif(native.ort_scan_op_library() is None, reason="avssm's ONNX Runtime op not built (no C compiler)")
def test_onnx_runtime_op_survives_malformed_nodes(tmp_path):
    rng = random.Random(31)
    paths = []
    for i in range(200):
        paths.append(tmp_path / f"node{i:03d}.onnx")
        onnx.save(fuzzed_node_model(rng), paths[-1])
    # Every case in one child: a crash ends it with a signal, and the last line names the file.
    out = subprocess.run([sys.executable, "-c", RUN_ALL, str(native.ort_scan_op_library()), *map(str, paths)],
                         capture_output=True, text=True, timeout=300)
    last = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    assert out.returncode == 0, f"rc {out.returncode} on {last}"
    assert last.startswith("done")
    kinds = eval(last[len("done "):])  # noqa: S307 - our own child's dict of counts
    assert sum(kinds.values()) == 200 and kinds.get("ran", 0) >= 5  # well-formed cases still run


def test_empty_optional_input_crashed_the_op_now_an_error(tmp_path):
    # The case that segfaulted ONNX Runtime's process: has_D=1, has_z=1, both given empty names.
    if native.ort_scan_op_library() is None:
        pytest.skip("avssm's ONNX Runtime op not built")
    node = helper.make_node("SelectiveScan", NAMES[:5] + ["", ""], ["y"], domain=DOMAIN, has_D=1, has_z=1,
                            has_delta_bias=0, delta_softplus=1, plugin_version="1", plugin_namespace="avssm")
    graph = helper.make_graph([node], "scan", [helper.make_tensor_value_info(n, TensorProto.FLOAT, SHAPES[n])
                                               for n in NAMES[:5]],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = tmp_path / "empty.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)]),
              path)
    out = subprocess.run([sys.executable, "-c", RUN_ALL, str(native.ort_scan_op_library()), str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.strip().splitlines()[-1] == "done {'InvalidArgument': 1}"


@pytest.mark.parametrize("change, message", [
    (lambda n: n.input.__setitem__(5, ""), "input 5 has an empty name; name its tensor, or drop it and set its "
                                           "has_* attribute to 0"),
    (lambda n: n.input.append("u"), "3 optional inputs but the has_* attributes announce 2; re-export the model"),
    (lambda n: n.attribute.remove(next(a for a in n.attribute if a.name == "has_D")), "attribute has_D must be one int, 0 or 1; re-export the model"),
    (lambda n: n.attribute.append(helper.make_attribute("layout", 9)), "layout 9 is not one of"),
    (lambda n: n.attribute.append(helper.make_attribute("layout", "1")), "attribute layout must be one int"),
    (lambda n: n.output.append("y2"), "has 2 outputs, expected one named output y"),
])
def test_avssm_refuses_a_malformed_node_in_one_line_at_load(tmp_path, change, message):
    node = helper.make_node("SelectiveScan", NAMES[:5] + ["D", "z"], ["y"], name="blocks.0.scan", domain=DOMAIN,
                            has_D=1, has_z=1, has_delta_bias=0, delta_softplus=1, plugin_version="1",
                            plugin_namespace="avssm")
    change(node)
    graph = helper.make_graph([node], "scan", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                             [1, 3, 32, 32])]
                              + [helper.make_tensor_value_info(n, TensorProto.FLOAT, SHAPES[n]) for n in NAMES[:7]],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)])
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("*", r"\*")):
        check_scan_nodes(model)
    helper.set_model_props(model, {KEY: json.dumps(make_metadata("vim_tiny_det", class_names=["car"], pad_to=32,
                                                                  input_size=(32, 32)))})
    path = tmp_path / "bad.onnx"
    onnx.save(model, path)
    image = tmp_path / "frame.png"
    import cv2
    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    out = subprocess.run([sys.executable, "-m", "avssm.cli", "run", "--model", str(path), "--source", str(image),
                          "--backend", "onnxruntime"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr[-1000:]
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"model {path}: SelectiveScan node 'blocks.0.scan': " in lines[0], lines
