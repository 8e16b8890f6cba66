"""Building, finding and binding avssm's native libraries: the CUDA kernels and the TensorRT plugin (plugins/,
CMake), and the C libraries built on first use with the system compiler (avssm/ops/csrc/: the CPU scan kernel
PyTorch calls, and the SelectiveScan op for ONNX Runtime on the CPU).

Torch-free (ctypes only), so `avssm doctor` and the runtime work on a machine that only runs engines; the
PyTorch ops over these libraries are avssm.ops.cuda_kernel and avssm.ops.cpu_kernel.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from avssm.errors import AvssmError

PLUGIN_LIB = "libavssm_trt_plugin.so"
KERNEL_LIB = "libavssm_kernels.so"
SOURCE_DIR = Path(__file__).resolve().parent.parent / "plugins"
CSRC_DIR = Path(__file__).resolve().parent / "ops" / "csrc"
C_FLAGS = ["-O3", "-ffast-math", "-fopenmp", "-shared", "-fPIC"]
_kernel_lock = threading.Lock()
_kernel_lib = None
_kernel_searched = False


def plugin_candidates() -> list[Path]:
    """Where the TensorRT plugin library is looked for, in order."""
    paths = []
    if os.environ.get("AVSSM_PLUGIN_LIB"):
        paths.append(Path(os.environ["AVSSM_PLUGIN_LIB"]))
    package = Path(__file__).resolve().parent
    paths += [package / "lib" / PLUGIN_LIB, SOURCE_DIR / "build" / PLUGIN_LIB]
    return paths


def find_plugin_library() -> Path | None:
    return next((p for p in plugin_candidates() if p.is_file()), None)


def check_plugin_library(path: Path) -> str | None:
    """None if ``path`` loads and exports the TensorRT loader entry points, else what is wrong."""
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        return f"cannot be loaded: {e}"
    missing = [name for name in ("getCreators", "getPluginCreators", "setLoggerFinder") if not hasattr(lib, name)]
    return f"not an avssm TensorRT plugin (missing {', '.join(missing)})" if missing else None


SCAN_API_VERSION = 3  # AVSSM_SCAN_API_VERSION of plugins/include/avssm/selective_scan.h


class ScanParams(ctypes.Structure):
    """Mirror of avssm_scan_params in plugins/include/avssm/selective_scan.h (SCAN_API_VERSION)."""

    _fields_ = [
        ("batch", ctypes.c_int64), ("dim", ctypes.c_int64), ("length", ctypes.c_int64),
        ("dstate", ctypes.c_int64), ("groups", ctypes.c_int64), ("input_type", ctypes.c_int),
        ("u", ctypes.c_void_p), ("delta", ctypes.c_void_p), ("A", ctypes.c_void_p), ("B", ctypes.c_void_p),
        ("C", ctypes.c_void_p), ("D", ctypes.c_void_p), ("z", ctypes.c_void_p), ("delta_bias", ctypes.c_void_p),
        ("delta_softplus", ctypes.c_int), ("y", ctypes.c_void_p), ("workspace", ctypes.c_void_p),
        ("workspace_bytes", ctypes.c_size_t), ("lanes_per_channel", ctypes.c_int), ("layout", ctypes.c_int),
    ]


# avssm_scan_layout: the N = 16 kernel layouts (plugins/README.md, "Kernel design").
SCAN_LAYOUTS = {"plan": 0, "channel": 1, "tokens": 2}


def kernel_candidates() -> list[Path]:
    """Where the kernel library is looked for, in order."""
    paths = []
    if os.environ.get("AVSSM_KERNEL_LIB"):
        paths.append(Path(os.environ["AVSSM_KERNEL_LIB"]))
    if os.environ.get("AVSSM_PLUGIN_LIB"):
        paths.append(Path(os.environ["AVSSM_PLUGIN_LIB"]).with_name(KERNEL_LIB))
    package = Path(__file__).resolve().parent
    return paths + [package / "lib" / KERNEL_LIB, SOURCE_DIR / "build" / KERNEL_LIB]


def find_kernel_library() -> Path | None:
    return next((p for p in kernel_candidates() if p.is_file()), None)


def kernel_library() -> ctypes.CDLL | None:
    """The found kernel library, loaded once (None if there is none, or it does not load)."""
    global _kernel_lib, _kernel_searched
    with _kernel_lock:
        if not _kernel_searched:
            _kernel_searched = True
            path = find_kernel_library()
            try:
                _kernel_lib = load_kernel_library(path) if path else None
            except (OSError, AttributeError):  # not loadable, or an older build without the whole C API
                _kernel_lib = None
        return _kernel_lib


def load_kernel_library(path) -> ctypes.CDLL:
    """Load a libavssm_kernels.so and declare the signatures of its C API. OSError for a build of another
    API version (its avssm_scan_params is laid out differently from ScanParams)."""
    lib = ctypes.CDLL(str(path))
    version = lib.avssm_selective_scan_api_version()
    if version != SCAN_API_VERSION:
        raise OSError(f"{path}: C API version {version}, this avssm needs {SCAN_API_VERSION} (avssm build-plugins)")
    lib.avssm_selective_scan_fwd.restype = ctypes.c_int
    lib.avssm_selective_scan_fwd.argtypes = [ctypes.POINTER(ScanParams), ctypes.c_void_p]
    lib.avssm_selective_scan_workspace_size.restype = ctypes.c_size_t
    lib.avssm_selective_scan_workspace_size.argtypes = [ctypes.c_int64] * 4 + [ctypes.c_int]
    lib.avssm_selective_scan_plan.restype = ctypes.c_int
    lib.avssm_selective_scan_plan.argtypes = [ctypes.POINTER(ScanParams), ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                                              ctypes.POINTER(ctypes.c_int)]
    return lib


def _library_or_error(lib=None):
    lib = lib or kernel_library()
    if lib is None:
        raise AvssmError(f"{KERNEL_LIB} not found or not loadable (avssm build-plugins)")
    return lib


def workspace_size(batch: int, dim: int, length: int, dstate: int, num_multiprocessors: int, lib=None) -> int:
    """Bytes of workspace that let a call of this shape split long sequences on a GPU of that many
    multiprocessors (avssm_selective_scan_workspace_size); ``lib`` as in scan_plan."""
    return _library_or_error(lib).avssm_selective_scan_workspace_size(batch, dim, length, dstate, num_multiprocessors)


def scan_plan(batch: int, dim: int, length: int, dstate: int, groups: int, num_multiprocessors: int,
              workspace_bytes: int, lib=None, lanes_per_channel: int = 0, layout: str = "plan") -> tuple[int, int]:
    """(lanes per channel, segments per sequence) the kernel runs such a call with on a GPU of that many
    multiprocessors, given that much workspace (avssm_selective_scan_plan: host code, no GPU needed).
    ``lib``: a library from load_kernel_library (default: the one found). ``lanes_per_channel``: 0 lets
    the plan choose; 1, 2, 4 or 8 force the N = 16 channel layout (avssm_scan_params.lanes_per_channel).
    ``layout``: a key of SCAN_LAYOUTS ("tokens": one pass, 1 lane, never split)."""
    # Only the pointers' presence matters to the plan: 1 stands for every required tensor.
    params = ScanParams(batch, dim, length, dstate, groups, 0, 1, 1, 1, 1, 1, None, None, None, 0, 1,
                        1 if workspace_bytes else None, workspace_bytes, lanes_per_channel, SCAN_LAYOUTS[layout])
    lanes, segments = ctypes.c_int(), ctypes.c_int()
    plan = _library_or_error(lib).avssm_selective_scan_plan
    if plan(ctypes.byref(params), num_multiprocessors, ctypes.byref(lanes), ctypes.byref(segments)) != 0:
        raise ValueError(f"selective_scan plan: invalid shape batch {batch} dim {dim} L {length} N {dstate} "
                         f"groups {groups} (or lanes_per_channel {lanes_per_channel} with layout {layout})")
    return lanes.value, segments.value


# ------------------------------------------------------------------------------ C libraries (ops/csrc)

def cache_dir() -> Path:
    return Path(os.environ.get("AVSSM_CACHE_DIR", Path.home() / ".cache" / "avssm"))


def _cpu_id() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return platform.machine() + flags


def _arch_flags(compiler: str) -> list[str]:
    # -march=native lets the compiler vectorize expf over the state dimension (AVX2/AVX-512).
    probe = subprocess.run([compiler, "-march=native", "-E", "-x", "c", "-"], input=b"", capture_output=True)
    return ["-march=native"] if probe.returncode == 0 else []


def build_c_library(name: str, sources: list[str]) -> Path:
    """``sources`` (files in avssm/ops/csrc) compiled into ``<cache>/<name>_<key>.so`` with the system C compiler
    (``$CC``, cc or gcc), once: the key covers every file in csrc, the flags, the compiler and this CPU, so an
    edited source or another machine builds anew and an unchanged one is reused. RuntimeError without a
    compiler, CalledProcessError when the compiler fails."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler found")
    digest = hashlib.sha256(" ".join(C_FLAGS + sources).encode() + compiler.encode() + _cpu_id().encode())
    for file in sorted(CSRC_DIR.glob("*.[ch]")):
        digest.update(file.read_bytes())
    target = cache_dir() / f"{name}_{digest.hexdigest()[:16]}.so"
    if not target.exists():  # the flags follow from compiler and CPU; probing them costs a compiler run
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            out = Path(tmp) / target.name
            subprocess.run([compiler, *C_FLAGS, *_arch_flags(compiler), *(str(CSRC_DIR / s) for s in sources),
                            "-o", str(out), "-lm"], check=True, capture_output=True)
            os.replace(out, target)  # atomic: concurrent builders never see a partial file
    return target


