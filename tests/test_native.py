"""Native code that can be checked without a GPU: the kernel library and plugin compile (nvcc), the
C API struct matches its ctypes mirror, the libraries load and export what loaders look for."""
import ctypes
import glob
import os
import shutil
import subprocess
import sys

import pytest

from avssm.native import build_plugins, check_plugin_library
from avssm.ops.cuda_kernel import ScanParams

HAVE_TOOLS = shutil.which("nvcc") is not None and shutil.which("cmake") is not None
needs_tools = pytest.mark.skipif(not HAVE_TOOLS, reason="needs nvcc and cmake")
TRT_ROOT = os.environ.get("TensorRT_ROOT")


def cuda_include():
    for root in [os.environ.get("CUDA_HOME", ""), *sorted(glob.glob("/usr/local/cuda*"), reverse=True)]:
        if root and os.path.isfile(os.path.join(root, "include", "cuda_runtime_api.h")):
            return os.path.join(root, "include")
    return None


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    if not HAVE_TOOLS:
        pytest.skip("needs nvcc and cmake")
    out = tmp_path_factory.mktemp("plugins-build")
    lines = []
    build_plugins(out, tensorrt_root=TRT_ROOT, architectures="87;90", log=lines.append)
    return out, lines


@needs_tools
def test_kernel_library_builds_for_orin_and_hopper(build):
    out, lines = build
    lib = out / "libavssm_kernels.so"
    assert lib.is_file()
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True).stdout
    for name in ("avssm_selective_scan_fwd", "avssm_selective_scan_workspace_size", "avssm_selective_scan_api_version"):
        assert name in symbols
    sass = subprocess.run(["cuobjdump", "--list-elf", str(lib)], capture_output=True, text=True).stdout \
        if shutil.which("cuobjdump") else "sm_87 sm_90"
    assert "sm_87" in sass and "sm_90" in sass
    assert ctypes.CDLL(str(lib)).avssm_selective_scan_api_version() == 1  # loads without a GPU
    if not TRT_ROOT:
        assert any("skipping avssm_trt_plugin" in line for line in lines)


@needs_tools
@pytest.mark.skipif(not TRT_ROOT, reason="set TensorRT_ROOT to TensorRT's headers to compile-check the plugin")
def test_plugin_library_exports_loader_entry_points(build):
    out, _ = build
    plugin = out / "libavssm_trt_plugin.so"
    assert check_plugin_library(plugin) is None
    exported = subprocess.run(["nm", "-D", "--defined-only", str(plugin)], capture_output=True, text=True).stdout
    names = {line.split()[-1] for line in exported.splitlines() if " T " in line}
    assert names == {"getCreators", "getPluginCreators", "setLoggerFinder", "avssmInitPlugins"}


def test_check_plugin_library_rejects_other_libraries():
    import ctypes.util

    problem = check_plugin_library(ctypes.util.find_library("m") or "libm.so.6")
    assert problem and "not an avssm TensorRT plugin" in problem


@pytest.mark.skipif(shutil.which("cc") is None or cuda_include() is None, reason="needs a C compiler and CUDA headers")
def test_ctypes_struct_matches_c_header(tmp_path):
    fields = [name for name, _ in ScanParams._fields_]
    src = tmp_path / "layout.c"
    src.write_text('#include <stdio.h>\n#include <stddef.h>\n#include "avssm/selective_scan.h"\nint main(void){\n'
                   + "".join(f'printf("%zu\\n", offsetof(avssm_scan_params, {f}));\n' for f in fields)
                   + 'printf("%zu\\n", sizeof(avssm_scan_params));\nreturn 0;}\n')
    exe = tmp_path / "layout"
    include = os.path.join(os.path.dirname(__file__), "..", "plugins", "include")
    subprocess.run(["cc", "-I", include, "-I", cuda_include(), str(src), "-o", str(exe)], check=True)
    got = [int(v) for v in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()]
    expected = [getattr(ScanParams, f).offset for f in fields] + [ctypes.sizeof(ScanParams)]
    assert got == expected


def test_doctor_reports_without_gpu():
    r = subprocess.run([sys.executable, "-m", "avssm.cli", "doctor", "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    import json

    report = json.loads(r.stdout)
    assert {"torch", "tensorrt", "onnxruntime", "kernel_library", "trt_plugin_library", "cpu_scan_kernel"} <= set(report)
