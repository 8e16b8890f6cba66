"""Latency of the tiny detectors at 384x640 and 1080x1920 (default scan path for the device).

    python benchmarks/bench_detectors.py [--device cpu|cuda] [--fp16] [--models ...] [--repeats 3] [--json]

On the CPU freed memory is kept for reuse (avssm.malloc), as avssm's torch backend runs.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from avssm.malloc import keep_freed_memory
from avssm.models import create_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["vmamba_tiny_det", "vim_tiny_det"])
    ap.add_argument("--sizes", nargs="+", default=["384x640", "1080x1920"], help="HxW")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fp16", action="store_true", help="autocast to fp16 (CUDA)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cuda = args.device.startswith("cuda")
    if not cuda:
        keep_freed_memory()

    def sync():
        if cuda:
            torch.cuda.synchronize()

    rows = []
    for name in args.models:
        model = create_model(name).eval().to(args.device)
        params = sum(p.numel() for p in model.parameters())
        for size in args.sizes:
            h, w = (int(v) for v in size.split("x"))
            x = torch.randn(1, 3, h, w, device=args.device)
            with torch.inference_mode(), torch.autocast(args.device.split(":")[0], torch.float16, enabled=args.fp16):
                model(x)  # warm-up
                times = []
                for _ in range(args.repeats):
                    sync()
                    t0 = time.perf_counter()
                    model(x)
                    sync()
                    times.append(time.perf_counter() - t0)
            times.sort()
            rows.append({"model": name, "params_m": params / 1e6, "height": h, "width": w,
                         "median_ms": times[len(times) // 2] * 1000, "min_ms": times[0] * 1000,
                         "device": torch.cuda.get_device_name() if cuda else f"cpu ({torch.get_num_threads()} threads)",
                         "fp16": args.fp16})
            if not args.json:
                r = rows[-1]
                print(f"{name:<16} {r['params_m']:6.2f}M  {w}x{h}: {r['median_ms']:8.0f} ms median "
                      f"(min {r['min_ms']:.0f}) on {r['device']}{' fp16' if args.fp16 else ''}", flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