_ort_op_lock = threading.Lock()
_ort_op_path: Path | None = None
_ort_op_tried = False


def ort_scan_op_library() -> Path | None:
    """avssm's SelectiveScan op for ONNX Runtime on the CPU (ops/csrc/ort_selective_scan.c with the CPU scan
    kernel), built on first use, for ``SessionOptions.register_custom_ops_library``. None where no C compiler
    is found, it does not compile, or ``AVSSM_CPU_KERNEL=0`` turns the compiled CPU kernel off."""
    global _ort_op_path, _ort_op_tried
    if os.environ.get("AVSSM_CPU_KERNEL", "1") == "0":
        return None
    with _ort_op_lock:
        if not _ort_op_tried:
            _ort_op_tried = True
            try:
                _ort_op_path = build_c_library("ort_selective_scan", ["selective_scan_cpu.c", "ort_selective_scan.c"])
            except (OSError, RuntimeError, subprocess.CalledProcessError):
                _ort_op_path = None
        return _ort_op_path


# ------------------------------------------------------------------------------ plugins/ (CMake)

def build_plugins(build_dir: str | Path | None = None, tensorrt_root: str | None = None,
                  architectures: str | None = None, jobs: int | None = None, log=print) -> Path:
    """Configure and build plugins/ with CMake; returns the build directory."""
    if not (SOURCE_DIR / "CMakeLists.txt").is_file():
        raise AvssmError(f"plugins sources not found at {SOURCE_DIR} (build from a source checkout)")
    for tool in ("cmake", "nvcc"):
        if shutil.which(tool) is None:
            raise AvssmError(f"build-plugins: '{tool}' not found on PATH (install CMake and the CUDA toolkit)")
    build = Path(build_dir) if build_dir else SOURCE_DIR / "build"
    configure = ["cmake", "-S", str(SOURCE_DIR), "-B", str(build)]
    if tensorrt_root:
        configure.append(f"-DTensorRT_ROOT={tensorrt_root}")
    if architectures:
        configure.append(f"-DCMAKE_CUDA_ARCHITECTURES={architectures}")
    for cmd in (configure, ["cmake", "--build", str(build), "-j", str(jobs or os.cpu_count() or 2)]):
        log(" ".join(cmd))
        result = subprocess.run(cmd, capture_output=True, text=True)
        for line in result.stdout.splitlines():
            if line.startswith("-- avssm") or "error" in line.lower():
                log(line)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise AvssmError(f"build-plugins: '{' '.join(cmd[:2])}' failed: " + " | ".join(tail))
    return build


def kernel_library_loads(path: Path) -> bool:
    """The library loads and has this version's C API (an older build lacks functions or has another version)."""
    try:
        load_kernel_library(path)
        return True
    except (OSError, AttributeError):
        return False
