"""ONNX Runtime CPU against PyTorch eager CPU on the same model and input.

    python benchmarks/bench_onnx_cpu.py [--models vim_tiny_det vmamba_tiny_det] [--sizes 384x640 1080x1920]
                                        [--forms plugin unfused portable] [--repeats 3] [--json]

Each model is exported at each size (static shape) in each form: ``plugin`` (the default export: fused
SelectiveScan nodes, which ONNX Runtime runs with avssm's CPU op, as `avssm run` does), ``unfused`` (`--unfused`:
the traversal copies as standard ops around version 1 nodes, with the same op) and ``portable`` (the scan as
standard ops). PyTorch and every session are timed in the same process with the same thread count, interleaved
(one call of each per round, median of --repeats rounds after one warm-up), and the outputs compared with
PyTorch's once. Target: ONNX Runtime with the plugin form <= 0.9x PyTorch. PyTorch runs as avssm's torch backend
does on the CPU (compiled scan kernels, freed memory kept for reuse: avssm.malloc); ONNX Runtime with avssm's
session options.
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


def interleaved_medians(fns: dict, repeats: int) -> dict:
    """{name: median seconds} of calling each fn once per round, the rounds after one warm-up round."""
    times = {name: [] for name in fns}
    for round_ in range(repeats + 1):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if round_:
                times[name].append(time.perf_counter() - t0)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["vim_tiny_det", "vmamba_tiny_det"])
    ap.add_argument("--sizes", nargs="+", default=["384x640", "1080x1920"])
    ap.add_argument("--forms", nargs="+", default=["plugin", "unfused", "portable"],
                    choices=["plugin", "unfused", "portable"])
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
                    expected = [e.numpy() for e in model(xt)]
                row = {"model": name, "height": h, "width": w, "threads": threads}
                sessions = {}
                for form in args.forms:
                    path = Path(tmp) / f"{name}_{h}x{w}_{form}.onnx"
                    result = export_onnx(model, path, input_size=(h, w), fused=form != "unfused",
                                         scan_op="portable" if form == "portable" else "plugin")
                    so = session_options()
                    so.intra_op_num_threads = threads
                    if form != "portable":
                        so.register_custom_ops_library(str(native.ort_scan_op_library()))
                    sessions[form] = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
                    got = sessions[form].run(None, {"images": x})
                    row[f"max_rel_err_{form}"] = max(float(np.abs(g - e).max() / max(1e-12, float(np.abs(e).max())))
                                                     for g, e in zip(got, expected))
                    row[f"nodes_{form}"] = result.nodes

                def torch_forward():
                    with torch.inference_mode():
                        model(xt)

                fns = {"torch": torch_forward}
                fns.update({form: (lambda s=s: s.run(None, {"images": x})) for form, s in sessions.items()})
                medians = interleaved_medians(fns, args.repeats)
                row["torch_ms"] = medians["torch"] * 1000
                for form in args.forms:
                    row[f"ort_{form}_ms"] = medians[form] * 1000
                    row[f"ratio_{form}_over_torch"] = medians[form] / medians["torch"]
                del sessions
                rows.append(row)
                if not args.json:
                    forms = "; ".join(f"{form} {row[f'ort_{form}_ms']:.0f} ms (ratio "
                                      f"{row[f'ratio_{form}_over_torch']:.2f}, max rel err "
                                      f"{row[f'max_rel_err_{form}']:.1e})" for form in args.forms)
                    print(f"{name:<16} {h}x{w}: PyTorch {row['torch_ms']:.0f} ms; ONNX Runtime {forms}; "
                          f"target plugin <= 0.9; {threads} threads", flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
