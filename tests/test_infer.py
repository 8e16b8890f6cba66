"""avssm_infer (avssm/csrc/infer), the C++ library for C++ / ROS 2 stacks: what runs without a GPU or TensorRT.

Its C API is built here without TensorRT (postprocessing, errors; the detector functions say they are not built)
and called through ctypes; its postprocessing is compared with the Python runtime's on the raw outputs of the
shipped detector on the bundled clip."""
import ctypes
import os
import shutil
import subprocess

import numpy as np
import pytest

CSRC = os.path.join(os.path.dirname(__file__), "..", "avssm", "csrc")
pytestmark = pytest.mark.skipif(shutil.which("c++") is None, reason="needs a C++ compiler")


class Detection(ctypes.Structure):
    _fields_ = [("x1", ctypes.c_float), ("y1", ctypes.c_float), ("x2", ctypes.c_float), ("y2", ctypes.c_float),
                ("score", ctypes.c_float), ("label", ctypes.c_int32)]


class Params(ctypes.Structure):
    _fields_ = [("score_threshold", ctypes.c_float), ("iou_threshold", ctypes.c_float),
                ("max_candidates", ctypes.c_int32), ("max_detections", ctypes.c_int32)]


class Frame(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("width", ctypes.c_int32), ("height", ctypes.c_int32),
                ("stride", ctypes.c_int64), ("format", ctypes.c_int), ("memory", ctypes.c_int)]


class Timing(ctypes.Structure):
    _fields_ = [("preprocess_ms", ctypes.c_double), ("inference_ms", ctypes.c_double),
                ("postprocess_ms", ctypes.c_double), ("end_to_end_ms", ctypes.c_double)]


class MemoryReport(ctypes.Structure):
    _fields_ = [(name, ctypes.c_double) for name in ("engine_device_memory_mib", "io_buffers_mib", "gpu_used_mib",
                                                     "unified_total_mib", "unified_available_mib")]


class ModelInfo(ctypes.Structure):
    _fields_ = [("model", ctypes.c_char_p), ("precision", ctypes.c_char_p), ("scan_op", ctypes.c_char_p),
                ("classes", ctypes.c_int32), ("min_height", ctypes.c_int32), ("min_width", ctypes.c_int32),
                ("max_height", ctypes.c_int32), ("max_width", ctypes.c_int32)]


STRUCTS = {"avssm_detection": Detection, "avssm_postprocess_params": Params, "avssm_frame": Frame,
           "avssm_timing": Timing, "avssm_memory_report": MemoryReport, "avssm_model_info": ModelInfo}


@pytest.fixture(scope="module")
def infer(tmp_path_factory):
    """libavssm_infer's C API without TensorRT, built with the system C++ compiler."""
    out = tmp_path_factory.mktemp("infer") / "libavssm_infer_cpu.so"
    subprocess.run(["c++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                    f"-I{CSRC}/include", f"{CSRC}/infer/c_api.cpp", f"{CSRC}/infer/postprocess.cpp", "-o", str(out)],
                   check=True)
    lib = ctypes.CDLL(str(out))
    lib.avssm_last_error.restype = ctypes.c_char_p
    lib.avssm_postprocess.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                      ctypes.POINTER(Params), ctypes.POINTER(Detection), ctypes.c_int32,
                                      ctypes.POINTER(ctypes.c_int32)]
    return lib


def c_postprocess(lib, boxes, scores, params=None, capacity=300):
    boxes = np.ascontiguousarray(boxes, np.float32)
    scores = np.ascontiguousarray(scores, np.float32)
    out = (Detection * capacity)()
    count = ctypes.c_int32(-1)
    status = lib.avssm_postprocess(boxes.ctypes.data, scores.ctypes.data, boxes.shape[0], scores.shape[1],
                                   ctypes.byref(params) if params else None, out, capacity, ctypes.byref(count))
    return status, list(out[:count.value]), lib.avssm_last_error().decode()


