"""What the TensorRT paths decide before TensorRT runs, checked without TensorRT: which plugin library an engine
loads, and how the plugin is put into a registry (a stand-in that records calls; it shows avssm's calls, not
that TensorRT accepts them)."""
import json

import pytest

from avssm.errors import AvssmError
from avssm.runtime.tensorrt_backend import PLUGIN_ID, _load_plugin, engine_plugin_library


@pytest.fixture
def plugin_file(tmp_path, monkeypatch):
    monkeypatch.delenv("AVSSM_PLUGIN_LIB", raising=False)
    monkeypatch.setenv("AVSSM_CACHE_DIR", str(tmp_path / "cache"))  # nothing built in the usual places
    return tmp_path


def test_a_portable_engine_needs_no_plugin(plugin_file):
    sidecar = {"avssm": {"scan_op": "portable"}, "plugin_lib": "/gone/libavssm_trt_plugin.so"}
    assert engine_plugin_library("e.engine", sidecar, None) is None


def test_a_copied_engine_finds_the_plugin_where_it_is_now(plugin_file, monkeypatch):
    here = plugin_file / "libavssm_trt_plugin.so"
    here.write_bytes(b"")
    sidecar = {"avssm": {"scan_op": "plugin"}, "plugin_lib": "/build/machine/libavssm_trt_plugin.so"}
    monkeypatch.setenv("AVSSM_PLUGIN_LIB", str(here))
    assert engine_plugin_library("e.engine", sidecar, None) == str(here)  # not the path recorded elsewhere
    assert engine_plugin_library("e.engine", sidecar, "/explicit.so") == "/explicit.so"
    monkeypatch.delenv("AVSSM_PLUGIN_LIB")
    with pytest.raises(AvssmError, match="needs avssm's plugin \\(libavssm_trt_plugin.so\\).*avssm build-plugins"):
        engine_plugin_library("e.engine", sidecar, None)


def test_a_sidecar_never_chooses_the_library_that_is_loaded(plugin_file):
    # A library whose constructor leaves a marker: loading it at all would run its code.
    import shutil
    import subprocess

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    marker = plugin_file / "constructor-ran"
    source = plugin_file / "evil.c"
    source.write_text('#include <stdio.h>\n__attribute__((constructor)) static void ran(void) '
                      f'{{ FILE *f = fopen("{marker}", "w"); if (f) fclose(f); }}\n'
                      "void getCreators(void) {} void getPluginCreators(void) {} void setLoggerFinder(void) {}\n")
    evil = plugin_file / "models" / "libavssm_trt_plugin.so"
    evil.parent.mkdir()
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(evil), str(source)], check=True)
    sidecar = {"avssm": {"scan_op": "plugin"}, "plugin_lib": str(evil),
               "plugin": {"name": "SelectiveScan", "library": "libavssm_trt_plugin.so"}}
    with pytest.raises(AvssmError) as e:
        library = engine_plugin_library("det.engine", sidecar, None)
        _load_plugin(FakeTensorRT(RecordingRegistry()), library)  # what the engine backend does next
    assert not marker.exists()
    message = str(e.value)
    assert len(message.splitlines()) == 1
    assert message.startswith("engine det.engine: has SelectiveScan nodes and needs avssm's plugin "
                              "(libavssm_trt_plugin.so), found none in $AVSSM_PLUGIN_LIB or avssm's build folders (")
    assert message.endswith(f"its sidecar names {evil}, which avssm does not load from a model's files: pass "
                            f"--plugin-lib {evil} if you trust that library, or run avssm build-plugins")
    # The user names it: then, and only then, it is loaded.
    assert engine_plugin_library("det.engine", sidecar, str(evil)) == str(evil)


class RecordingRegistry:
    def __init__(self, registered=False, registers_on_load=True):
        self.registered, self.registers_on_load, self.calls = registered, registers_on_load, []

    def get_creator(self, *key):
        self.calls.append(("get_creator", key))
        return object() if self.registered else None

    def load_library(self, path):
        self.calls.append(("load_library", path))
        self.registered = self.registered or self.registers_on_load
        return None


