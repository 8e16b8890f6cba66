"""`avssm bench`: latency and peak memory of the detectors and a ViT baseline against resolution.

    from avssm.bench import bench
    report = bench(["vmamba_tiny_det", "vim_tiny_det", "deit_tiny_det"], [(512, 512), (1080, 1920)])

Each (model, size) is measured in a fresh subprocess on the PyTorch backend, so its peak memory is its
own: peak RSS growth over the loaded model on the CPU, ``torch.cuda.max_memory_allocated`` on a GPU.
The report uses the run report's schema (``avssm.report/1``, kind ``bench``) with one entry per
measurement and, per model, the log-log slope of latency and memory against pixel count (1.0 = linear).
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from avssm.errors import AvssmError
from avssm.malloc import keep_freed_memory
from avssm.runtime import report as rep

DEFAULT_MODELS = ("vmamba_tiny_det", "vim_tiny_det", "deit_tiny_det")
DEFAULT_SIZES = ((512, 512), (720, 1280), (1080, 1920), (1248, 1248), (2160, 3840))
QUICK_SIZES = ((256, 256), (384, 640), (720, 1280))


def measure(model: str, height: int, width: int, device: str = "cpu", repeats: int = 3, warmup: int = 1) -> dict:
    """Latency (ms) and peak memory (MiB) of one forward pass; runs in the calling process."""
    import resource
    import time

    import torch

    from avssm.models import create_model

    cuda = device.startswith("cuda")
    if not cuda:
        keep_freed_memory()  # as the torch backend runs: freed activations reused, not faulted in again
    net = create_model(model).eval().to(device)
    x = torch.randn(1, 3, height, width, device=device)
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            net(x)
            if cuda:
                torch.cuda.synchronize()
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1000)
    a = np.asarray(times)
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
        source = "torch.cuda.max_memory_allocated"
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_kb) / 1024
        source = "peak RSS growth over the loaded model"
    return {"model": model, "height": height, "width": width, "pixels": height * width, "device": device,
            "latency_ms": {"inference": {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
                                         "p99": float(np.percentile(a, 99)), "max": float(a.max()),
                                         "mean": float(a.mean()), "count": int(a.size)}},
            "memory": {"peak_mib": float(peak), "source": source}, "params": sum(p.numel() for p in net.parameters())}


def _measure_in_subprocess(model, height, width, device, repeats, timeout) -> dict:
    cmd = [sys.executable, "-m", "avssm.bench", model, str(height), str(width), device, str(repeats)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"model": model, "height": height, "width": width, "pixels": height * width,
                "error": f"timed out after {timeout} s"}
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["failed"])[-1]
        return {"model": model, "height": height, "width": width, "pixels": height * width, "error": last}
    return json.loads(r.stdout.strip().splitlines()[-1])


def scaling_exponent(pixels: list[int], values: list[float]) -> float | None:
    """Slope of log(value) against log(pixels): 1.0 is linear in pixels, 2.0 quadratic."""
    pts = [(p, v) for p, v in zip(pixels, values) if v and v > 0]
    if len(pts) < 2:
        return None
    x, y = np.log([p for p, _ in pts]), np.log([v for _, v in pts])
    return float(np.polyfit(x, y, 1)[0])


def bench(models=DEFAULT_MODELS, sizes=DEFAULT_SIZES, device: str = "cpu", repeats: int = 3, timeout: float = 600,
          progress=None) -> dict:
    from avssm.models.registry import model_constructor

    for m in models:
        model_constructor(m)  # unknown names fail before any work
    entries = []
    for m in models:
        for h, w in sizes:
            if progress:
                progress(f"{m} at {h}x{w}")
            entries.append(_measure_in_subprocess(m, h, w, device, repeats, timeout))
    fits = {}
    for m in models:
        ok = [e for e in entries if e["model"] == m and "error" not in e]
        fits[m] = {"latency_exponent": scaling_exponent([e["pixels"] for e in ok],
                                                        [e["latency_ms"]["inference"]["p50"] for e in ok]),
                   "memory_exponent": scaling_exponent([e["pixels"] for e in ok], [e["memory"]["peak_mib"] for e in ok])}
    return {"schema": rep.SCHEMA, "kind": "bench", "environment": rep.environment(),
            "backend": {"name": "torch", "device": device}, "entries": entries, "fits": fits}


def plot(report: dict, path: str) -> None:
    """Latency and memory against pixel count, log-log, with the fitted exponent per model."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise AvssmError("--plot: matplotlib is not installed (pip install matplotlib)") from None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for model, fit in report["fits"].items():
        ok = [e for e in report["entries"] if e["model"] == model and "error" not in e]
        if not ok:
            continue
        px = [e["pixels"] for e in ok]
        for ax, key, values in ((axes[0], "latency_exponent", [e["latency_ms"]["inference"]["p50"] for e in ok]),
                                (axes[1], "memory_exponent", [max(1e-3, e["memory"]["peak_mib"]) for e in ok])):
            exp = fit[key]
            ax.plot(px, values, "o-", label=f"{model} (slope {exp:.2f})" if exp is not None else model)
    for ax, title, unit in ((axes[0], "latency", "ms"), (axes[1], "peak memory", "MiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("pixels per frame")
        ax.set_ylabel(f"{title} ({unit})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"avssm bench on {report['backend']['device']}")
    fig.tight_layout()
    from pathlib import Path

    from avssm.outputs import atomic_output

    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".").lower() or "png")
    plt.close(fig)


if __name__ == "__main__":  # one measurement, for bench()'s subprocesses
    model, height, width, device, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    print(json.dumps(measure(model, height, width, device, repeats)))