def test_structs_match_the_header(tmp_path):
    """The ctypes mirrors here have the C header's sizes and offsets (a C program prints them)."""
    lines = ['#include "avssm/infer.h"', "#include <stddef.h>", "#include <stdio.h>", "int main(void) {"]
    for name, struct in STRUCTS.items():
        lines.append(f'printf("{name} %zu\\n", sizeof({name}));')
        for field, _ in struct._fields_:
            lines.append(f'printf("{name}.{field} %zu\\n", offsetof({name}, {field}));')
    lines += ['printf("version %d\\n", AVSSM_INFER_API_VERSION);', "return 0; }"]
    (tmp_path / "sizes.c").write_text("\n".join(lines))
    compiler = shutil.which("cc") or shutil.which("gcc")
    subprocess.run([compiler, f"-I{CSRC}/include", str(tmp_path / "sizes.c"), "-o", str(tmp_path / "sizes")], check=True)
    printed = dict(line.split() for line in subprocess.run([str(tmp_path / "sizes")], capture_output=True,
                                                           text=True, check=True).stdout.splitlines())
    for name, struct in STRUCTS.items():
        assert int(printed[name]) == ctypes.sizeof(struct), name
        for field, _ in struct._fields_:
            assert int(printed[f"{name}.{field}"]) == getattr(struct, field).offset, f"{name}.{field}"
    assert printed["version"] == "1"


@pytest.fixture(scope="module")
def shipped_outputs():
    """Raw outputs (boxes, scores) of the shipped detector on each frame of the bundled clip (PyTorch, CPU)."""
    import cv2

    from avssm.app import DEFAULT_CHECKPOINT, DEFAULT_MODEL, default_sample_clip, open_model
    from avssm.runtime.preprocess import preprocess

    backend = open_model(DEFAULT_MODEL, checkpoint=str(DEFAULT_CHECKPOINT))
    clip, outputs = cv2.VideoCapture(str(default_sample_clip())), []
    while True:
        ok, frame = clip.read()
        if not ok:
            break
        raw = backend.infer(preprocess(frame, backend.metadata["input"], backend.input_dtype))
        outputs.append((np.asarray(raw["boxes"][0], np.float32), np.asarray(raw["scores"][0], np.float32)))
    assert len(outputs) == 4
    return outputs


@pytest.mark.parametrize("score_threshold,iou_threshold,max_detections",
                         [(0.3, 0.6, 300), (0.05, 0.5, 300), (0.01, 0.3, 20), (0.001, 0.7, 300)])
def test_postprocess_matches_the_python_runtime(infer, shipped_outputs, score_threshold, iou_threshold,
                                                max_detections):
    """Same boxes (1e-4), scores, classes and order as avssm run's postprocessing, on real detector outputs,
    from the default thresholds down to ones that put thousands of boxes through NMS."""
    from avssm.runtime.pipeline import postprocess

    params = Params(score_threshold, iou_threshold, 2000, max_detections)
    compared = 0
    for boxes, scores in shipped_outputs:
        expected = postprocess(boxes, scores, [], score_threshold, iou_threshold, max_detections=max_detections)
        status, got, error = c_postprocess(infer, boxes, scores, params, capacity=max_detections)
        assert status == 0, error
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert np.allclose([g.x1, g.y1, g.x2, g.y2], e.box, atol=1e-4)
            assert g.score == np.float32(e.score) and g.label == e.label
        compared += len(got)
    assert compared > 0
    print(f"{compared} detections identical over {len(shipped_outputs)} frames")


def test_postprocess_defaults_are_avssm_runs(infer, shipped_outputs):
    from avssm.runtime.config import RunConfig

    defaults = Params()
    infer.avssm_postprocess_default_params(ctypes.byref(defaults))
    config = RunConfig()
    assert (defaults.score_threshold, defaults.iou_threshold) == pytest.approx((config.score_threshold,
                                                                                config.iou_threshold))
    boxes, scores = shipped_outputs[0]
    as_tuples = [[(d.x1, d.y1, d.x2, d.y2, d.score, d.label) for d in c_postprocess(infer, boxes, scores, params)[1]]
                 for params in (None, defaults)]
    assert as_tuples[0] == as_tuples[1] and as_tuples[0]


def test_postprocess_class_aware_nms_and_ties(infer):
    """Two classes on one box both stay; an overlapping box of the same class goes (IoU 0.68 > 0.6), one that
    overlaps less stays; equal scores keep the earlier box first; a score equal to the threshold is dropped."""
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [80, 80, 90, 90],
                      [5, 0, 15, 10], [200, 200, 210, 210]], np.float32)
    scores = np.array([[0.9, 0.1], [0.1, 0.8], [0.85, 0.0], [0.7, 0.0], [0.7, 0.0], [0.75, 0.0], [0.3, 0.0]],
                      np.float32)
    status, got, error = c_postprocess(infer, boxes, scores, Params(0.3, 0.6, 2000, 300))
    assert status == 0, error
    assert [(d.label, round(d.score, 2), d.x1) for d in got] == [(0, 0.9, 0), (1, 0.8, 0), (0, 0.75, 5),
                                                                (0, 0.7, 50), (0, 0.7, 80)]


