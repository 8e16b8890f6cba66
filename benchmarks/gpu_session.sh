#!/usr/bin/env bash
# Every GPU check of the project in one command, for a short lease on a GPU machine:
#
#     bash benchmarks/gpu_session.sh [OUT_DIR]        (default: $OUT if set, else ./gpu_session)
#
# 1. builds libavssm_kernels.so for this GPU's architecture only (a minute instead of five), and the TensorRT plugin
#    when TensorRT_ROOT names TensorRT's headers (a GPU machine has no TensorRT: carry the headers there, e.g. in
#    build/trt-headers, and run `TensorRT_ROOT=build/trt-headers bash benchmarks/gpu_session.sh`);
# 1b. with the plugin: drives it through every IPluginV3 call TensorRT makes at build and run time, enqueue on
#    this GPU included, and compares y with the reference for VMamba and Vim nodes, fp32 and fp16
#    (tests/native/plugin_gpu_check.cpp; seconds);
# 2. runs the GPU tests (tests/test_gpu.py, and tests/test_selective_scan.py on the GPU);
# 3. times the N = 16 layouts the plan does not choose yet (bench_scan_gpu.py --layouts on the large rows, of
#    which b1 d768 L130560 is VMamba-v0-Tiny's first stage at 1080x1920 padded to 1088: 4 directions x 192
#    channels over 272 x 480 tokens; and on one direction of Vim-Tiny there: d_inner 384 over 68 x 120 patches
#    and the class token);
# 4. times one layer's scan path, the copies against the fused call (benchmarks/bench_fused_layer.py: VMamba-T
#    stage 1 and Vim-S at 1080p; seconds);
# 5. runs the kernel benchmark (benchmarks/bench_scan_gpu.py; --quick when QUICK=1).
# Each step's output goes to OUT_DIR (gpu.txt, build.log, plugin.log, tests.log, layouts.log, fused.log, bench.log) as
# it runs, line by line,
# so a run cut short still leaves what it measured. Uses the machine's python3 as it is (PyTorch with
# CUDA, numpy, onnx, onnxruntime, typer, rich, opencv): nothing is installed. Exit status: the first
# step that failed.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu_session}}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0
step() {  # step NAME LOG COMMAND...: run, log, remember the first failure
    local name=$1 log=$2; shift 2
    local t0=$SECONDS
    "$@" > "$out/$log" 2>&1
    local rc=$?
    echo "$name: exit $rc in $((SECONDS - t0)) s ($out/$log)"
    [ $rc -ne 0 ] && [ $status -eq 0 ] && status=$rc
    return $rc
}

arch=$(python3 -c "import torch; assert torch.cuda.is_available(); m, n = torch.cuda.get_device_capability(); print(f'{m}{n}')" 2>/dev/null) || {
    echo "no CUDA GPU visible to PyTorch: nothing to check here"; exit 1; }
{ nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv
  python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(), 'sm_$arch')"
} > "$out/gpu.txt" 2>&1
cat "$out/gpu.txt"

trt_args=()
[ -n "${TensorRT_ROOT:-}" ] && trt_args=(--tensorrt-root "$TensorRT_ROOT")
step build build.log python3 -m avssm.cli build-plugins --arch "$arch" --build-dir build/native "${trt_args[@]}" \
    || exit $status
export AVSSM_KERNEL_LIB="$PWD/build/native/libavssm_kernels.so"
if [ -f build/native/libavssm_trt_plugin.so ]; then
    # nvcc compiles the host program with its own CUDA include and library paths (the static CUDA runtime).
    nvcc=$(python3 -c "from avssm.native import settings; print(settings.nvcc()[0])")
    trt_include=$(dirname "$(find "$TensorRT_ROOT" -name NvInferRuntime.h -print -quit)")
    step plugin plugin.log bash -c "'$nvcc' -std=c++17 -O2 -Xcompiler -Wno-deprecated-declarations \
        -isystem '$trt_include' tests/native/plugin_gpu_check.cpp -ldl -o build/native/plugin_gpu_check \
        && build/native/plugin_gpu_check build/native/libavssm_trt_plugin.so"
    tail -n 1 "$out/plugin.log"
else
    echo "plugin: not built (set TensorRT_ROOT to TensorRT's headers to build and drive it)"
fi
step tests tests.log python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_selective_scan.py
tail -n 3 "$out/tests.log"
step layouts layouts.log python3 benchmarks/bench_scan_gpu.py --kernel-only --layouts \
    --shape 1x768x130560x16 --shape 1x3072x130560x16 --shape 8x768x130560x16 --shape 8x3072x130560x16 \
    --shape 1x384x8161x16
step fused fused.log python3 benchmarks/bench_fused_layer.py
cat "$out/fused.log"
bench_args=()
[ "${QUICK:-0}" = 1 ] && bench_args+=(--quick)
step bench bench.log python3 benchmarks/bench_scan_gpu.py "${bench_args[@]}"
exit $status
