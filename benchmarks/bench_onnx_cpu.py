"""ONNX Runtime CPU (portable form) against PyTorch eager CPU on the same model and input.

    python benchmarks/bench_onnx_cpu.py [--models vim_tiny_det vmamba_tiny_det] [--sizes 384x640 1080x1920]
                                        [--repeats 3] [--json]

Each model is exported in the portable form at each size (static shape), verified once, then both are
timed (median of --repeats after one warm-up) in the same process with the same thread count.
Target: ONNX Runtime latency <= 1.0x PyTorch's. PyTorch runs as avssm's torch backend does on the CPU
(compiled scan kernel, freed memory kept for reuse: avssm.malloc); ONNX Runtime with avssm's session options.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from avssm.export import export_onnx
from avssm.malloc import keep_freed_memory
from avssm.models import create_model
from avssm.runtime.backends import session_options


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["vim_tiny_det", "vmamba_tiny_det"])
    ap.add_argument("--sizes", nargs="+", default=["384x640", "1080x1920"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    threads = torch.get_num_threads()
    keep_freed_memory()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            model = create_model(name).eval()
            model.model_name = name
            for size in args.sizes:
                h, w = (int(v) for v in size.split("x"))
                path = Path(tmp) / f"{name}_{h}x{w}.onnx"
                result = export_onnx(model, path, input_size=(h, w), scan_op="portable")
                so = session_options()
                so.intra_op_num_threads = threads
                sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
                x = np.random.default_rng(0).standard_normal((1, 3, h, w)).astype(np.float32)
                xt = torch.from_numpy(x)
                with torch.inference_mode():
                    t_torch = median_time(lambda: model(xt), args.repeats)
                    expected = model(xt)
                t_ort = median_time(lambda: sess.run(None, {"images": x}), args.repeats)
                got = sess.run(None, {"images": x})
                err = max(float(np.abs(g - e.numpy()).max() / max(1e-12, float(np.abs(e.numpy()).max())))
                          for g, e in zip(got, expected))
                rows.append({"model": name, "height": h, "width": w, "nodes": result.nodes,
                             "torch_ms": t_torch * 1000, "ort_ms": t_ort * 1000, "ratio_ort_over_torch": t_ort / t_torch,
                             "max_rel_err": err, "threads": threads})
                if not args.json:
                    r = rows[-1]
                    print(f"{name:<16} {w}x{h}: ONNX Runtime {r['ort_ms']:8.0f} ms, PyTorch {r['torch_ms']:8.0f} ms, "
                          f"ratio {r['ratio_ort_over_torch']:.2f} (target <= 1.0), max rel err {err:.1e}, "
                          f"{result.nodes} nodes, {threads} threads", flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