def test_c_api_errors_are_one_line_and_never_crash(infer):
    boxes, scores = np.zeros((4, 4), np.float32), np.zeros((4, 2), np.float32)
    count = ctypes.c_int32(0)
    out = (Detection * 300)()
    assert infer.avssm_postprocess(None, None, 4, 2, None, out, 300, ctypes.byref(count)) == 1
    assert "must not be NULL" in infer.avssm_last_error().decode()
    status, _, error = c_postprocess(infer, boxes, scores, Params(0.3, 0.6, 2000, 300), capacity=10)
    assert status == 1 and error == "capacity 10 is less than params' max_detections 300: pass room for that many " \
                                    "detections"
    status, _, error = c_postprocess(infer, boxes, scores, Params(1.5, 0.6, 2000, 300))
    assert status == 1 and "score_threshold and iou_threshold must be in [0, 1]" in error
    assert c_postprocess(infer, boxes, scores)[0] == 0 and infer.avssm_last_error() == b""  # cleared by a success
    detector = ctypes.c_void_p(1)
    infer.avssm_detector_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    assert infer.avssm_detector_open(b"x.engine", ctypes.byref(detector)) == 8 and detector.value is None
    assert "built without TensorRT" in infer.avssm_last_error().decode()


@pytest.fixture(scope="module")
def preprocess_on_cpu(tmp_path_factory):
    """tests/native/preprocess_on_cpu.cpp: the preprocessing kernel's CUDA source on the CPU, with its table."""
    from conftest import compile_on_cpu

    return compile_on_cpu(tmp_path_factory, "preprocess_on_cpu", "infer/preprocess.cpp")


FORMATS = {"bgr": 0, "rgb": 1, "gray": 2, "nv12": 3}


