"""Latency per stage, memory and environment: the report every ``avssm run`` (and ``bench``) ends with.

The JSON schema (``schema: "avssm.report/1"``) is shared by run and bench:

    {schema, kind, environment: {...}, model: {...}, backend: {...}, source: {...},
     frames: {processed, warmup, captured, dropped, unreadable}, latency_ms: {stage: {p50, p90, p99, max, mean,
     count}}, throughput_fps, memory: {...}, error, interrupted, signal ("SIGINT" or "SIGTERM" when interrupted)}

Sizes are [height, width] everywhere (source.resize, bench's entries), as the ONNX input shape reads.
"""
from __future__ import annotations

import os
import platform
import resource
import sys
from dataclasses import dataclass, field

import numpy as np

SCHEMA = "avssm.report/1"
# outputs: writing the raw outputs (--save-outputs); from_stamp: a recording replayed with --realtime, from the
# image's header.stamp to its detections
STAGES = ("capture_wait", "preprocess", "inference", "postprocess", "outputs", "end_to_end", "from_stamp")


@dataclass
class StageTimes:
    samples: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})

    def add(self, stage: str, seconds: float) -> None:
        self.samples[stage].append(seconds * 1000.0)

    def summary(self) -> dict:
        out = {}
        for stage, values in self.samples.items():
            if not values:
                continue
            a = np.asarray(values)
            out[stage] = {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
                          "p99": float(np.percentile(a, 99)), "max": float(a.max()), "mean": float(a.mean()),
                          "count": int(a.size)}
        return out


def rss_mib() -> float:
    """Current resident set size of this process."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return float("nan")


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def run_memory(backend, rss_after_warmup: float | None) -> dict:
    """A run's memory: this process's peak and current RSS (and after the warm-up), the backend's, the GPU's."""
    memory = {"peak_rss_mib": peak_rss_mib(), "rss_mib": rss_mib()}
    if rss_after_warmup is not None:
        memory["rss_after_warmup_mib"] = rss_after_warmup
    memory.update(backend.memory())
    memory.update(gpu_memory())
    memory.update(jetson_memory())
    return memory


def interruption(e: KeyboardInterrupt, terminated: type) -> tuple[str, str]:
    """(signal, error) of a run stopped by Ctrl-C or SIGTERM (``terminated``: the exception SIGTERM raises)."""
    signal = "SIGTERM" if isinstance(e, terminated) else "SIGINT"
    return signal, "terminated (SIGTERM)" if signal == "SIGTERM" else "interrupted (Ctrl-C)"


def is_jetson() -> bool:
    return os.path.exists("/etc/nv_tegra_release") or os.path.exists("/sys/module/tegra_fuse")


def gpu_memory() -> dict:
    """GPU memory this process holds, via NVML when it is installed (nvidia-ml-py)."""
    try:
        import pynvml
    except ImportError:
        return {}
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        used = 0
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == os.getpid() and proc.usedGpuMemory:
                used += proc.usedGpuMemory
        return {"gpu_process_mib": used / 2**20, "gpu_source": "nvml"}
    except Exception:  # noqa: BLE001 - NVML is unsupported on Jetson and some containers
        return {}


def jetson_memory() -> dict:
    """Unified memory on Jetson, from /proc/meminfo (NVML does not report it there)."""
    if not is_jetson():
        return {}
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, value = line.split(":", 1)
            if key in ("MemTotal", "MemAvailable"):
                info[key] = int(value.split()[0]) / 1024
    return {"unified_total_mib": info.get("MemTotal"), "unified_available_mib": info.get("MemAvailable")}


def environment(backend_info: dict | None = None) -> dict:
    env = {"python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine(),
           "cpu_count": os.cpu_count(), "jetson": is_jetson()}
    try:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    try:
        import tensorrt

        env["tensorrt"] = tensorrt.__version__
    except ImportError:
        pass
    torch = sys.modules.get("torch")  # only report torch when the backend already loaded it
    if torch is not None:
        env["torch"] = torch.__version__
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name()
            env["cuda"] = torch.version.cuda
    if backend_info:
        env.update({k: v for k, v in backend_info.items() if k in ("onnxruntime", "torch", "tensorrt")})
    return env


def format_table(report: dict) -> str:
    """The human-readable end-of-run table."""
    lines = []
    b = report["backend"]
    m = report["model"]
    scan = f"{m.get('scan_op')} form" + (f", scan on {b['scan']}" if b.get("scan") else "")
    lines.append(f"model {m.get('model')} ({m.get('precision')}, {scan}) on {b['name']} [{b['device']}]"
                 + (f" - {b['reason']}" if b.get("reason") else ""))
    fr = report["frames"]
    source = report.get("source") or {}
    if source.get("spec") == "random inputs":
        inputs = ", ".join(f"{name}[{','.join(map(str, shape))}]" for name, shape in source["inputs"].items())
        lines.append(f"steps: {fr['processed']} timed after {fr['warmup']} warm-up on random inputs {inputs}; "
                     f"throughput {report['throughput_fps']:.2f} per second")
    else:
        lines.append(f"frames: {fr['processed']} processed after {fr['warmup']} warm-up, {fr['dropped']} dropped, "
                     f"{fr['captured']} captured" + (f", {fr['unreadable']} unreadable skipped" if fr.get("unreadable") else "")
                     + f"; throughput {report['throughput_fps']:.2f} fps")
    lines.append(f"{'stage':<14}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for stage in STAGES:
        s = report["latency_ms"].get(stage)
        if s:
            lines.append(f"{stage:<14}{s['p50']:>10.1f}{s['p90']:>10.1f}{s['p99']:>10.1f}{s['max']:>10.1f}")
    for row in report.get("sources") or []:  # several sources batched: each one's frames and latency
        e2e = row["latency_ms"].get("end_to_end")
        timing = f"; end_to_end p50 {e2e['p50']:.1f} p99 {e2e['p99']:.1f} ms" if e2e else ""
        unsynced = f", {row['unsynced']} skipped to sync" if row.get("unsynced") else ""
        lines.append(f"source {row['name']}: {row['captured']} captured, {row['dropped']} dropped{unsynced}{timing}")
    if report["latency_ms"].get("end_to_end") and source.get("drop") == "none" and not source.get("realtime"):
        lines.append("(end_to_end includes the wait behind earlier frames read ahead; --realtime plays a file "
                     "like a camera)")
    found = report.get("detections")
    if found and found["frames"]:
        per_frame = found["per_frame"]
        classes = ", ".join(f"{name} {count}" for name, count in found["per_class"].items()) or "none"
        lines.append(f"detections: {per_frame['median']:g} per frame (median; mean {per_frame['mean']:.1f}, max "
                     f"{per_frame['max']}) over {found['frames']} frames; by class: {classes}")
    if m.get("weights_note"):
        lines.append(f"note: {m['weights_note']}")
    mem = report["memory"]
    lines.append("memory: " + ", ".join(f"{k} {v:.0f}" if isinstance(v, float) else f"{k} {v}" for k, v in mem.items()))
    if report.get("error"):
        lines.append(f"stopped: {report['error']}")
    return "\n".join(lines)

