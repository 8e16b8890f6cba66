"""GPU selective-scan benchmark: the CUDA kernel against its roofline and the PyTorch path.

    python benchmarks/bench_scan_gpu.py [--quick] [--shape BxDxLxN ...] [--layouts] [--json]

Needs a CUDA GPU and libavssm_kernels.so (avssm build-plugins). For each shape (batch 1-8, dim 768-3072,
L 4k-130k, N 1 and 16, fp16 and fp32; D and delta_bias, no z, one group):
* kernel time (CUDA events, median), achieved bandwidth = minimal bytes / time, where minimal bytes =
  u, delta, B, C read once + y written once;
* roofline = max(minimal bytes / peak bandwidth, exponentials (batch * dim * L * N) / exp throughput),
  both measured here: a device-to-device copy for the bandwidth, a jiterator kernel doing 256 exp2 per
  element for the exponential rate; efficiency = roofline / time (target >= 0.7 on large sizes);
* speed-up over the chunked PyTorch path on the same shape (target >= 10x);
* the plan the kernel ran (lanes per channel, segments per sequence: avssm.native.scan_plan);
* with --layouts, each N = 16 row again in every layout: the channel layout with 1, 2, 4 and 8 lanes per
  channel forced, each split as the plan splits it and not split at all, and the token layout (never split;
  the measurements the plan's choice of layout needs: avssm/csrc/README.md);
then the tiny detectors' forward at 1080x1920 with and without the kernel.
"""
from __future__ import annotations

import argparse
import json
import os

import torch

from avssm import native
from avssm.models import create_model
from avssm.ops import cuda_kernel, selective_scan_chunked