@pytest.mark.parametrize("fmt", ["bgr", "rgb", "gray", "nv12"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("height,width,row_padding,pad", [(37, 53, 13, (0, 0)), (1, 129, 0, (0, 0)),
                                                          (20, 30, 7, (12, 34)), (64, 258, 6, (0, 0))])
def test_preprocess_kernel_matches_the_python_runtime(preprocess_on_cpu, tmp_path, fmt, dtype, height, width,
                                                      row_padding, pad):
    """Odd sizes, rows with padding bytes, each colour order, fp32 and fp16, with and without padding of the
    input: the kernel's output is avssm run's preprocessing to the bit, and 0 in the padding. NV12 (even sizes)
    against OpenCV's COLOR_YUV2BGR_NV12 followed by avssm run's preprocessing."""
    import cv2

    from avssm.graph.metadata import DEFAULT_INPUT
    from avssm.runtime.preprocess import preprocess

    if fmt == "nv12" and (height % 2 or width % 2):
        pytest.skip("NV12 frames have even sizes")
    rng = np.random.default_rng(height * width)
    channels = 1 if fmt in ("gray", "nv12") else 3
    planes = height * 3 // 2 if fmt == "nv12" else height
    image = rng.integers(0, 256, (planes, width, channels), dtype=np.uint8)
    stride = width * channels + row_padding
    rows = np.zeros((planes, stride), np.uint8)
    rows[:, :width * channels] = image.reshape(planes, -1)
    rows[:, width * channels:] = 255  # bytes a kernel must not read as pixels
    (tmp_path / "frame.bin").write_bytes(rows.tobytes())
    bgr = {"bgr": lambda: image, "rgb": lambda: image[:, :, ::-1], "gray": lambda: np.repeat(image, 3, axis=2),
           "nv12": lambda: cv2.cvtColor(image[:, :, 0], cv2.COLOR_YUV2BGR_NV12)}[fmt]()
    inp = {**DEFAULT_INPUT, "mean": [0.5, 0.25, 0.125], "std": [0.2, 0.3, 0.7], "color": "RGB"}
    if dtype == np.float16:
        inp["color"] = "BGR"  # the other colour order once
    expected = preprocess(np.ascontiguousarray(bgr), inp, dtype)[0]
    out_h, out_w = height + pad[0], width + pad[1]
    args = [str(preprocess_on_cpu), str(tmp_path / "frame.bin"), str(width), str(height), str(stride),
            str(FORMATS[fmt]), str(int(dtype == np.float16)), str(out_w), str(out_h),
            str(int(inp["color"] == "RGB")), repr(inp["scale"]), *map(repr, inp["mean"]), *map(repr, inp["std"]),
            str(tmp_path / "out.bin")]
    subprocess.run(args, check=True, timeout=120)
    got = np.fromfile(tmp_path / "out.bin", dtype).reshape(3, out_h, out_w)
    assert np.array_equal(got[:, :height, :width].view(np.uint16 if dtype == np.float16 else np.uint32),
                          expected.view(np.uint16 if dtype == np.float16 else np.uint32))
    assert not got[:, height:, :].any() and not got[:, :, width:].any()


def test_half_rounding_is_numpys(tmp_path):
    """avssm_infer's fp32 -> fp16 rounding (for fp16 engines' tables) against numpy's on values around every
    rounding case: ties to even, subnormals, overflow to infinity, NaN."""
    program = tmp_path / "half.cpp"
    program.write_text('#include "infer/preprocess.hpp"\n#include <cstdio>\n#include <cstring>\n'
                       'int main() { unsigned bits; while (std::scanf("%x", &bits) == 1) { float f; '
                       'std::memcpy(&f, &bits, 4); std::printf("%u\\n", avssm::infer::halfBits(f)); } }\n')
    exe = tmp_path / "half"
    subprocess.run(["c++", "-std=c++17", "-O2", f"-I{CSRC}", f"-I{CSRC}/include", str(program),
                    f"{CSRC}/infer/preprocess.cpp", "-o", str(exe)], check=True)
    halves = np.arange(0, 0x7c01, dtype=np.uint16).view(np.float16).astype(np.float32)
    between = (halves[:-1] + halves[1:]) / 2  # exact ties
    values = np.concatenate([halves, between, np.nextafter(between, 0), np.nextafter(between, 1e9),
                             np.float32([65504, 65519.996, 65520, 1e9, np.inf, 2.0 ** -25, 2.0 ** -24 * 0.75])])
    values = np.concatenate([values, -values, np.float32([np.nan])])
    r = subprocess.run([str(exe)], input="\n".join(f"{v:x}" for v in values.view(np.uint32)), capture_output=True,
                       text=True, check=True, timeout=60)
    got = np.array(r.stdout.split(), dtype=np.uint32).astype(np.uint16)
    with np.errstate(over="ignore"):
        expected = values.astype(np.float16).view(np.uint16)
    nan = np.isnan(values)
    assert np.array_equal(got[~nan], expected[~nan])
    assert np.isnan(got[nan].view(np.float16)).all()


SIDECAR_PROGRAM = r"""
#include "infer/errors.hpp"
#include "infer/metadata.hpp"
#include <cstdio>
int main(int argc, char** argv) {
    try {
        avssm::infer::Metadata m = avssm::infer::readSidecar(argv[1], "det.engine");
        std::printf("%s|%s|%s|%s|%d|%d|%s|%s|%s\n", m.model.c_str(), m.scanOp.c_str(), m.precision.c_str(),
                    m.classNames.empty() ? "" : m.classNames.back().c_str(), (int)m.classNames.size(),
                    (int)m.halfInput, m.tensorrt.c_str(), m.gpu.c_str(), m.pluginLibrary.c_str());
        std::printf("%.9g %.9g %.9g %.9g %.9g %.9g %.9g %d\n", m.normalization.scale, m.normalization.mean[0],
                    m.normalization.mean[1], m.normalization.mean[2], m.normalization.std[0], m.normalization.std[1],
                    m.normalization.std[2], (int)m.normalization.rgb);
    } catch (avssm::infer::Error const& e) {
        std::printf("error %d: %s\n", (int)e.status, e.what());
    }
}
"""


def test_engine_sidecar_is_read_as_avssm_build_writes_it(tmp_path):
    """The sidecar `avssm build` writes (avssm/runtime/tensorrt_backend.py::build_engine), read by avssm_infer:
    the fields it needs, unicode class names, and one-line errors naming the file for what is missing."""
    import json

    from avssm.graph.metadata import make_metadata

    program = tmp_path / "sidecar.cpp"
    program.write_text(SIDECAR_PROGRAM)
    exe = tmp_path / "sidecar"
    subprocess.run(["c++", "-std=c++17", "-O2", "-Wall", "-Wextra", f"-I{CSRC}", f"-I{CSRC}/include", str(program),
                    f"{CSRC}/infer/metadata.cpp", f"{CSRC}/infer/json.cpp", "-o", str(exe)], check=True)
    meta = make_metadata("vmamba_nano_det", class_names=["car", "truck", "Fußgänger \"x\""], pad_to=32,
                         input_size=(1080, 1920), scan_op="plugin", precision="fp16")
    sidecar = {"tensorrt": "10.3.0", "gpu": "Orin", "onnx": "det.onnx", "shapes": {"min": [1, 3, 360, 640]},
               "plugin_lib": "/x/libavssm_trt_plugin.so", "avssm": meta,
               "plugin": {"name": "SelectiveScan", "version": "1", "namespace": "avssm",
                          "library": "libavssm_trt_plugin.so"}}
    path = tmp_path / "det.engine.json"
    path.write_text(json.dumps(sidecar, indent=2))  # ensure_ascii: the name arrives as \u escapes
    lines = subprocess.run([str(exe), str(path)], capture_output=True, text=True, check=True).stdout.splitlines()
    assert lines[0] == 'vmamba_nano_det|plugin|fp16|Fußgänger "x"|3|1|10.3.0|Orin|libavssm_trt_plugin.so'
    values = [float(v) for v in lines[1].split()]
    assert values[:7] == pytest.approx([1 / 255, *meta["input"]["mean"], *meta["input"]["std"]], rel=1e-7)
    assert values[7] == 1

    for broken, message in [("", "no "), ("{", "not JSON (offset 1"),
                            (json.dumps({"avssm": {"model": "m"}}), "its avssm metadata lacks task"),
                            (json.dumps({"avssm": dict(meta, task="classification")}), "avssm_infer runs detectors")]:
        if broken:
            path.write_text(broken)
        else:
            path.unlink()
        out = subprocess.run([str(exe), str(path)], capture_output=True, text=True, check=True).stdout
        assert out.startswith("error 2: ") and message in out and len(out.splitlines()) == 1, out


TABLE_PROGRAM = r"""
#include "infer/report.hpp"
#include <iostream>
#include <sstream>
int main() {
    avssm::infer::RunSummary run;
    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream in(line);
        std::string key;
        in >> key;
        if (key == "model") in >> run.model >> run.precision >> run.scanOp;
        if (key == "frames") in >> run.processed >> run.warmup >> run.dropped >> run.captured >> run.unreadable;
        if (key == "throughput") in >> run.throughputFps;
        if (key == "stage") { std::string name; double v; in >> name; while (in >> v) run.latencyMs[name].push_back(v); }
        if (key == "memory") { std::string name; double v; in >> name >> v; run.memory.emplace_back(name, v); }
        if (key == "error") { std::getline(in >> std::ws, run.error); }
    }
    std::cout << avssm::infer::formatTable(run);
}
"""


@pytest.mark.parametrize("frames,error", [(1, ""), (7, ""), (250, "camera lost")])
def test_run_table_is_avssm_runs(tmp_path, frames, error):
    """The report table C++ programs over avssm_infer print (infer/report.cpp) is avssm run's
    (avssm/runtime/report.py::format_table) for the same latencies, frames and memory: percentiles included."""
    from avssm.runtime.report import STAGES, StageTimes, format_table

    program = tmp_path / "table.cpp"
    program.write_text(TABLE_PROGRAM)
    exe = tmp_path / "table"
    subprocess.run(["c++", "-std=c++17", "-O2", f"-I{CSRC}", str(program), f"{CSRC}/infer/report.cpp", "-o", str(exe)],
                   check=True)
    rng = np.random.default_rng(frames)
    times = StageTimes()
    lines = ["model vmamba_nano_det fp16 plugin", f"frames {frames} 3 0 {frames + 3} 0", "throughput 41.2345"]
    for stage in [s for s in STAGES[1:] if s != "outputs"]:  # the C library writes no raw outputs
        values = rng.gamma(2.0, 3.0, frames)
        for v in values:
            times.add(stage, v / 1000.0)
        lines.append(f"stage {stage} " + " ".join(repr(float(v)) for v in times.samples[stage]))
    memory = {"engine_device_memory_mib": 212.49, "io_buffers_mib": 31.5, "gpu_used_mib": 1873.0}
    lines += [f"memory {k} {v!r}" for k, v in memory.items()]
    if error:
        lines.append(f"error {error}")
    report = {"backend": {"name": "avssm_infer", "device": "cuda"},
              "model": {"model": "vmamba_nano_det", "precision": "fp16", "scan_op": "plugin"},
              "frames": {"processed": frames, "warmup": 3, "dropped": 0, "captured": frames + 3, "unreadable": 0},
              "throughput_fps": 41.2345, "latency_ms": times.summary(), "source": {"drop": "oldest"},
              "memory": memory, "error": error or None}
    got = subprocess.run([str(exe)], input="\n".join(lines), capture_output=True, text=True, check=True).stdout
    assert got == format_table(report)


def _tensorrt_and_gpu() -> str | None:
    """Why the detector cannot run here, or None."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "needs TensorRT's Python package and libraries (none here)"
    if not os.environ.get("TensorRT_ROOT"):
        return "set TensorRT_ROOT to TensorRT's headers to build avssm_infer"
    if shutil.which("nvidia-smi") is None or shutil.which("nvcc") is None or shutil.which("cmake") is None:
        return "needs a CUDA GPU, nvcc and cmake"
    return None


@pytest.mark.gpu
@pytest.mark.skipif(_tensorrt_and_gpu() is not None, reason=_tensorrt_and_gpu() or "")
def test_detector_matches_avssm_run_on_a_gpu(tmp_path):
    """The shipped detector as a TensorRT engine, each frame of the bundled clip through avssm_infer's C API
    (host BGR frames) and through avssm run's TensorRT backend: the same detections (boxes within 1e-2 pixel,
    scores within 1e-4)."""
    import cv2

    from avssm.app import default_model_file, default_sample_clip
    from avssm.native import PLUGIN_LIB, build_plugins
    from avssm.runtime.pipeline import postprocess
    from avssm.runtime.preprocess import preprocess
    from avssm.runtime.tensorrt_backend import TensorRTBackend, build_engine

    out = build_plugins(tmp_path / "native", tensorrt_root=os.environ["TensorRT_ROOT"], log=lambda line: None)
    engine = tmp_path / "det.engine"
    build_engine(str(default_model_file()), str(engine), plugin_lib=str(out / PLUGIN_LIB), min_shape=(1, 3, 1080, 1920),
                 opt_shape=(1, 3, 1080, 1920), max_shape=(1, 3, 1080, 1920), log=lambda line: None)
    lib = ctypes.CDLL(str(out / "libavssm_infer.so"))
    lib.avssm_last_error.restype = ctypes.c_char_p
    detector = ctypes.c_void_p()
    assert lib.avssm_detector_open(str(engine).encode(), ctypes.byref(detector)) == 0, lib.avssm_last_error()
    python = TensorRTBackend(engine, str(out / PLUGIN_LIB))
    clip, compared = cv2.VideoCapture(str(default_sample_clip())), 0
    while True:
        ok, image = clip.read()
        if not ok:
            break
        raw = python.infer(preprocess(image, python.metadata["input"], python.input_dtype))
        expected = postprocess(raw["boxes"][0], raw["scores"][0], [])
        frame = Frame(image.ctypes.data, image.shape[1], image.shape[0], image.strides[0], 0, 0)
        found, count = (Detection * 300)(), ctypes.c_int32()
        assert lib.avssm_detector_detect(detector, ctypes.byref(frame), None, None, found, 300, ctypes.byref(count)) == 0
        assert count.value == len(expected)
        for g, e in zip(found[:count.value], expected):
            assert np.allclose([g.x1, g.y1, g.x2, g.y2], e.box, atol=1e-2) and abs(g.score - e.score) < 1e-4
            assert g.label == e.label
        compared += count.value
    timing = Timing()
    assert lib.avssm_detector_timing(detector, ctypes.byref(timing)) == 0 and timing.inference_ms > 0
    lib.avssm_detector_close(detector)
    assert compared > 0