class FakeTensorRT:
    def __init__(self, registry):
        self.registry = registry

    def get_plugin_registry(self):
        return self.registry


def test_the_plugin_is_loaded_only_when_its_creator_is_absent(tmp_path, monkeypatch):
    import avssm.native

    library = tmp_path / "libavssm_trt_plugin.so"
    library.write_bytes(b"")
    monkeypatch.setattr(avssm.native, "check_plugin_library", lambda path: None)
    already = RecordingRegistry(registered=True)  # another component of the process loaded it
    assert _load_plugin(FakeTensorRT(already), str(library)) == str(library)
    assert [c[0] for c in already.calls] == ["get_creator"] and already.calls[0][1] == PLUGIN_ID
    fresh = RecordingRegistry()
    assert _load_plugin(FakeTensorRT(fresh), str(library)) == str(library)
    assert [c[0] for c in fresh.calls] == ["get_creator", "load_library", "get_creator"]
    broken = RecordingRegistry(registers_on_load=False)
    with pytest.raises(AvssmError, match="loaded, but TensorRT has no SelectiveScan creator"):
        _load_plugin(FakeTensorRT(broken), str(library))


def test_onnx_runtimes_tensorrt_provider_gets_plugin_nodes_only_from_1_22(tmp_path, monkeypatch):
    import onnxruntime

    from avssm.export import export_onnx
    from avssm.models import create_model
    from avssm.runtime.backends import _plugin_form_model, ort_tensorrt_runs_v3_plugins, session_options

    assert [ort_tensorrt_runs_v3_plugins(v) for v in ("1.17.3", "1.21.1", "1.22.0", "1.23.2", "2.0.0.dev1")] == [
        False, False, True, True, True]
    model = create_model("vim_tiny_det", backbone_overrides=dict(embed_dim=32, depth=1))
    path = tmp_path / "det.onnx"
    export_onnx(model, path, input_size=(64, 64), scan_op="plugin")
    monkeypatch.setattr(onnxruntime, "__version__", "1.21.1")
    lowered, how = _plugin_form_model(path, "tensorrt", None, session_options())
    import onnx

    assert "1.22 and newer run" in how
    assert not [n for n in onnx.load_from_string(lowered).graph.node if n.op_type == "SelectiveScan"]
    monkeypatch.setattr(onnxruntime, "__version__", "1.22.0")
    # the plugin runs version 1 nodes: a fused file's nodes reach TensorRT unfused, a version 1 file as it is
    unfused, how = _plugin_form_model(path, "tensorrt", None, session_options())
    assert how == "avssm TensorRT plugin (fused scans unfused at load)"
    versions = [a.s for n in onnx.load_from_string(unfused).graph.node if n.op_type == "SelectiveScan"
                for a in n.attribute if a.name == "plugin_version"]
    assert versions and set(versions) == {b"1"}
    export_onnx(model, path, input_size=(64, 64), scan_op="plugin", fused=False)
    assert _plugin_form_model(path, "tensorrt", None, session_options()) == (str(path), "avssm TensorRT plugin")


def test_onnx_runtimes_tensorrt_provider_is_given_the_self_registering_library(plugin_file, monkeypatch):
    # The provider dlopens trt_extra_plugin_lib_paths and then reads TensorRT's registry (onnxruntime
    # core/providers/tensorrt/tensorrt_execution_provider_custom_ops.cc): libavssm_trt_plugin.so registers nothing
    # when it is only dlopened, libavssm_trt_autoregister.so does.
    from avssm.runtime.backends import ort_tensorrt_plugin_library

    plugin = plugin_file / "libavssm_trt_plugin.so"
    plugin.write_bytes(b"")
    with pytest.raises(AvssmError, match="needs libavssm_trt_autoregister.so beside it"):
        ort_tensorrt_plugin_library(str(plugin))
    autoregister = plugin_file / "libavssm_trt_autoregister.so"
    autoregister.write_bytes(b"")
    assert ort_tensorrt_plugin_library(str(plugin)) == str(autoregister)
    assert ort_tensorrt_plugin_library(str(autoregister)) == str(autoregister)
    monkeypatch.setenv("AVSSM_PLUGIN_LIB", str(plugin))
    assert ort_tensorrt_plugin_library(None) == str(autoregister)
    monkeypatch.delenv("AVSSM_PLUGIN_LIB")
    with pytest.raises(AvssmError, match="needs avssm's TensorRT plugin: run avssm build-plugins"):
        ort_tensorrt_plugin_library(None)


