"""The fused scans against the copies they replace: VMamba's four directions as one operation on the map
(avssm.ops.cross_scan) and Vim's two directions in one call without flips (avssm.ops.bidirectional_scan).

1. Bytes moved per VMamba layer, computed from the shapes at the given input size (fp32): the copies path
   writes the traversal copy (B, 4, D, L), the per-direction outputs (B, 4, D, L) and the merge's flipped and
   summed intermediates, and reads them back; the fused path reads u (once per direction, counted four times),
   delta, B and C and writes y once.
   (VMamba only.)
2. PyTorch on this CPU, whole models, the fused form against the copies (flips) form, interleaved in one run
   (median of --repeats each): time new / old.

    python benchmarks/bench_cross_scan.py [--models vmamba_nano_det vmamba_tiny_det vim_tiny_det] [--sizes 384x640 1080x1920]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from avssm.models import create_model
from avssm.sizes import parse_size

F32 = 4


def layer_bytes(d: int, n: int, length: int) -> tuple[int, int]:
    """(copies, fused) bytes moved by one SS2D scan path of inner width d, state n, map of `length` positions."""
    dl, nl = d * length, n * length
    copies = (dl + 4 * dl          # cross-scan: read the map, write the (4, D, L) copy
              + 4 * dl + 4 * dl + 8 * nl + 4 * dl   # the scan: read copy, delta, B, C; write 4 outputs
              + 4 * dl + 2 * dl + 2 * dl            # merge: read 4 outputs, write 2 flipped, read them back
              + 2 * dl + 2 * dl + dl)               # rows and columns written, read, summed into y
    fused = 4 * dl + 4 * dl + 8 * nl + dl           # u (per direction), delta, B, C read; y written
    return copies * F32, fused * F32


def scan_layers(model, size) -> list[tuple[int, int, int]]:
    """(d_inner, d_state, H * W) of every SS2D scan for one input of `size` (the scans skipped: shapes only)."""
    calls = []
    blocks = [m for m in model.modules() if type(m).__name__ == "SS2D"]
    for m in blocks:
        def scan(x, m=m):
            calls.append((m.d_inner, m.d_state, x.shape[2] * x.shape[3]))
            return x.new_zeros(x.shape, dtype=torch.float32)
        m.scan = scan
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, *size))
    finally:
        for m in blocks:
            del m.scan
    return calls


def forward_time(model, x) -> float:
    t0 = time.perf_counter()
    with torch.inference_mode():
        model(x)
    return time.perf_counter() - t0


def copies_forms(model) -> list[tuple[object, str, object]]:
    """(module, method name, the copies form of that method) of every fused block of the model."""
    forms = []
    for m in model.modules():
        if type(m).__name__ == "SS2D":
            forms.append((m, "scan", m._scan_copies))
        elif type(m).__name__ == "BiMambaMixer":
            forms.append((m, "forward", m._forward_flips))
    return forms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["vmamba_nano_det", "vmamba_tiny_det"])
    ap.add_argument("--sizes", nargs="+", default=["384x640", "1080x1920"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    for name in args.models:
        model = create_model(name).eval()
        forms = copies_forms(model)
        for spec in args.sizes:
            size = parse_size(spec, "--sizes")
            layers = scan_layers(model, size)
            copies = sum(layer_bytes(*layer)[0] for layer in layers)
            fused = sum(layer_bytes(*layer)[1] for layer in layers)
            first = layers[0] if layers else None
            x = torch.randn(1, 3, *size)
            forward_time(model, x)  # warm-up (fused)
            new, old = [], []
            for _ in range(args.repeats):  # interleaved
                new.append(forward_time(model, x))
                for module, method, copies_form in forms:
                    setattr(module, method, copies_form)
                old.append(forward_time(model, x))
                for module, method, _ in forms:
                    delattr(module, method)  # back to the class's method (the fused form)
            rows.append({"model": name, "size": list(size), "scan_layers": len(layers),
                         "first_layer_mib": {"copies": layer_bytes(*first)[0] / 2**20,
                                             "fused": layer_bytes(*first)[1] / 2**20} if first else None,
                         "all_layers_mib": {"copies": copies / 2**20, "fused": fused / 2**20},
                         "bytes_ratio": copies / fused if fused else None, "torch_new_s": statistics.median(new),
                         "torch_old_s": statistics.median(old),
                         "torch_new_over_old": statistics.median(new) / statistics.median(old)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'model':<18}{'size':>11}{'layer 1 MiB copies/fused':>26}{'bytes ratio':>13}{'torch new s':>13}"
          f"{'old s':>8}{'new/old':>9}")
    for r in rows:
        first = r["first_layer_mib"]
        layer = f"{first['copies']:>15.0f} / {first['fused']:<8.0f}" if first else f"{'-':>26}"
        ratio = f"{r['bytes_ratio']:>13.2f}" if r["bytes_ratio"] else f"{'-':>13}"
        print(f"{r['model']:<18}{'x'.join(map(str, r['size'])):>11}{layer}{ratio}"
              f"{r['torch_new_s']:>13.3f}{r['torch_old_s']:>8.3f}{r['torch_new_over_old']:>9.2f}")


if __name__ == "__main__":
    main()