def cuda_time(fn, iters: int) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return sorted(times)[len(times) // 2]


def peak_bandwidth() -> float:
    x = torch.empty(2**30 // 4, dtype=torch.float32, device="cuda")
    y = torch.empty_like(x)
    t = cuda_time(lambda: y.copy_(x), 20)
    return 2 * x.numel() * 4 / t  # bytes read + written per second


def exp_rate() -> float:
    fn = torch.cuda.jiterator._create_jit_fn(
        "template <typename T> T exp_chain(T x) { T y = x; for (int i = 0; i < 256; ++i) y = exp2f(y * -0.5f); return y; }")
    x = torch.rand(2**26, device="cuda")
    t = cuda_time(lambda: fn(x), 10)
    return 256 * x.numel() / t


def parse_shape(text: str) -> tuple[int, int, int, int]:
    try:
        batch, dim, length, dstate = (int(v) for v in text.split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape '{text}': expected BxDxLxN, e.g. 1x768x130560x16") from None
    return batch, dim, length, dstate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--kernel-only", action="store_true", help="skip the PyTorch path and the detectors")
    ap.add_argument("--layouts", action="store_true",
                    help="also time N=16 rows in every layout: the channel layout with 1/2/4/8 lanes per channel, "
                         "split as planned and unsplit, and the token layout")
    ap.add_argument("--shape", action="append", default=[], type=parse_shape, metavar="BxDxLxN",
                    help="only this shape (batch x dim x length x dstate, e.g. 1x768x130560x16); repeatable")
    args = ap.parse_args()
    if not cuda_kernel.available():
        raise SystemExit("needs a CUDA GPU and libavssm_kernels.so (avssm build-plugins)")
    bw, exps = peak_bandwidth(), exp_rate()
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    rows = []
    shapes = [(b, d, L, n) for b in (1, 8) for d in (768, 3072) for L in (4096, 130_560) for n in (1, 16)]
    if args.quick:
        shapes = [(1, 768, 4096, 16), (1, 384, 130_560, 1), (8, 768, 4096, 16), (1, 3072, 130_560, 16)]
    if args.shape:
        shapes = args.shape
    for dtype in (torch.float16, torch.float32):
        for b, d, L, n in shapes:
            if b * d * L * 2 * dtype.itemsize > 24 * 2**30:
                continue
            g = torch.Generator(device="cuda").manual_seed(0)
            u = torch.randn(b, d, L, device="cuda", dtype=dtype, generator=g)
            delta = torch.randn(b, d, L, device="cuda", dtype=dtype, generator=g)
            A = -torch.rand(d, n, device="cuda") - 0.5
            B = torch.randn(b, 1, n, L, device="cuda", dtype=dtype, generator=g)
            C = torch.randn(b, 1, n, L, device="cuda", dtype=dtype, generator=g)
            D, bias = torch.randn(d, device="cuda"), torch.randn(d, device="cuda")

            def time_kernel(**layout) -> float:  # the plan's layout, or one forced by --layouts
                return cuda_time(lambda: cuda_kernel.selective_scan_cuda(u, delta, A, B, C, D=D, delta_bias=bias,
                                                                         delta_softplus=True, **layout), 20)

            kernel = time_kernel()
            torch_path = float("nan")
            if not args.kernel_only:
                try:
                    with torch.no_grad():
                        torch_path = cuda_time(lambda: selective_scan_chunked(u, delta, A, B, C, D=D, delta_bias=bias,
                                                                              delta_softplus=True), 3)
                except torch.OutOfMemoryError:  # the PyTorch path's chunk intermediates; the kernel needs none
                    torch.cuda.empty_cache()
            full_workspace = native.workspace_size(b, d, L, n, sms)
            lanes, segments = native.scan_plan(b, d, L, n, 1, sms, full_workspace)
            nbytes = (3 * b * d * L + 2 * b * n * L) * dtype.itemsize
            roofline = max(nbytes / bw, b * d * L * n / exps)
            rows.append({"dtype": str(dtype).split(".")[-1], "batch": b, "dim": d, "L": L, "N": n,
                         "kernel_ms": kernel * 1e3, "GBps": nbytes / kernel / 1e9, "roofline_ms": roofline * 1e3,
                         "efficiency": roofline / kernel, "pytorch_ms": torch_path * 1e3, "speedup": torch_path / kernel,
                         "lanes_per_channel": lanes, "segments": segments})
            r = rows[-1]
            r["layouts"] = []
            for forced in (1, 2, 4, 8) if args.layouts and n == 16 else ():
                planned = native.scan_plan(b, d, L, n, 1, sms, full_workspace, lanes_per_channel=forced)[1]
                for workspace in (None, torch.empty(1, dtype=torch.uint8, device="cuda")):  # one byte: no split
                    t = time_kernel(workspace=workspace, lanes_per_channel=forced)
                    r["layouts"].append({"layout": "channel", "lanes_per_channel": forced,
                                         "segments": planned if workspace is None else 1, "kernel_ms": t * 1e3,
                                         "efficiency": roofline / t})
            if args.layouts and n == 16:
                t = time_kernel(layout="tokens")
                r["layouts"].append({"layout": "tokens", "lanes_per_channel": 1, "segments": 1, "kernel_ms": t * 1e3,
                                     "efficiency": roofline / t})
            if not args.json:
                print(f"{r['dtype']:<8} b{b} d{d} L{L} N{n}: kernel {r['kernel_ms']:8.3f} ms {r['GBps']:7.0f} GB/s, roofline "
                      f"{r['roofline_ms']:8.3f} ms (efficiency {r['efficiency']:.2f}), PyTorch {r['pytorch_ms']:8.1f} ms "
                      f"(x{r['speedup']:.0f}), plan {lanes} lane(s)/channel x {segments} segment(s)", flush=True)
                for lay in r["layouts"]:
                    lay["what"] = ("token layout, 32 tokens/thread, 1 segment   " if lay["layout"] == "tokens" else
                                   f"{lay['lanes_per_channel']} lane(s)/channel x {lay['segments']:2d} segment(s)")
                    print(f"    {lay['what']}: {lay['kernel_ms']:8.3f} ms (efficiency {lay['efficiency']:.2f})", flush=True)
                if r["layouts"]:  # what the plan should choose for this row
                    best = min(r["layouts"], key=lambda lay: lay["kernel_ms"])
                    print(f"    fastest: {best['what'].strip()}, {r['kernel_ms'] / best['kernel_ms']:.2f}x the plan's "
                          f"speed", flush=True)
    detectors = {}
    for name in () if args.kernel_only else ("vmamba_tiny_det", "vim_tiny_det"):
        model = create_model(name).eval().cuda()
        x = torch.randn(1, 3, 1080, 1920, device="cuda")
        with torch.no_grad():
            with_kernel = cuda_time(lambda: model(x), 5)
            os.environ["AVSSM_CUDA_KERNEL"] = "0"
            without = cuda_time(lambda: model(x), 3)
            os.environ.pop("AVSSM_CUDA_KERNEL")
        detectors[name] = {"with_kernel_ms": with_kernel * 1e3, "pytorch_scan_ms": without * 1e3}
        if not args.json:
            print(f"{name} 1080x1920 fp32: {with_kernel * 1e3:.1f} ms with the kernel, {without * 1e3:.1f} ms with the "
                  f"PyTorch scan", flush=True)
    if args.json:
        print(json.dumps({"device": torch.cuda.get_device_name(), "peak_bandwidth_GBps": bw / 1e9,
                          "exp_per_s": exps, "scans": rows, "detectors": detectors}, indent=2))
    else:
        print(f"{torch.cuda.get_device_name()}: copy bandwidth {bw / 1e9:.0f} GB/s, exp2 {exps / 1e12:.2f} T/s")


if __name__ == "__main__":
    main()