def test_doctor_says_when_gpu_packages_do_not_fit():
    from avssm.doctor import compatibility_problems

    jetpack6 = {"driver_cuda": "12.6", "cuda_python": "12.6.2", "tensorrt": "10.3.0", "tensorrt_cuda": None,
                "onnxruntime_gpu": None}
    assert compatibility_problems(jetpack6) == []
    unpinned = {**jetpack6, "cuda_python": "13.0.1", "tensorrt": "11.4.0", "tensorrt_cuda": "13",
                "onnxruntime_gpu": "1.21.1"}
    problems = compatibility_problems(unpinned)
    assert any(p.startswith("cuda-python is built for CUDA 13, but the driver supports CUDA 12.6") for p in problems)
    assert any(p.startswith("tensorrt is built for CUDA 13") for p in problems)
    assert any("takes only V1 plugins" in p for p in problems)
    old = {**jetpack6, "tensorrt": "8.6.2"}
    assert compatibility_problems(old) == [compatibility_problems(old)[0]] and "no IPluginV3" in compatibility_problems(old)[0]
    mixed = {**jetpack6, "driver_cuda": "13.0", "cuda_python": "12.9.0", "tensorrt_cuda": "13"}
    assert compatibility_problems(mixed) == ["cuda-python 12.9.0 (CUDA 12) and TensorRT for CUDA 13 do not match: "
                                             "pip install 'cuda-python>=13,<14'"]


class RecordingTensorRT:
    """Stands in for the ``tensorrt`` module in build_engine: every object records the calls made to it and
    returns another recorder (a "plan" from build_serialized_network). It shows the order of avssm's steps, not
    that TensorRT builds anything."""

    def __init__(self, calls, name="tensorrt", arguments=None):
        self._calls, self._name = calls, name
        self._arguments = {} if arguments is None else arguments  # call name -> the last call's arguments
        self.__version__ = "10.3.0"

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return RecordingTensorRT(self._calls, f"{self._name}.{attr}", self._arguments)

    def __call__(self, *args, **kwargs):
        self._calls.append(self._name)
        self._arguments[self._name] = args
        if self._name.endswith("build_serialized_network"):
            return b"plan"
        if self._name.endswith(".shape"):
            return (1, 3, 64, 64)
        return RecordingTensorRT(self._calls, self._name + "()", self._arguments)

    def __iter__(self):
        return iter((1, 3, 64, 64))

    def __int__(self):
        return 0


def test_an_engine_is_written_with_its_sidecar_or_not_at_all(tmp_path, monkeypatch):
    import avssm.runtime.tensorrt_backend as backend
    from avssm.export import export_onnx
    from avssm.models import create_model

    model = create_model("vim_tiny_det", backbone_overrides=dict(embed_dim=32, depth=1))
    onnx_path = tmp_path / "det.onnx"
    export_onnx(model, onnx_path, input_size=(64, 64), scan_op="portable")
    calls = []
    monkeypatch.setattr(backend, "_import_tensorrt", lambda: RecordingTensorRT(calls))
    engine = tmp_path / "det.engine"

    def no_gpu():
        raise backend.BackendError("CUDA error 100 in cudaGetDevice")

    monkeypatch.setattr(backend, "gpu_name", no_gpu)
    with pytest.raises(AvssmError, match="cudaGetDevice"):
        backend.build_engine(str(onnx_path), str(engine), log=lambda line: None)
    assert not [c for c in calls if c.endswith("build_serialized_network")]  # failed before minutes of building
    assert sorted(p.name for p in tmp_path.iterdir()) == ["det.onnx"]

    monkeypatch.setattr(backend, "gpu_name", lambda: "NVIDIA Orin")
    sidecar = backend.build_engine(str(onnx_path), str(engine), log=lambda line: None)
    assert engine.read_bytes() == b"plan"
    assert json.loads((tmp_path / "det.engine.json").read_text()) == sidecar and sidecar["gpu"] == "NVIDIA Orin"


