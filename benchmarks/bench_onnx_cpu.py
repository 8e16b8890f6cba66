"""ONNX Runtime CPU against PyTorch eager CPU on the same model and input.

    python benchmarks/bench_onnx_cpu.py [--models vim_tiny_det vmamba_tiny_det] [--sizes 384x640 1080x1920]
                                        [--repeats 3] [--json]

Each model is exported at each size (static shape) in both forms: the portable form (the scan as standard ops)
and the plugin form, whose SelectiveScan nodes ONNX Runtime runs with avssm's CPU op (as `avssm run` does). Each
ONNX Runtime session and PyTorch are timed (median of --repeats after one warm-up) in the same process with the
same thread count, and the outputs compared with PyTorch's once. Target: ONNX Runtime latency <= 1.0x PyTorch's.
PyTorch runs as avssm's torch backend does on the CPU (compiled scan kernel, freed memory kept for reuse:
avssm.malloc); ONNX Runtime with avssm's session options.
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

from avssm import native
from avssm.export import export_onnx
from avssm.malloc import keep_freed_memory
from avssm.models import create_model
from avssm.graph.onnx_io import session_options


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
    if native.ort_scan_op_library() is None:
        raise SystemExit("avssm's ONNX Runtime op did not build (needs a C compiler; AVSSM_CPU_KERNEL=0 turns it off)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            model = create_model(name).eval()
            model.model_name = name
            for size in args.sizes:
                h, w = (int(v) for v in size.split("x"))
                x = np.random.default_rng(0).standard_normal((1, 3, h, w)).astype(np.float32)
                xt = torch.from_numpy(x)
                with torch.inference_mode():
                    t_torch = median_time(lambda: model(xt), args.repeats)
                    expected = [e.numpy() for e in model(xt)]
                row = {"model": name, "height": h, "width": w, "torch_ms": t_torch * 1000, "threads": threads}
                for form in ("portable", "plugin"):
                    path = Path(tmp) / f"{name}_{h}x{w}_{form}.onnx"
                    result = export_onnx(model, path, input_size=(h, w), scan_op=form)
                    so = session_options()
                    so.intra_op_num_threads = threads
                    if form == "plugin":
                        so.register_custom_ops_library(str(native.ort_scan_op_library()))
                    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
                    t_ort = median_time(lambda: sess.run(None, {"images": x}), args.repeats)
                    got = sess.run(None, {"images": x})
                    row[f"ort_{form}_ms"] = t_ort * 1000
                    row[f"ratio_{form}_over_torch"] = t_ort / t_torch
                    row[f"max_rel_err_{form}"] = max(float(np.abs(g - e).max() / max(1e-12, float(np.abs(e).max())))
                                                     for g, e in zip(got, expected))
                    row[f"nodes_{form}"] = result.nodes
                    del sess
                rows.append(row)
                if not args.json:
                    print(f"{name:<16} {w}x{h}: PyTorch {row['torch_ms']:6.0f} ms; ONNX Runtime portable "
                          f"{row['ort_portable_ms']:6.0f} ms (ratio {row['ratio_portable_over_torch']:.2f}), plugin form "
                          f"+ avssm op {row['ort_plugin_ms']:6.0f} ms (ratio {row['ratio_plugin_over_torch']:.2f}; "
                          f"target <= 1.0); max rel err {row['max_rel_err_portable']:.1e} / "
                          f"{row['max_rel_err_plugin']:.1e}; {threads} threads", flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
