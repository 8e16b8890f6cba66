"""Native code that can be checked without a GPU: the kernel library and plugin compile (nvcc), the
C API struct matches its ctypes mirror, the libraries load and export what loaders look for."""
import ctypes
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from avssm.native import (AUTOREGISTER_LIB, KERNEL_LIB, PLUGIN_LIB, SCAN_API_VERSION, FusedScanParams, ScanParams,
                          build_plugins, check_plugin_library, load_kernel_library, scan_plan, workspace_size)
from conftest import compile_on_cpu, cuda_include

HAVE_TOOLS = shutil.which("nvcc") is not None and shutil.which("cmake") is not None
needs_tools = pytest.mark.skipif(not HAVE_TOOLS, reason="needs nvcc and cmake")
TRT_ROOT = os.environ.get("TensorRT_ROOT")


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
    for name in ("avssm_selective_scan_fwd", "avssm_selective_scan_workspace_size", "avssm_selective_scan_api_version",
                 "avssm_fused_scan_fwd", "avssm_fused_scan_workspace_size"):
        assert name in symbols
    sass = subprocess.run(["cuobjdump", "--list-elf", str(lib)], capture_output=True, text=True).stdout \
        if shutil.which("cuobjdump") else "sm_87 sm_90"
    assert "sm_87" in sass and "sm_90" in sass
    assert ctypes.CDLL(str(lib)).avssm_selective_scan_api_version() == SCAN_API_VERSION  # loads without a GPU
    if not TRT_ROOT:
        assert any("skipping avssm_trt_plugin" in line for line in lines)


@needs_tools
@pytest.mark.skipif(not TRT_ROOT, reason="set TensorRT_ROOT to TensorRT's headers to compile-check the plugin")
def test_plugin_library_exports_loader_entry_points(build):
    out, _ = build
    plugin = out / "libavssm_trt_plugin.so"
    assert check_plugin_library(plugin) is None
    assert exported_functions(plugin) == {"getCreators", "getPluginCreators", "setLoggerFinder", "avssmInitPlugins",
                                          "avssmRegisterPlugins"}
    # Self-contained: a copy embedded in a version-compatible engine has no libavssm_kernels.so or libcudart beside it.
    needed, _ = dynamic_section(plugin)
    assert not [n for n in needed if "avssm" in n or "cudart" in n or "nvinfer" in n], needed
    # The self-registering library: exports nothing, links no TensorRT, finds the plugin beside itself.
    autoregister = out / AUTOREGISTER_LIB
    assert exported_functions(autoregister) == set()
    needed, runpath = dynamic_section(autoregister)
    assert PLUGIN_LIB in needed and not [n for n in needed if "nvinfer" in n or "cudart" in n], needed
    assert runpath == "$ORIGIN"
    env = {**os.environ, "AVSSM_PLUGIN_LIB": str(plugin)}
    r = subprocess.run([sys.executable, "-m", "avssm.cli", "doctor", "--json", "-"], capture_output=True, text=True,
                       timeout=300, env=env)
    assert json.loads(r.stdout)["trt_plugin_library"]["autoregister"] == str(autoregister)