def test_tensorrt_parses_a_fused_file_unfused(tmp_path, monkeypatch):
    """avssm's plugin runs version 1 nodes only: build_engine hands the parser the unfused graph of a fused file,
    and a version 1 file by its path."""
    import onnx

    import avssm.runtime.tensorrt_backend as backend
    from avssm.export import export_onnx
    from avssm.models import create_model

    model = create_model("vmamba_tiny_det", backbone_overrides=dict(depths=(1, 1, 1, 1), embed_dim=16))
    monkeypatch.setattr(backend, "gpu_name", lambda: "NVIDIA Orin")
    monkeypatch.setattr(backend, "_load_plugin", lambda trt, lib: "libavssm_trt_plugin.so")
    for fused in (True, False):
        onnx_path = tmp_path / f"{fused}.onnx"
        export_onnx(model, onnx_path, input_size=(64, 64), fused=fused)
        calls, recorder = [], None
        recorder = RecordingTensorRT(calls)
        monkeypatch.setattr(backend, "_import_tensorrt", lambda: recorder)
        backend.build_engine(str(onnx_path), str(tmp_path / f"{fused}.engine"), log=lambda line: None)
        parsed = {name: args for name, args in recorder._arguments.items() if name.endswith("OnnxParser().parse")}
        by_path = {name: args for name, args in recorder._arguments.items()
                   if name.endswith("OnnxParser().parse_from_file")}
        if fused:
            (args,) = parsed.values()
            graph = onnx.load_from_string(args[0]).graph
            versions = {a.s for n in graph.node if n.op_type == "SelectiveScan" for a in n.attribute
                        if a.name == "plugin_version"}
            assert versions == {b"1"} and not by_path
        else:
            assert list(by_path.values()) == [(str(onnx_path),)] and not parsed


def test_the_profile_of_every_dynamic_input_is_checked_before_tensorrt_is_loaded():
    from avssm.runtime.tensorrt_backend import profile_shapes

    image = [("images", (-1, 3, -1, -1))]
    assert profile_shapes(image, (1, 3, 360, 640), (1, 3, 720, 1280), (2, 3, 1080, 1920))["images"] == {
        "min": [1, 3, 360, 640], "opt": [1, 3, 720, 1280], "max": [2, 3, 1080, 1920]}
    two = [("x", (-1, 24, 8)), ("y", (-1, 24, 8)), ("mask", (1, 24))]
    got = profile_shapes(two, {"x": (1, 24, 8), "y": (1, 24, 8)}, {"x": (2, 24, 8), "y": (2, 24, 8)},
                         {"x": (4, 24, 8), "y": (4, 24, 8)})
    assert got["y"]["max"] == [4, 24, 8] and got["mask"] == {"min": [1, 24], "opt": [1, 24], "max": [1, 24]}
    assert profile_shapes([("x", (1, 24, 8))])["x"]["opt"] == [1, 24, 8]  # static: no flags needed
    for args, message in (((), "input x is dynamic (?x24x8); give --min-shape, --opt-shape and --max-shape"),
                          (((1, 24, 8),) * 3, "--min-shape: model has 2 dynamic inputs (x, y); name each"),
                          (({"z": (1,)}, None, None), "--min-shape z=...: model has no input z"),
                          (({"x": (1, 24, 9), "y": (1, 24, 8)},) * 3, "--min-shape 1x24x9: does not fit input x"),
                          (({"x": (4, 24, 8), "y": (1, 24, 8)}, {"x": (2, 24, 8), "y": (1, 24, 8)},
                            {"x": (4, 24, 8), "y": (1, 24, 8)}), "input x: --min-shape 4x24x8, --opt-shape 2x24x8"),
                          (({"mask": (2, 24), "x": (1, 24, 8), "y": (1, 24, 8)},) * 3, "input mask is static, 1x24")):
        with pytest.raises(AvssmError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
            profile_shapes(two, *args)
