"""One layer's scan path on a GPU: the copies (PyTorch's traversal copies, the CUDA scan, PyTorch's merge) against
the fused call (avssm_fused_scan_fwd, as the TensorRT plugin runs a version 2 node), in one run, with CUDA events.

    python benchmarks/bench_fused_layer.py [--repeats 20]

Rows: VMamba-T stage 1 at 1920x1080 (the map padded to 1088 x 1920, /4: 272 x 480, d_inner 192, N 1) and Vim-S at
1920x1080 (68 x 120 patches and the class token, d_inner 768 per direction, N 16), fp32 and fp16. Prints each
path's median time, the ratio copies / fused (the issue's target: >= 2) and the largest relative difference of
the outputs. Needs a CUDA GPU and libavssm_kernels.so (avssm build-plugins).
"""
from __future__ import annotations

import argparse
import json
import torch

from avssm.ops import cuda_kernel, selective_scan
from avssm.ops.bidirectional_scan import _through_flips
from avssm.ops.cross_scan import _through_copies
from bench_scan_gpu import cuda_time  # benchmarks/: the median of CUDA-event timings, in seconds

ROWS = [  # (name, layout, batch, dim, (H, W) or L, N)
    ("VMamba-T stage 1, 1080p", "cross-2d", 1, 192, (272, 480), 1),
    ("Vim-S, 1080p", "bidirectional", 1, 768, 8161, 16),
]


def inputs(layout, batch, dim, extent, n, dtype):
    g = torch.Generator(device="cuda").manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g, device="cuda")

    k = 4 if layout == "cross-2d" else 2
    places = extent if layout == "cross-2d" else (extent,)
    u = randn(batch, dim, *places) if layout == "cross-2d" else randn(batch, 2 * dim, *places)
    delta = 0.5 * (randn(batch, 4, dim, *places) if layout == "cross-2d" else randn(batch, 2 * dim, *places))
    t = dict(u=u, delta=delta, B=randn(batch, k, n, *places), C=randn(batch, k, n, *places))
    t = {name: v.to(dtype) for name, v in t.items()}
    t.update(A=-torch.exp(randn(k * dim, n)), D=randn(k * dim), delta_bias=0.5 * randn(k * dim))
    t["z"] = None if layout == "cross-2d" else randn(batch, dim, extent).to(dtype)
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not cuda_kernel.available():
        raise SystemExit("needs a CUDA GPU and libavssm_kernels.so (avssm build-plugins)")
    rows = []
    for name, layout, batch, dim, extent, n in ROWS:
        for dtype in (torch.float32, torch.float16):
            t = inputs(layout, batch, dim, extent, n, dtype)
            common = dict(D=t["D"], delta_bias=t["delta_bias"], delta_softplus=True)
            args5 = (t["u"], t["delta"], t["A"], t["B"], t["C"])
            if layout == "cross-2d":
                def copies():
                    return _through_copies(selective_scan, *args5, t["D"], t["delta_bias"], True)
            else:
                def copies():
                    return _through_flips(selective_scan, *args5, t["D"], t["z"], t["delta_bias"], True)

            def fused():
                return cuda_kernel.fused_scan_cuda(layout, *args5, z=t["z"], **common)

            with torch.inference_mode():
                diff = (copies().float() - fused().float()).abs().max() / copies().float().abs().max()
                t_copies, t_fused = 1000 * cuda_time(copies, args.repeats), 1000 * cuda_time(fused, args.repeats)
            rows.append({"row": name, "dtype": str(dtype).removeprefix("torch."), "copies_ms": t_copies,
                         "fused_ms": t_fused, "copies_over_fused": t_copies / t_fused, "max_rel_diff": float(diff)})
            if not args.json:
                r = rows[-1]
                print(f"{name:<26} {r['dtype']:<8} copies {t_copies:8.3f} ms  fused {t_fused:8.3f} ms  "
                      f"copies/fused {r['copies_over_fused']:.2f} (target >= 2)  max rel diff {r['max_rel_diff']:.1e}",
                      flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