@needs_tools
@pytest.mark.skipif(not TRT_ROOT, reason="set TensorRT_ROOT to TensorRT's headers to build avssm_infer")
def test_infer_library_installs_for_find_package_and_reports_in_one_line(build, tmp_path):
    """avssm_infer builds (TensorRT's headers only: it finds libnvinfer when a detector opens), exports its C API
    alone, installs with a find_package(avssm_infer) config; a C program built against the install (the
    sample avssm/csrc/samples/detect.c) gets one line and exit 1 for each fault before TensorRT runs."""
    import json

    out, _ = build
    library = out / "libavssm_infer.so"
    functions = exported_functions(library)
    assert "avssm_detector_open" in functions and all(f.startswith("avssm_") for f in functions)
    needed, runpath = dynamic_section(library)
    assert PLUGIN_LIB in needed and not [n for n in needed if "nvinfer" in n or "cudart" in n], needed
    assert runpath == "$ORIGIN"
    prefix = tmp_path / "prefix"
    subprocess.run(["cmake", "--install", str(out), "--prefix", str(prefix)], check=True, capture_output=True)
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    (consumer / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.18)\nproject(consumer C)\nfind_package(avssm_infer REQUIRED)\n"
        "add_executable(detect ${SAMPLE})\ntarget_link_libraries(detect PRIVATE avssm::avssm_infer)\n"
        "install(TARGETS detect DESTINATION bin)\n")
    sample = os.path.join(os.path.dirname(__file__), "..", "avssm", "csrc", "samples", "detect.c")
    subprocess.run(["cmake", "-S", str(consumer), "-B", str(consumer / "build"), f"-DCMAKE_PREFIX_PATH={prefix}",
                    f"-DSAMPLE={os.path.abspath(sample)}"], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(consumer / "build")], check=True, capture_output=True)
    frame = tmp_path / "frame.bgr"
    frame.write_bytes(bytes(2 * 2 * 3))
    engine = tmp_path / "det.engine"

    def detect(program=consumer / "build" / "detect"):
        r = subprocess.run([str(program), str(engine), str(frame), "2", "2"], capture_output=True,
                           text=True, timeout=60, env={**os.environ, "LD_LIBRARY_PATH": ""})
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
        return r.stderr

    assert "no such file" in detect()
    # The consumer installed (as colcon installs a ROS 2 component) runs from a clean environment too: it failed
    # with "libavssm_infer.so: cannot open shared object file" (no RUNPATH to avssm's install folder).
    subprocess.run(["cmake", "--install", str(consumer / "build"), "--prefix", str(tmp_path / "consumer-prefix")],
                   check=True, capture_output=True)
    assert "no such file" in detect(tmp_path / "consumer-prefix" / "bin" / "detect")
    engine.write_bytes(b"plan")
    assert f"no {engine}.json beside it (build engines with avssm build)" in detect()
    meta = {"model": "m", "task": "detection", "scan_op": "plugin", "precision": "fp32", "class_names": ["car"],
            "input": {"mean": [0, 0, 0], "std": [1, 1, 1]}}
    (tmp_path / "det.engine.json").write_text(json.dumps({"tensorrt": "10.3.0", "gpu": "Orin", "avssm": meta}))
    assert f"TensorRT's libnvinfer.so.{tensorrt_major()} is not found" in detect()

    # The C++ sample (avssm run's loop over avssm_infer, OpenCV frames), where OpenCV's C++ package is.
    run_video = out / "avssm_run_video"
    if run_video.is_file():
        clip = os.path.join(os.path.dirname(__file__), "..", "avssm", "data", "sample_clip.mp4")
        r = subprocess.run([str(run_video), str(engine), clip, "--warmup", "x"], capture_output=True, text=True)
        assert r.returncode == 2 and "--warmup needs a number" in r.stderr
        r = subprocess.run([str(run_video), str(engine), clip], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and r.stderr.strip().endswith("or add its lib folder to LD_LIBRARY_PATH"), r.stderr


@pytest.mark.skipif(not TRT_ROOT, reason="set TensorRT_ROOT to TensorRT's headers to compile-check avssm_infer")
@pytest.mark.skipif(shutil.which("c++") is None or cuda_include() is None, reason="needs a C++ compiler and CUDA headers")
def test_infer_library_compiles_without_warnings():
    """avssm_infer's TensorRT-facing code and the C++ sample, -Wall -Wextra -Werror against TensorRT's headers."""
    csrc = os.path.join(os.path.dirname(__file__), "..", "avssm", "csrc")
    sources = [f"{csrc}/infer/{name}" for name in ("detector.cpp", "c_api.cpp", "metadata.cpp", "json.cpp",
                                                   "postprocess.cpp", "preprocess.cpp", "report.cpp")]
    r = subprocess.run(["c++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-fsyntax-only",
                        "-DAVSSM_INFER_WITH_TENSORRT", f"-I{csrc}/include", "-isystem", tensorrt_include(), "-isystem",
                        cuda_include(), *sources], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def exported_functions(library) -> set[str]:
    exported = subprocess.run(["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True).stdout
    return {line.split()[-1] for line in exported.splitlines() if " T " in line}


def dynamic_section(library) -> tuple[list[str], str]:
    """(NEEDED libraries, RUNPATH) of a shared library."""
    lines = subprocess.run(["readelf", "-d", str(library)], capture_output=True, text=True).stdout.splitlines()
    needed = [line.split("[")[1].rstrip("]") for line in lines if "(NEEDED)" in line]
    runpath = next((line.split("[")[1].rstrip("]") for line in lines if "(RUNPATH)" in line), "")
    return needed, runpath


def tensorrt_include():
    """TensorRT's include directory under $TensorRT_ROOT (the suffixes avssm/csrc/CMakeLists.txt searches)."""
    for suffix in ("include", "include/x86_64-linux-gnu", "include/aarch64-linux-gnu", ""):
        path = os.path.join(TRT_ROOT, suffix)
        if os.path.isfile(os.path.join(path, "NvInferRuntime.h")):
            return path
    pytest.fail(f"no NvInferRuntime.h under TensorRT_ROOT={TRT_ROOT}")


@needs_tools
@pytest.mark.skipif(not TRT_ROOT, reason="set TensorRT_ROOT to TensorRT's headers to check the plugin's API")
@pytest.mark.skipif(shutil.which("c++") is None or cuda_include() is None, reason="needs a C++ compiler and CUDA headers")
def test_plugin_api_without_an_engine(build, tmp_path):
    """tests/native/plugin_api_check.cpp: the creator, fields, serialization, formats, shape checks and
    workspace of the built plugin, called as a TensorRT process calls them (no TensorRT runtime, no GPU)."""
    out, _ = build
    exe = tmp_path / "plugin_api_check"
    src = os.path.join(os.path.dirname(__file__), "native", "plugin_api_check.cpp")
    subprocess.run(["c++", "-std=c++17", "-isystem", tensorrt_include(), "-isystem", cuda_include(), src, "-ldl",
                    "-o", str(exe)], check=True)
    r = subprocess.run([str(exe), str(out / PLUGIN_LIB), str(out / KERNEL_LIB)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith("0 failed") and int(r.stdout.split()[-4]) >= 40, r.stdout
    # Before a logger finder is set (a program that linked the library), errors still reach stderr.
    assert "createPlugin: no fields given" in r.stderr


@pytest.fixture(scope="module")
def loader_check(build, tmp_path_factory):
    """tests/native/plugin_loader_check.cpp built as the loading program and as the recording libnvinfer."""
    if not TRT_ROOT:
        pytest.skip("set TensorRT_ROOT to TensorRT's headers to check the plugin's loaders")
    if shutil.which("c++") is None or cuda_include() is None:
        pytest.skip("needs a C++ compiler and CUDA headers")
    out, _ = build
    work = tmp_path_factory.mktemp("loader-check")
    src = os.path.join(os.path.dirname(__file__), "native", "plugin_loader_check.cpp")
    flags = ["c++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-Wno-deprecated-declarations",
             "-isystem", tensorrt_include(), "-isystem", cuda_include()]
    major = tensorrt_major()
    nvinfer = work / f"libnvinfer.so.{major}"
    subprocess.run([*flags, "-DRECORDING_NVINFER", "-shared", "-fPIC", src, "-o", str(nvinfer)], check=True)
    unversioned = work / "unversioned" / f"libnvinfer.so.{major}"  # a TensorRT without getInferLibVersion
    unversioned.parent.mkdir()
    subprocess.run([*flags, "-DRECORDING_NVINFER", "-DNO_VERSION", "-shared", "-fPIC", src, "-o", str(unversioned)],
                   check=True)
    subprocess.run([*flags, src, "-ldl", "-pthread", "-o", str(work / "plugin_loader_check")], check=True)

    def run(mode, env=None, library=nvinfer):
        return subprocess.run([str(work / "plugin_loader_check"), mode, str(library), str(out / PLUGIN_LIB),
                               str(out / AUTOREGISTER_LIB)], capture_output=True, text=True, timeout=120,
                              env={**os.environ, **(env or {})})

    run.nvinfer, run.unversioned = nvinfer, unversioned

    return run, major


def tensorrt_major() -> int:
    text = open(os.path.join(tensorrt_include(), "NvInferVersion.h")).read()
    for name in ("TRT_MAJOR_ENTERPRISE", "NV_TENSORRT_MAJOR"):
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "#define" and parts[1] == name and parts[2].isdigit():
                return int(parts[2])
    pytest.fail("no TensorRT major version in NvInferVersion.h")


@needs_tools
@pytest.mark.parametrize("mode", ["global", "local", "plugin-first", "init-after"])
def test_plugin_registers_once_under_every_loader(loader_check, mode):
    """trtexec --staticPlugins, DeepStream and Triton (TensorRT in the global scope), ONNX Runtime's TensorRT
    provider (TensorRT loaded RTLD_LOCAL) dlopen libavssm_trt_autoregister.so and find SelectiveScan registered;
    with loadLibrary or avssmInitPlugins in the same process it is still registered exactly once."""
    run, _ = loader_check
    r = run(mode)
    assert r.returncode == 0 and r.stdout.strip().endswith(" 0 failed"), r.stdout + r.stderr
    assert r.stderr == ""


@needs_tools
def test_autoregister_without_tensorrt_says_so(loader_check):
    run, major = loader_check
    r = run("absent")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"no TensorRT is loaded in this process and libnvinfer.so.{major} is not on the library path" in r.stderr
    assert len(r.stderr.splitlines()) == 1


@needs_tools
@pytest.mark.parametrize("mode", ["concurrent", "reload", "preload"])
def test_plugin_registers_under_the_hosts_that_broke_it(loader_check, mode):
    """Two detectors opened at once (a registry that refuses duplicates: one of the two failed in 20 of 20 rounds);
    DeepStream's stop and start (dlclose unmapped the creators TensorRT still held); Triton's LD_PRELOAD and ctypes
    before `import tensorrt` (no TensorRT at load time: nothing was registered)."""
    run, _ = loader_check
    env = {"LD_LIBRARY_PATH": str(run.nvinfer.parent)} if mode == "preload" else None
    r = run(mode, env)
    assert r.returncode == 0 and r.stdout.strip().endswith(" 0 failed"), r.stdout + r.stderr


@needs_tools
def test_a_tensorrt_that_does_not_say_its_version_is_not_called(loader_check):
    # Registration went on and called a registry whose layout it did not know.
    run, major = loader_check
    r = run("no-version", library=run.unversioned)
    assert r.returncode == 0 and r.stdout.strip().endswith(" 0 failed"), r.stdout + r.stderr
    assert "has no getInferLibVersion, so its plugin registry's layout is unknown" in r.stderr


@needs_tools
def test_registry_of_another_tensorrt_major_is_not_called(loader_check):
    # IPluginRegistry's virtual functions differ between majors (TensorRT 11 dropped the V1 ones): calling one
    # built against other headers would call the wrong function.
    run, major = loader_check
    r = run("other-major", {"AVSSM_TEST_TENSORRT_VERSION": str((major + 1) * 10000 + 200)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"built against TensorRT {major} headers and this process runs TensorRT {major + 1}.2" in r.stderr


def compile_plugin_gpu_check(out_dir) -> str:
    """tests/native/plugin_gpu_check.cpp, linked with the static CUDA runtime (benchmarks/gpu_session.sh builds it
    the same way)."""
    exe = os.path.join(out_dir, "plugin_gpu_check")
    lib = os.path.join(os.path.dirname(cuda_include()), "lib64")
    src = os.path.join(os.path.dirname(__file__), "native", "plugin_gpu_check.cpp")
    subprocess.run(["c++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-Wno-deprecated-declarations",
                    "-isystem", tensorrt_include(), "-isystem", cuda_include(), src, f"-L{lib}", "-lcudart_static",
                    "-ldl", "-lpthread", "-lrt", "-o", exe], check=True)
    return exe


@needs_tools
@pytest.mark.skipif(not TRT_ROOT, reason="set TensorRT_ROOT to TensorRT's headers to drive the plugin")
@pytest.mark.skipif(shutil.which("c++") is None or cuda_include() is None, reason="needs a C++ compiler and CUDA")
def test_plugin_through_every_call_tensorrt_makes(build, tmp_path):
    """The build-time and run-time IPluginV3 calls in TensorRT's order (fields as the parser passes them, shapes
    through an IExprBuilder, format negotiation, configure, workspace, serialize, re-create, attach, shape
    change) on VMamba and Vim nodes, fp32 and fp16. On a GPU enqueue runs too and y is compared with the
    reference (benchmarks/gpu_session.sh); without one it is not run."""
    out, _ = build
    exe = compile_plugin_gpu_check(tmp_path)
    r = subprocess.run([exe, str(out / PLUGIN_LIB)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and " 0 failed" in r.stdout, r.stdout + r.stderr
    compared = [line for line in r.stdout.splitlines() if "max |y - ref|" in line]
    assert len(compared) == (COMPARED_CASES if "GPU:" in r.stdout else 0), r.stdout


@needs_tools
@pytest.mark.skipif(not TRT_ROOT, reason="set TensorRT_ROOT to TensorRT's headers to drive the plugin")
@pytest.mark.skipif(shutil.which("c++") is None or cuda_include() is None, reason="needs a C++ compiler and CUDA")
def test_plugin_enqueue_hands_the_scan_the_right_tensors(tmp_path):
    """The plugin's own source built over tests/native/host_scan.cpp (host memory: the plain scan in loops, the
    fused layouts' traversal and merge kernels from their CUDA source on the CPU) so that enqueue runs without a
    GPU: the outputs match the reference for every case, version 1 and 2 nodes, so enqueue passes each input as
    the scan's parameter it is (swapping D and delta_bias in the version 1 enqueue fails its 16 comparisons)."""
    exe = compile_plugin_gpu_check(tmp_path)
    csrc = os.path.join(os.path.dirname(__file__), "..", "avssm", "csrc")
    host_plugin = str(tmp_path / "libavssm_trt_plugin_host.so")
    subprocess.run(["c++", "-std=c++20", "-O2", "-shared", "-fPIC", "-pthread", "-Wall", "-Wextra", "-Werror",
                    "-Wno-unknown-pragmas", f"-I{csrc}/include", "-isystem", tensorrt_include(), "-isystem",
                    cuda_include(), f"{csrc}/trt/selectiveScanPlugin.cpp",
                    os.path.join(os.path.dirname(__file__), "native", "host_scan.cpp"), "-ldl", "-o", host_plugin],
                   check=True)
    r = subprocess.run([exe, host_plugin, "--host-memory"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith(" 0 failed"), r.stdout + r.stderr
    assert len([line for line in r.stdout.splitlines() if "max |y - ref|" in line]) == COMPARED_CASES


# plugin_gpu_check's comparisons: 7 nodes (4 version 1, 3 version 2), fp32 and fp16, at two lengths each.
COMPARED_CASES = 28


@needs_tools
def test_scan_plan_stays_within_its_workspace(build):
    """The split plan is host code, so it runs here: whatever the GPU, a call never uses more workspace
    than it is given (a TensorRT engine sizes its workspace on the GPU it is built on, then may run on a
    larger one), and the workspace for a profile's largest shape covers every smaller one."""
    out, _ = build
    lib = load_kernel_library(out / KERNEL_LIB)

    def size(*shape_and_sms):
        return workspace_size(*shape_and_sms, lib=lib)

    split = 0
    for batch, dim, length, dstate, groups in [(1, 768, 130_560, 16, 1), (1, 192, 129_600, 16, 4),
                                               (8, 3072, 130_560, 16, 1), (1, 48, 129_600, 1, 4),
                                               (1, 768, 130_560, 1, 1), (2, 384, 8100, 16, 2), (1, 64, 100_003, 64, 1),
                                               (1, 16, 63, 16, 1), (4, 96, 2048, 1, 1)]:
        row_bytes = batch * dim * dstate * 8
        for sms in (1, 16, 108, 132, 148):
            given = size(batch, dim, length, dstate, sms)
            for smaller in [(batch // 2, dim, length), (batch, dim // 2, length), (batch, dim, length // 2)]:
                assert size(*smaller, dstate, sms) <= given
            for run_sms in (sms, 2 * sms, 4 * sms):
                lanes, segments = scan_plan(batch, dim, length, dstate, groups, run_sms, given, lib)
                assert lanes in ((1, 2) if dstate == 16 else (1,))
                assert segments == 1 or segments * row_bytes <= given, (batch, dim, length, dstate, sms, run_sms)
                split += segments > 1
                for forced in (1, 2, 4, 8):  # a layout asked for (to measure it) stays within the workspace too
                    lanes, segments = scan_plan(batch, dim, length, dstate, groups, run_sms, given, lib, forced)
                    assert lanes == (forced if dstate == 16 else 1)
                    assert segments == 1 or segments * row_bytes <= given, (batch, dim, length, dstate, sms, forced)
            assert scan_plan(batch, dim, length, dstate, groups, sms, 0, lib)[1] == 1  # no workspace: no split
    assert split > 0  # batch-1 sequences do get split when the workspace allows
    # VMamba-T stage 1 at 1080p, N = 16 on an H100: split (the first pass runs); fewer segments in a quarter of the workspace.
    full = size(1, 768, 130_560, 16, 132)
    planned = scan_plan(1, 768, 130_560, 16, 1, 132, full, lib)
    segments = planned[1]
    _, fewer = scan_plan(1, 768, 130_560, 16, 1, 132, full // 4, lib)
    assert segments > fewer > 1 and fewer * 768 * 16 * 8 <= full // 4
    with pytest.raises(ValueError, match="invalid shape"):  # dim % groups != 0
        scan_plan(1, 768, 130_560, 16, 5, 132, full, lib)
    # More lanes per channel means more warps, so fewer segments for the same GPU; 3 lanes is no layout.
    by_lanes = [scan_plan(1, 3072, 130_560, 16, 1, 132, size(1, 3072, 130_560, 16, 132), lib, k)[1] for k in (1, 4, 8)]
    assert by_lanes[0] > by_lanes[1] > by_lanes[2] >= 1, by_lanes
    with pytest.raises(ValueError, match="lanes_per_channel 3"):
        scan_plan(1, 768, 130_560, 16, 1, 132, full, lib, 3)
    # The token layout never splits, so it needs no workspace; it is an N = 16 layout, so N = 1 ignores it.
    assert scan_plan(1, 768, 130_560, 16, 1, 132, full, lib, layout="tokens") == (1, 1)
    assert scan_plan(1, 768, 130_560, 1, 1, 132, full, lib, layout="tokens") == \
        scan_plan(1, 768, 130_560, 1, 1, 132, full, lib)
    assert scan_plan(1, 768, 130_560, 16, 1, 132, full, lib, layout="channel") == planned
    with pytest.raises(ValueError, match="lanes_per_channel 2 with layout tokens"):  # lanes are a channel-layout knob
        scan_plan(1, 768, 130_560, 16, 1, 132, full, lib, 2, layout="tokens")


@pytest.fixture(scope="module")
def scan_on_cpu(tmp_path_factory):
    """tests/native/scan_on_cpu.cpp: the N = 16 kernels' own source, run on the CPU."""
    return compile_on_cpu(tmp_path_factory, "scan_on_cpu")


def test_cpu_emulator_exposes_shared_memory_races(tmp_path_factory):
    """The emulator releases threads from __syncthreads and __syncwarp in an adversarial order, so a kernel that
    rewrites a shared slot before every warp (or lane) has read it is wrong on every run, not by chance; with a
    second buffer the same kernels are right (tests/native/emulator_races.cpp). Without this, the scan kernels'
    CPU runs below would catch such races only sometimes."""
    exe = compile_on_cpu(tmp_path_factory, "emulator_races")
    for _ in range(3):
        r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split("\n")[:4] == ["block 1 wrong", "block 2 right", "warp 1 wrong", "warp 2 right"]


@pytest.mark.parametrize("layout,batch,dim,length,groups,dtype,softplus,given,tol", [
    # Channel layout, every lanes-per-channel count, whole and split into 3 segments (the first pass, then the
    # carried-in state); 5 channels per group leave part-filled warps; 300 tokens end in a part-filled tile.
    *[(f"channel:{lanes}:{segments}", 1, 10, 300, 2, torch.float32, True, "D z delta_bias", 1e-5)
      for lanes in (1, 2, 4, 8) for segments in (1, 3)],
    # 32 channels per group: every warp full, so whole tiles take the load path without bounds checks.
    *[(f"channel:{lanes}:2", 1, 64, 200, 2, torch.float16, True, "D z delta_bias", 5e-3) for lanes in (1, 2, 4, 8)],
    ("channel:4:2", 2, 6, 100, 1, torch.float16, True, "z", 5e-3),
    ("channel:8:1", 1, 5, 45, 1, torch.bfloat16, False, "D", 5e-3),
    # Token layout: whole 16-byte-loaded chunks and a tail; z without D with groups; rows not 16-byte aligned;
    # shorter than one thread's 32 tokens; one token.
    ("tokens", 1, 2, 2 * 4096 + 40, 1, torch.float32, True, "D z delta_bias", 1e-5),
    ("tokens", 2, 4, 4096 + 24, 2, torch.float16, True, "z", 5e-3),
    ("tokens", 1, 4, 4096 + 37, 4, torch.bfloat16, False, "D", 5e-3),
    ("tokens", 2, 2, 7, 1, torch.float16, True, "D delta_bias", 5e-3),
    ("tokens", 1, 1, 1, 1, torch.float32, False, "", 1e-5),
])
def test_n16_kernels_on_the_cpu(scan_on_cpu, tmp_path, layout, batch, dim, length, groups, dtype, softplus, given,
                                tol):
    """The N = 16 kernels against the reference, run from their CUDA source on the CPU: the channel layout
    (avssm/csrc/cuda/channel_scan_kernel.cuh; 4 and 8 lanes per channel have not run on a GPU yet)
    and the token layout (token_scan_kernel.cuh: its loads, its block-wide scan across threads, warps and
    chunks, its gate and skip). tests/test_gpu.py runs both on a GPU."""
    from avssm.ops.selective_scan import selective_scan_ref
    from conftest import make_inputs, rel_err

    u, delta, A, B, C, D, z, delta_bias = make_inputs(batch, dim, length, 16, groups, dtype=dtype)
    if not softplus:
        delta = delta.abs()  # a negative delta grows the state without bound over thousands of tokens
    optional = {"D": D, "z": z, "delta_bias": delta_bias}
    optional = {name: (t if name in given.split() else None) for name, t in optional.items()}
    for name, t in dict(u=u, delta=delta, A=A, B=B, C=C, **optional).items():
        if t is not None:  # raw bytes in the tensor's dtype (numpy has no bfloat16)
            (tmp_path / f"{name}.bin").write_bytes(t.contiguous().view(torch.uint8).numpy().tobytes())
    code = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}[dtype]
    r = subprocess.run([str(scan_on_cpu), str(tmp_path), layout, str(batch), str(dim), str(length), str(groups),
                        str(code), str(int(softplus))], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    y = torch.frombuffer(bytearray((tmp_path / "y.bin").read_bytes()), dtype=dtype).view(batch, dim, length)
    z32 = optional["z"].float() if optional["z"] is not None else None
    ref = selective_scan_ref(u.float(), delta.float(), A, B.float(), C.float(), optional["D"], z32,
                             optional["delta_bias"], softplus)
    assert rel_err(y.float(), ref) < tol


@pytest.fixture(scope="module")
def fused_on_cpu(tmp_path_factory):
    """tests/native/fused_on_cpu.cpp over host_scan.cpp: avssm_fused_scan_fwd's steps, its traversal and merge
    kernels run from their CUDA source (avssm/csrc/cuda/fused_scan.cuh)."""
    return compile_on_cpu(tmp_path_factory, "fused_on_cpu", native=("host_scan.cpp",))


@pytest.mark.parametrize("layout,batch,dim,height,width,nstate,dtype,given,tol", [
    # cross-2d: an odd map, one row, one column, N 1 / 4 / 16, fp16 and bf16; with and without D and delta_bias
    (1, 2, 3, 5, 7, 1, torch.float32, "D delta_bias", 1e-5),
    (1, 1, 4, 1, 37, 4, torch.float32, "delta_bias", 1e-5),
    (1, 1, 2, 23, 1, 16, torch.float32, "D delta_bias", 1e-5),
    (1, 1, 8, 17, 29, 1, torch.float16, "D delta_bias", 5e-3),
    (1, 2, 4, 9, 6, 16, torch.bfloat16, "D", 2e-2),
    # bidirectional: with and without the gate; one token
    (2, 2, 3, 1, 203, 16, torch.float32, "D z delta_bias", 1e-5),
    (2, 1, 4, 1, 70, 1, torch.float16, "D delta_bias", 5e-3),
    (2, 1, 2, 1, 1, 4, torch.float32, "z", 1e-5),
])
def test_fused_layouts_traversal_and_merge_kernels_on_the_cpu(fused_on_cpu, tmp_path, layout, batch, dim, height,
                                                              width, nstate, dtype, given, tol):
    """avssm_fused_scan_fwd's copies and merge (fused_plan and the CUDA kernels of fused_scan.cuh, run on the CPU,
    with the plain scan in loops between them) against the definitions in avssm.ops.cross_scan and
    avssm.ops.bidirectional_scan. The same plan runs on a GPU in fused_scan.cu (tests/test_gpu.py)."""
    from avssm.ops.bidirectional_scan import bidirectional_selective_scan_ref
    from avssm.ops.cross_scan import cross_selective_scan_ref
    from conftest import rel_err

    torch.manual_seed(0)
    k, L = (4, height * width) if layout == 1 else (2, width)
    if layout == 1:
        shapes = dict(u=(batch, dim, height, width), delta=(batch, 4, dim, height, width),
                      B=(batch, 4, nstate, height, width), z=None)
    else:
        shapes = dict(u=(batch, 2 * dim, L), delta=(batch, 2 * dim, L), B=(batch, 2, nstate, L), z=(batch, dim, L))
    t = {name: torch.randn(shape).to(dtype) for name, shape in shapes.items() if shape is not None}
    t["C"] = torch.randn(shapes["B"]).to(dtype)
    t["delta"] = (t["delta"].float() * 0.5).to(dtype)
    t["A"] = -torch.exp(torch.randn(k * dim, nstate))
    t["D"], t["delta_bias"] = torch.randn(k * dim), torch.randn(k * dim) * 0.5
    optional = {name: (t.get(name) if name in given.split() else None) for name in ("D", "z", "delta_bias")}
    for name, value in {**{n: t[n] for n in ("u", "delta", "A", "B", "C")}, **optional}.items():
        if value is not None:  # raw bytes in the tensor's dtype (numpy has no bfloat16)
            (tmp_path / f"{name}.bin").write_bytes(value.contiguous().view(torch.uint8).numpy().tobytes())
    code = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}[dtype]
    r = subprocess.run([str(fused_on_cpu), str(tmp_path), str(layout), str(batch), str(dim), str(height), str(width),
                        str(nstate), str(code), "1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out_shape = (batch, dim, height, width) if layout == 1 else (batch, dim, L)
    y = torch.frombuffer(bytearray((tmp_path / "y.bin").read_bytes()), dtype=dtype).view(out_shape)
    args = [t[n].float() for n in ("u", "delta", "A", "B", "C")]
    if layout == 1:
        ref = cross_selective_scan_ref(*args, D=optional["D"], delta_bias=optional["delta_bias"], delta_softplus=True)
    else:
        z = optional["z"].float() if optional["z"] is not None else None
        ref = bidirectional_selective_scan_ref(*args, D=optional["D"], z=z, delta_bias=optional["delta_bias"],
                                               delta_softplus=True)
    assert rel_err(y.float(), ref) < tol


def test_check_plugin_library_rejects_other_libraries():
    import ctypes.util

    problem = check_plugin_library(ctypes.util.find_library("m") or "libm.so.6")
    assert problem and "not an avssm TensorRT plugin" in problem


@pytest.mark.skipif(shutil.which("cc") is None or cuda_include() is None, reason="needs a C compiler and CUDA headers")
@pytest.mark.parametrize("struct,c_name", [(ScanParams, "avssm_scan_params"),
                                           (FusedScanParams, "avssm_fused_scan_params")])
def test_ctypes_struct_matches_c_header(tmp_path, struct, c_name):
    fields = [name for name, _ in struct._fields_]
    src = tmp_path / "layout.c"
    src.write_text('#include <stdio.h>\n#include <stddef.h>\n#include "avssm/selective_scan.h"\nint main(void){\n'
                   + "".join(f'printf("%zu\\n", offsetof({c_name}, {f}));\n' for f in fields)
                   + f'printf("%zu\\n", sizeof({c_name}));\nreturn 0;}}\n')
    exe = tmp_path / "layout"
    include = os.path.join(os.path.dirname(__file__), "..", "avssm", "csrc", "include")
    subprocess.run(["cc", "-I", include, "-I", cuda_include(), str(src), "-o", str(exe)], check=True)
    got = [int(v) for v in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()]
    expected = [getattr(struct, f).offset for f in fields] + [ctypes.sizeof(struct)]
    assert got == expected


def test_doctor_reports_without_gpu():
    r = subprocess.run([sys.executable, "-m", "avssm.cli", "doctor", "--json", "-"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    import json

    report = json.loads(r.stdout)
    assert {"torch", "tensorrt", "onnxruntime", "kernel_library", "trt_plugin_library", "cpu_scan_kernel"} <= set(report)



def test_native_libraries_are_loaded_once_and_a_failure_is_none():
    from avssm.native.libraries import load_once

    calls = []

    @load_once
    def good():
        calls.append(1)
        return "lib"

    @load_once
    def bad():
        calls.append(2)
        raise OSError("cannot open shared object file")

    assert [good(), good(), bad(), bad()] == ["lib", "lib", None, None] and calls == [1, 2]


@pytest.fixture(scope="module")
def cmake_3_22(tmp_path_factory):
    """JetPack 6's CMake (3.22.1), from PyPI."""
    target = tmp_path_factory.mktemp("cmake-3.22.1")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--only-binary=:all:", "--target",
                        str(target), "cmake==3.22.1"], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        pytest.skip(f"cmake==3.22.1 could not be installed from a registry: {r.stderr.strip().splitlines()[-1:]}")
    return target / "cmake" / "data" / "bin"


@pytest.mark.skipif(not os.path.isfile("/usr/local/cuda/bin/nvcc"), reason="needs the CUDA toolkit in /usr/local/cuda")
def test_builds_with_jetpack_6s_cmake_and_nvcc_off_path(cmake_3_22, tmp_path):
    # JetPack 6.1/6.2: CMake 3.22.1, and nvcc in /usr/local/cuda/bin without being on PATH.
    env = {**os.environ, "PATH": f"{cmake_3_22}:/usr/bin:/bin", "CUDA_HOME": "/usr/local/cuda"}
    env.pop("CUDACXX", None)
    code = ("import sys; from avssm.native import build_plugins\n"
            "build_plugins(sys.argv[1], architectures='87', log=lambda line: print(line, flush=True))\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "build")], capture_output=True, text=True, env=env,
                       timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "nvcc: /usr/local/cuda/bin/nvcc (from CUDA_HOME)" in r.stdout
    assert "cmake version 3.22.1" in subprocess.run([str(cmake_3_22 / "cmake"), "--version"], capture_output=True,
                                                    text=True).stdout
    assert (tmp_path / "build" / KERNEL_LIB).is_file()


def test_nvcc_is_looked_for_in_order(tmp_path):
    env = {**os.environ, "PATH": "/usr/bin:/bin", "CUDA_HOME": str(tmp_path), "CUDACXX": str(tmp_path / "nvcc")}
    env.pop("CUDA_PATH", None)
    code = "from avssm.native import settings\nfound = settings.nvcc()\nprint(found[1] if found else 'none')\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    # CUDACXX and CUDA_HOME point at nothing; /usr/local/cuda/bin is the last place looked at
    expected = "/usr/local/cuda/bin" if os.path.isfile("/usr/local/cuda/bin/nvcc") else "none"
    assert r.stdout.strip() == expected


@pytest.mark.skipif(shutil.which("cmake") is None or not os.path.isfile("/usr/local/cuda/bin/nvcc"),
                    reason="needs cmake and the CUDA toolkit in /usr/local/cuda")
def test_the_plain_cmake_recipe_finds_nvcc_off_path(tmp_path):
    # JetPack 6 has nvcc in /usr/local/cuda/bin, not on PATH: `cmake -S avssm/csrc -B build` stopped at
    # CMAKE_CUDA_COMPILER-NOTFOUND unless CUDACXX was set; `avssm build-plugins` found it.
    cmake_dir = os.path.dirname(shutil.which("cmake"))
    path = os.pathsep.join(dict.fromkeys([cmake_dir, "/usr/bin", "/bin"]))
    env = {"HOME": os.environ.get("HOME", "/tmp"), "PATH": path}
    assert shutil.which("nvcc", path=env["PATH"]) is None, "nvcc must not be on this PATH for the check"
    import avssm

    source = os.path.join(os.path.dirname(avssm.__file__), "csrc")
    r = subprocess.run(["cmake", "-S", source, "-B", str(tmp_path / "build")], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]
    assert "Check for working CUDA compiler: /usr/local/cuda/bin/nvcc" in r.stdout
