"""`avssm bench`: latency and peak memory of the detectors and a ViT baseline against resolution.

    from avssm.bench import bench
    report = bench(["vmamba_tiny_det", "vim_tiny_det", "deit_tiny_det"], [(512, 512), (1080, 1920)])

Each (model, size) is measured in a fresh subprocess on the PyTorch backend, so its peak memory is its
own: peak RSS growth over the loaded model on the CPU, ``torch.cuda.max_memory_allocated`` on a GPU.
The report uses the run report's schema (``avssm.report/1``, kind ``bench``) with one entry per
measurement and, per model, the log-log slope of latency and memory against pixel count (1.0 = linear).

A model may also be an exported file (.onnx, or a TensorRT engine), any model's included (`avssm export
package.module:name`): it runs on its runtime backend on random inputs, at its exported shapes, or at each size
where its image input's height and width are dynamic; its peak memory is peak RSS growth over the loaded file.
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


def is_file(model: str) -> bool:
    from pathlib import Path

    from avssm.runtime.backends import ENGINE_SUFFIXES

    return Path(model).suffix.lower() in (".onnx", *ENGINE_SUFFIXES)


def _takes_any_image_size(specs) -> bool:
    """One image input, (batch, 3, H, W), whose height or width is dynamic."""
    return len(specs) == 1 and len(specs[0][1]) == 4 and None in specs[0][1][2:]


def _image_size_is_dynamic(model: str) -> bool:
    from avssm.runtime.backends import load_backend

    return _takes_any_image_size(load_backend(model).input_specs())


def measure_file(model: str, height: int, width: int, repeats: int = 3, warmup: int = 1) -> dict:
    """Latency (ms) and peak memory (MiB) of one run of an exported file on random inputs (see the module)."""
    import resource
    import time

    from avssm.runtime.backends import load_backend
    from avssm.runtime.raw import random_inputs

    be = load_backend(model)
    feeds = random_inputs(be)
    specs = be.input_specs()
    if _takes_any_image_size(specs):  # images of any size: this one
        name, value = next(iter(feeds.items()))
        feeds = {name: np.random.default_rng(0).standard_normal((value.shape[0], value.shape[1], height, width))
                 .astype(value.dtype)}
    else:
        height, width = (feeds[specs[0][0]].shape[2:4] if feeds[specs[0][0]].ndim == 4 else (0, 0))
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        be.run_inputs(feeds)
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1000)
    a = np.asarray(times)
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_kb) / 1024
    return {"model": model, "height": int(height), "width": int(width), "pixels": int(height) * int(width),
            "device": be.device, "backend": be.name, "inputs": {k: list(v.shape) for k, v in feeds.items()},
            "latency_ms": {"inference": {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
                                         "p99": float(np.percentile(a, 99)), "max": float(a.max()),
                                         "mean": float(a.mean()), "count": int(a.size)}},
            "memory": {"peak_mib": float(max(peak, 0.0)), "source": "peak RSS growth over the loaded file"}}


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
    from pathlib import Path

    from avssm.models.registry import model_constructor

    for m in models:
        if is_file(m):
            if not Path(m).is_file():
                raise AvssmError(f"--models {m}: no such file")
        else:
            model_constructor(m)  # unknown names fail before any work
    entries = []
    for m in models:
        # an exported file at its own shapes, unless its image input takes any size
        any_size = not is_file(m) or _image_size_is_dynamic(m)
        for h, w in sizes if any_size else sizes[:1]:
            if progress:
                progress(f"{m} at {h}x{w}" if any_size else f"{m} at its exported shapes")
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
    print(json.dumps(measure_file(model, height, width, repeats) if is_file(model)
                     else measure(model, height, width, device, repeats)))
