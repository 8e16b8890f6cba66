"""CPU selective-scan benchmark: the default fast path against a mamba_ssm-style reference.

    python benchmarks/bench_scan_cpu.py [--dim 768] [--length 4096] [--state 16] [--json]

The reference is written the way mamba_ssm's ``selective_scan_ref`` is: deltaA and deltaB*u formed
for the whole sequence (batch, dim, L, N), then a Python loop over L with dim and N vectorized.
Each path runs in a fresh subprocess so its peak extra memory (peak RSS minus RSS with the inputs
allocated) is its own. Targets: fast >= 5x the reference; no (dim, L, N) buffer in the fast path.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F


def mamba_style_reference(u, delta, A, B, C, D, delta_bias):
    delta = F.softplus(delta + delta_bias[:, None])
    delta_A = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    delta_B_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B[:, 0], u)
    x = A.new_zeros((u.shape[0], u.shape[1], A.shape[1]))
    ys = []
    for i in range(u.shape[2]):
        x = delta_A[:, :, i] * x + delta_B_u[:, :, i]
        ys.append(torch.einsum("bdn,bn->bd", x, C[:, 0, :, i]))
    return torch.stack(ys, dim=2) + u * D[:, None]


def make_inputs(dim: int, length: int, state: int):
    g = torch.Generator().manual_seed(0)
    u = torch.randn(1, dim, length, generator=g)
    delta = torch.randn(1, dim, length, generator=g) * 0.5
    A = -torch.exp(torch.randn(dim, state, generator=g))
    B = torch.randn(1, 1, state, length, generator=g)
    C = torch.randn(1, 1, state, length, generator=g)
    D = torch.randn(dim, generator=g)
    bias = torch.randn(dim, generator=g)
    return u, delta, A, B, C, D, bias


def path_fn(path: str, u, delta, A, B, C, D, bias):
    from avssm.ops import selective_scan, selective_scan_chunked

    return {
        "fast": lambda: selective_scan(u, delta, A, B, C, D=D, delta_bias=bias, delta_softplus=True),
        "chunked": lambda: selective_scan_chunked(u, delta, A, B, C, D=D, delta_bias=bias, delta_softplus=True),
        "reference": lambda: mamba_style_reference(u, delta, A, B, C, D, bias),
    }[path]


def run_one(path: str, dim: int, length: int, state: int, repeats: int) -> dict:
    with torch.inference_mode():
        # One small call loads libraries and builds the CPU kernel outside the measurement.
        path_fn(path, *make_inputs(8, 64, state))()
        fn = path_fn(path, *make_inputs(dim, length, state))
        base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # ru_maxrss only grows: take it first
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times.sort()
    return {"path": path, "median_s": times[len(times) // 2], "min_s": times[0],
            "peak_extra_mib": max(0, peak_kb - base_kb) / 1024, "checksum": float(out.double().sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--length", type=int, default=4096)
    ap.add_argument("--state", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.dim, args.length, args.state, args.repeats)))
        return
    results = {}
    for path in ("fast", "chunked", "reference"):
        cmd = [sys.executable, __file__, "--child", path, "--dim", str(args.dim), "--length", str(args.length),
               "--state", str(args.state), "--repeats", str(args.repeats if path != "reference" else 2)]
        results[path] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    ref = results["reference"]["median_s"]
    full_buffer_mib = args.dim * args.length * args.state * 4 / 2**20
    summary = {
        "shape": {"batch": 1, "dim": args.dim, "L": args.length, "N": args.state},
        "threads": torch.get_num_threads(),
        "results": results,
        "speedup_fast_vs_reference": ref / results["fast"]["median_s"],
        "speedup_chunked_vs_reference": ref / results["chunked"]["median_s"],
        "dim_L_N_buffer_mib": full_buffer_mib,
        "agree": abs(results["fast"]["checksum"] - results["reference"]["checksum"])
        <= 1e-4 * abs(results["reference"]["checksum"]) + 1e-2,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"selective scan, CPU, batch 1, dim {args.dim}, L {args.length}, N {args.state}, {summary['threads']} threads")
    for path, r in results.items():
        print(f"  {path:<10} {r['median_s'] * 1000:9.1f} ms   peak extra memory {r['peak_extra_mib']:7.1f} MiB")
    print(f"  fast vs reference: {summary['speedup_fast_vs_reference']:.1f}x (target >= 5x); "
          f"chunked PyTorch vs reference: {summary['speedup_chunked_vs_reference']:.1f}x")
    print(f"  one (dim, L, N) fp32 buffer would be {full_buffer_mib:.0f} MiB; results agree: {summary['agree']}")


if __name__ == "__main__":
    main()
