"""TensorRT: `avssm build` (ONNX -> engine + JSON sidecar) and the engine backend of `avssm run`.

Needs the ``tensorrt`` Python package (10.x or 11.x) and cuda-python; both are imported only here and
only when used. The avssm plugin library is loaded into TensorRT's plugin registry before parsing or
deserializing. Precision comes from the ONNX file (networks are strongly typed: TensorRT 11 always,
10.x through the STRONGLY_TYPED flag). The engine file is a plain TensorRT plan; what the runtime needs
besides (avssm metadata, TensorRT version, GPU, shapes, plugin) is in ``<engine>.json``.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from avssm.errors import AvssmError, FaultError
from avssm.runtime.backends import Backend, BackendError


def _import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendError("TensorRT is not installed (pip install tensorrt, or use JetPack's python3-libnvinfer)") from None
    return trt


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            raise BackendError("cuda-python is not installed (pip install cuda-python)") from None
    return cudart


def _check(result, what: str):
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BackendError(f"CUDA error {int(err)} in {what}")
    return values[0] if len(values) == 1 else values


def gpu_name() -> str:
    cudart = _cudart()
    device = _check(cudart.cudaGetDevice(), "cudaGetDevice")
    props = _check(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name
    return name.decode(errors="replace").rstrip("\x00") if isinstance(name, bytes) else str(name)


def engine_device_memory_mib(engine) -> float:
    """The engine's activation memory: ``device_memory_size_v2`` (TensorRT >= 10.3; the only one in 11.x, which
    removed ``device_memory_size``), else ``device_memory_size`` (10.0-10.2)."""
    size = getattr(engine, "device_memory_size_v2", None)
    return (engine.device_memory_size if size is None else size) / 2**20


PLUGIN_ID = ("SelectiveScan", "1", "avssm")  # name, version, namespace of the creator (avssm/csrc/trt/README.md)


def _load_plugin(trt, plugin_lib: str | None) -> str | None:
    """Make avssm's plugin creator available to TensorRT: found already registered (another component of the
    process loaded it), or loaded from ``plugin_lib`` (default: the one found); the path, or None without one.
    ``load_library`` returns nothing useful when the creator is there already, so the creator is looked up
    before and after, and its absence after loading is the error."""
    from avssm.native import check_plugin_library, find_plugin_library

    registry = trt.get_plugin_registry()
    if registry.get_creator(*PLUGIN_ID) is not None:
        return plugin_lib or "(already registered)"
    path = Path(plugin_lib) if plugin_lib else find_plugin_library()
    if path is None:
        return None
    if not path.is_file():
        raise BackendError(f"plugin library {path}: no such file")
    problem = check_plugin_library(path)
    if problem:
        raise BackendError(f"plugin library {path}: {problem}")
    registry.load_library(str(path))
    if registry.get_creator(*PLUGIN_ID) is None:
        raise BackendError(f"plugin library {path}: loaded, but TensorRT has no SelectiveScan creator (version 1, "
                           "namespace avssm) after it; rebuild it with avssm build-plugins for this TensorRT")
    return str(path)


def engine_plugin_library(engine_path, sidecar: dict, plugin_lib: str | None) -> str | None:
    """The plugin library an engine needs: none for one without SelectiveScan nodes (a portable-form file);
    otherwise ``--plugin-lib``, then ``$AVSSM_PLUGIN_LIB`` and avssm's build folders. Never the path recorded in
    the sidecar: a file that travels with a model does not choose code to load. The recorded path is only named
    in the error, as what to pass if the user trusts it."""
    from avssm.native import PLUGIN_LIB, find_plugin_library, plugin_candidates

    if plugin_lib:
        return plugin_lib
    if sidecar.get("avssm", {}).get("scan_op") != "plugin":
        return None
    found = find_plugin_library()
    if found is not None:
        return str(found)
    recorded = sidecar.get("plugin_lib")
    recorded = recorded if isinstance(recorded, str) and recorded else None
    library = sidecar.get("plugin", {}).get("library") if isinstance(sidecar.get("plugin"), dict) else None
    name = library if isinstance(library, str) else (Path(recorded).name if recorded else PLUGIN_LIB)
    looked = ", ".join(str(p) for p in plugin_candidates())
    hint = (f"its sidecar names {recorded}, which avssm does not load from a model's files: pass --plugin-lib "
            f"{recorded} if you trust that library, or run avssm build-plugins" if recorded
            else "run avssm build-plugins or pass --plugin-lib")
    raise BackendError(f"engine {engine_path}: has SelectiveScan nodes and needs avssm's plugin ({name}), "
                       f"found none in $AVSSM_PLUGIN_LIB or avssm's build folders ({looked}); {hint}")


def profile_shapes(inputs, min_shape=None, opt_shape=None, max_shape=None, *, source="model",
                   exported: dict | None = None) -> dict:
    """The optimization profile of a network's inputs: ``{name: {"min": [...], "opt": [...], "max": [...]}}``,
    for every input (a static one at its shape).

    ``inputs`` are (name, shape) with -1 (or None) for a dynamic extent. Each of ``min_shape`` / ``opt_shape`` /
    ``max_shape`` is a shape for the one dynamic input, or ``{name: shape}`` for several. Every dynamic input needs
    all three; each must keep the static extents and rank, with min <= opt <= max. One line naming the flag
    otherwise (with the shape the input was exported at, from ``exported``, as the example)."""
    inputs = [(name, [d if isinstance(d, int) and d >= 0 else -1 for d in shape]) for name, shape in inputs]
    dynamic = [name for name, shape in inputs if -1 in shape]
    given = {}
    for flag, value in (("--min-shape", min_shape), ("--opt-shape", opt_shape), ("--max-shape", max_shape)):
        if value is None:
            given[flag] = {}
        elif isinstance(value, dict):
            unknown = sorted(set(value) - {name for name, _ in inputs})
            if unknown:
                raise AvssmError(f"{flag} {unknown[0]}=...: {source} has no input {unknown[0]}; its inputs are "
                                 f"{', '.join(name for name, _ in inputs)}")
            given[flag] = {k: list(v) for k, v in value.items()}
        elif len(dynamic) == 1 or (not dynamic and len(inputs) == 1):
            given[flag] = {(dynamic or [inputs[0][0]])[0]: list(value)}
        else:
            raise AvssmError(f"{flag}: {source} has {len(dynamic)} dynamic inputs ({', '.join(dynamic) or 'none'}); "
                             "name each, e.g. " + " ".join(f"{flag} {n}=..." for n in dynamic[:2]))
    profiles = {}
    for name, shape in inputs:
        if name not in dynamic:
            for flag, shapes in given.items():
                if name in shapes and shapes[name] != shape:
                    raise AvssmError(f"{flag} {name}={'x'.join(map(str, shapes[name]))}: input {name} is static, "
                                     f"{'x'.join(map(str, shape))}")
            profiles[name] = {"min": shape, "opt": shape, "max": shape}
            continue
        text = "x".join("?" if d < 0 else str(d) for d in shape)
        missing = [flag for flag, shapes in given.items() if name not in shapes]
        if missing:
            known = (exported or {}).get(name)
            example = "x".join(map(str, known)) if known and len(known) == len(shape) else \
                "x".join("1" if d < 0 else str(d) for d in shape)
            raise AvssmError(f"{source}: input {name} is dynamic ({text}); give --min-shape, --opt-shape and "
                             f"--max-shape for it (e.g. {example})")
        low, opt, high = (given[f][name] for f in ("--min-shape", "--opt-shape", "--max-shape"))
        for flag, value in zip(("--min-shape", "--opt-shape", "--max-shape"), (low, opt, high)):
            if len(value) != len(shape) or any(d >= 0 and v != d for d, v in zip(shape, value)) or min(value) < 1:
                raise AvssmError(f"{flag} {'x'.join(map(str, value))}: does not fit input {name} ({text}); keep its "
                                 "rank and fixed extents, each extent at least 1")
        if any(not a <= b <= c for a, b, c in zip(low, opt, high)):
            raise AvssmError(f"input {name}: --min-shape {'x'.join(map(str, low))}, --opt-shape "
                             f"{'x'.join(map(str, opt))} and --max-shape {'x'.join(map(str, high))} must grow "
                             "extent by extent (min <= opt <= max)")
        profiles[name] = {"min": low, "opt": opt, "max": high}
    return profiles


def build_engine(onnx_path: str, output: str, *, plugin_lib: str | None = None, min_shape=None, opt_shape=None,
                 max_shape=None, timing_cache: str | None = None, workspace_mib: int = 4096, log=print) -> dict:
    """Build a TensorRT engine from an avssm ONNX file; writes ``output`` and ``output + '.json'``. The shapes are
    those of :func:`profile_shapes`, needed where the file has dynamic inputs."""
    from avssm.graph.metadata import require_metadata
    from avssm.graph.onnx_io import input_specs, load_model, require_valid_scan_nodes
    from avssm.graph.unfuse import has_fused_scans, unfuse_scans
    from avssm.outputs import atomic_output, atomic_outputs, check_distinct, check_output

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise AvssmError(f"model {onnx_path}: no such file")
    inputs = {"ONNX_FILE": onnx_path, "--plugin-lib": plugin_lib}
    check_output(output, "--output", inputs=inputs)
    check_output(str(output) + ".json", "--output's .json", inputs=inputs)
    check_distinct({"--output": output, "--output's .json": str(output) + ".json", "--timing-cache": timing_cache})
    model = load_model(onnx_path)  # read once: its metadata now, and whether its scans are fused below
    meta = require_metadata(model, source=onnx_path)
    require_valid_scan_nodes(model, onnx_path)
    specs = [(name, shape) for name, shape, _ in input_specs(model)]
    exported = meta.get("inputs") if isinstance(meta.get("inputs"), dict) else {}
    if meta.get("task") != "custom" and len(meta.get("export_size") or []) == 2:
        exported = {specs[0][0]: [1, 3, *meta["export_size"]]}
    check = functools.partial(profile_shapes, specs, min_shape, opt_shape, max_shape, source=f"model {onnx_path}",
                              exported=exported)
    # Shapes given are checked before TensorRT loads; without any, a missing TensorRT is said first.
    given = any(v is not None for v in (min_shape, opt_shape, max_shape))
    profiles = check() if given else None
    trt = _import_tensorrt()
    profiles = profiles or check()
    logger = trt.Logger(trt.Logger.WARNING)
    plugin = _load_plugin(trt, plugin_lib)
    if meta.get("scan_op") == "plugin" and plugin is None:
        raise AvssmError("the plugin-form model needs the avssm plugin library: pass --plugin-lib or run avssm build-plugins")
    builder = trt.Builder(logger)
    flags = 0
    if int(trt.__version__.split(".")[0]) < 11:  # 11.x is always strongly typed and deprecates the flag
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if has_fused_scans(model):  # version 1 nodes and TensorRT's copies: the kernel path a GPU has verified
        parsed = parser.parse(unfuse_scans(model).SerializeToString(), str(onnx_path))
    else:
        parsed = parser.parse_from_file(str(onnx_path))
    if not parsed:
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise AvssmError(f"model {onnx_path}: TensorRT cannot parse it: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    dynamic = [name for name, shape in specs if None in shape]  # TensorRT names them as ONNX does
    if dynamic:
        profile = builder.create_optimization_profile()
        for name in dynamic:
            profile.set_shape(name, *(profiles[name][k] for k in ("min", "opt", "max")))
        config.add_optimization_profile(profile)
    shapes = next(iter(profiles.values()))  # the first (image) input's, as the runtimes read it
    cache = None
    if timing_cache:
        data = Path(timing_cache).read_bytes() if Path(timing_cache).is_file() else b""
        cache = config.create_timing_cache(data)
        config.set_timing_cache(cache, False)
    # Everything the sidecar needs is gathered before the minutes of building: a failure afterwards cannot leave
    # an engine without the sidecar the backend requires.
    sidecar = {"tensorrt": trt.__version__, "gpu": gpu_name(), "onnx": str(onnx_path), "shapes": shapes,
               "profiles": profiles,
               "plugin_lib": plugin, "avssm": meta}
    if plugin and meta.get("scan_op") == "plugin":
        sidecar["plugin"] = dict(zip(("name", "version", "namespace"), PLUGIN_ID), library=Path(plugin).name)
    log("building the TensorRT engine (this takes minutes) ...")
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise AvssmError(f"model {onnx_path}: TensorRT could not build an engine (see the messages above)")
    try:
        with atomic_outputs(output, str(output) + ".json") as (engine_tmp, sidecar_tmp):
            engine_tmp.write_bytes(bytes(plan))
            sidecar_tmp.write_text(json.dumps(sidecar, indent=2) + "\n")
        if timing_cache and cache is not None:
            with atomic_output(timing_cache) as tmp:
                tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    except OSError as e:
        raise FaultError(f"--output {output}: could not be written ({e.strerror or e})") from None
    return sidecar


def read_sidecar(engine_path: Path) -> dict:
    """``<engine>.json``, checked before TensorRT is loaded: a JSON object whose avssm metadata the runtime can
    read; one line naming the file otherwise."""
    from avssm.graph.metadata import metadata_problem

    path = Path(str(engine_path) + ".json")
    if not path.is_file():
        raise BackendError(f"engine {engine_path}: no {path.name} beside it (build engines with `avssm build`)")
    try:
        sidecar = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise BackendError(f"engine {engine_path}: its sidecar {path} is not readable JSON ({type(e).__name__}); "
                           "rebuild it with `avssm build`") from None
    if not isinstance(sidecar, dict):
        problem = "is not a JSON object"
    elif not isinstance(sidecar.get("avssm"), dict):
        problem = "has no 'avssm' metadata"
    else:
        problem = metadata_problem(sidecar["avssm"])
        problem = problem and f"has avssm metadata that {problem}"
    if problem:
        raise BackendError(f"engine {engine_path}: its sidecar {path} {problem}; rebuild it with `avssm build`")
    return sidecar


class TensorRTBackend(Backend):
    def __init__(self, engine_path: str | Path, plugin_lib: str | None = None, reason: str = ""):
        engine_path = Path(engine_path)
        if not engine_path.is_file():
            raise BackendError(f"engine {engine_path}: no such file")
        sidecar = read_sidecar(engine_path)
        trt = _import_tensorrt()
        cudart = _cudart()
        here_trt, here_gpu = trt.__version__, gpu_name()
        if sidecar.get("tensorrt") != here_trt or sidecar.get("gpu") != here_gpu:
            raise BackendError(f"engine {engine_path}: built with TensorRT {sidecar.get('tensorrt')} on {sidecar.get('gpu')}, "
                               f"this is TensorRT {here_trt} on {here_gpu}; rebuild it: avssm build {sidecar.get('onnx')} "
                               f"-o {engine_path}")
        library = engine_plugin_library(engine_path, sidecar, plugin_lib)
        plugin = _load_plugin(trt, library) if library else None  # a portable-form engine needs none
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise BackendError(f"engine {engine_path}: TensorRT could not load it (another TensorRT version or GPU, "
                               "or the avssm plugin is missing); rebuild with `avssm build`")
        self.context = self.engine.create_execution_context()
        self.trt, self.cudart = trt, cudart
        self.stream = _check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        in_shape = tuple(self.engine.get_tensor_shape(self.inputs[0]))
        fixed = tuple(in_shape[2:4]) if all(d > 0 for d in in_shape[2:4]) else None
        self.buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
        super().__init__("tensorrt", "cuda", sidecar["avssm"], self.inputs[0],
                         trt.nptype(self.engine.get_tensor_dtype(self.inputs[0])), fixed, reason,
                         {"tensorrt": here_trt, "gpu": here_gpu, "engine": str(engine_path), "plugin_lib": plugin,
                          "engine_device_memory_mib": engine_device_memory_mib(self.engine)},
                         in_shape[0] if in_shape[0] > 0 else None)

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self.buffers.get(name, (0, 0))
        if size < nbytes:  # grows only when a larger frame arrives; reused otherwise
            if ptr:
                _check(self.cudart.cudaFree(ptr), "cudaFree")
            ptr = _check(self.cudart.cudaMalloc(nbytes), "cudaMalloc")
            self.buffers[name] = (ptr, nbytes)
        return ptr

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return self.run_inputs({self.inputs[0]: images})

    def input_specs(self) -> list[tuple[str, tuple, type]]:
        return [(n, tuple(d if d > 0 else None for d in self.engine.get_tensor_shape(n)),
                 self.trt.nptype(self.engine.get_tensor_dtype(n))) for n in self.inputs]

    def run_inputs(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart, trt = self.cudart, self.trt
        if set(feeds) != set(self.inputs):
            raise BackendError(f"engine {self.info['engine']}: takes the inputs {', '.join(self.inputs)}, "
                               f"was given {', '.join(feeds)}")
        kind = cudart.cudaMemcpyKind
        staged = []  # the host arrays stay alive until the stream is synchronized
        for name in self.inputs:
            value = np.ascontiguousarray(feeds[name], dtype=trt.nptype(self.engine.get_tensor_dtype(name)))
            staged.append(value)
            self.context.set_input_shape(name, value.shape)
            ptr = self._buffer(name, value.nbytes)
            _check(cudart.cudaMemcpyAsync(ptr, value.ctypes.data, value.nbytes, kind.cudaMemcpyHostToDevice,
                                          self.stream), "cudaMemcpyAsync")
            self.context.set_tensor_address(name, ptr)
        host = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            host[name] = np.empty(shape, dtype=trt.nptype(self.engine.get_tensor_dtype(name)))
            self.context.set_tensor_address(name, self._buffer(name, host[name].nbytes))
        if not self.context.execute_async_v3(self.stream):
            raise BackendError("TensorRT execution failed (see the messages above)")
        for name, arr in host.items():
            _check(cudart.cudaMemcpyAsync(arr.ctypes.data, self.buffers[name][0], arr.nbytes, kind.cudaMemcpyDeviceToHost,
                                          self.stream), "cudaMemcpyAsync")
        _check(cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        return host

    def memory(self) -> dict:
        free, total = _check(self.cudart.cudaMemGetInfo(), "cudaMemGetInfo")
        return {"engine_device_memory_mib": engine_device_memory_mib(self.engine),
                "io_buffers_mib": sum(size for _, size in self.buffers.values()) / 2**20,
                "gpu_used_mib": (total - free) / 2**20}
