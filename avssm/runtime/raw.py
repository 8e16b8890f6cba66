"""Models that are not avssm detectors (``task: custom``: `avssm export package.module:name`): what a run of them
measures and writes.

A model whose one input takes images, (batch, 3, H, W), runs on camera frames and files as a detector does, without
postprocessing (:mod:`avssm.runtime.pipeline`); any model runs on random inputs of its exported shapes
(:func:`run_random`). Both report latency per stage and memory, and ``--save-outputs DIR`` writes each step's raw
outputs (:class:`OutputWriter`, one ``.npz`` per step, named by the model's output names).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from avssm.errors import AvssmError, Terminated
from avssm.outputs import atomic_output, faults_as
from avssm.runtime import report as rep
from avssm.runtime.backends import Backend
from avssm.runtime.config import RunConfig, check_outputs_folder

RANDOM_STEPS = 20  # timed steps of a run on random inputs without --max-frames


def is_detector(be: Backend) -> bool:
    return be.metadata.get("task") == "detection"


def describe_inputs(specs: list[tuple[str, tuple, type]]) -> str:
    """``x[1,24,8], y[?,24,8]``: a model's inputs (a Backend's ``input_specs``), ? for a dynamic dimension."""
    return ", ".join(f"{name}[{','.join('?' if d is None else str(d) for d in shape)}]" for name, shape, _ in specs)


def takes_frames(specs: list[tuple[str, tuple, type]]) -> bool:
    """Whether camera frames can feed a model of these inputs: one input of (batch, 3, H, W) floats."""
    return (len(specs) == 1 and len(specs[0][1]) == 4 and specs[0][1][1] in (3, None)
            and np.issubdtype(specs[0][2], np.floating))


def frame_normalization(meta: dict) -> dict | None:
    """How frames are normalized for a model (preprocess's ``input_meta``): as a zoo model's metadata says, or, for
    a model of your own (task custom: none recorded), None: ImageNet RGB, as the notice says."""
    return None if meta.get("task") == "custom" else meta.get("input")


def frames_problem(be: Backend) -> str | None:
    """Why camera frames cannot feed this model, or None."""
    if takes_frames(be.input_specs()):
        return None
    return (f"model {be.metadata.get('model')} takes {describe_inputs(be.input_specs())}, not camera frames "
            "((batch, 3, H, W)); run it without --camera/--source to time it on random inputs of those shapes")


def notice(be: Backend, frames: bool) -> str:
    """The one line a run of a model that is not an avssm detector begins with."""
    what = ("camera frames normalized as ImageNet RGB (0-1, mean/std)" if frames
            else f"random inputs {describe_inputs(be.input_specs())}")
    return (f"model {be.metadata.get('model')} is not an avssm detector (task {be.metadata.get('task')}): running it "
            f"on {what}; latency and memory only, no postprocessing (--save-outputs DIR writes its raw outputs)")


def random_inputs(be: Backend, seed: int = 0) -> dict[str, np.ndarray]:
    """A value for each input: its exported shape (the metadata's ``inputs`` where the file's are dynamic, else 1),
    standard normal floats, zeros for other dtypes."""
    exported = be.metadata.get("inputs") if isinstance(be.metadata.get("inputs"), dict) else {}
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, shape, dtype in be.input_specs():
        known = exported.get(name) if isinstance(exported.get(name), list) else []
        dims = tuple(d if d is not None else (known[i] if i < len(known) and isinstance(known[i], int) else 1)
                     for i, d in enumerate(shape))
        feeds[name] = (rng.standard_normal(dims).astype(dtype) if np.issubdtype(dtype, np.floating)
                       else np.zeros(dims, dtype))
    return feeds


class OutputWriter:
    """``--save-outputs DIR``: each step's outputs as ``DIR/000000.npz``, ``000001.npz``, ... (arrays named as the
    model's outputs), each written whole or not at all. The folder must be new or empty: nothing is overwritten."""

    def __init__(self, folder: str | os.PathLike):
        self.folder, self.count = Path(folder), 0

    def write(self, outputs: dict[str, np.ndarray]) -> None:
        path = self.folder / f"{self.count:06d}.npz"
        with faults_as("--save-outputs", path):
            self.folder.mkdir(parents=True, exist_ok=True)
            with atomic_output(path, keep_suffix=True) as tmp, open(tmp, "wb") as f:
                np.savez(f, **outputs)
        self.count += 1


def run_random(be: Backend, config: RunConfig | None = None, *, warn=None) -> dict:
    """Run ``be`` on random inputs of its exported shapes: ``config.warmup`` steps, then ``config.max_frames`` (or
    RANDOM_STEPS) timed ones. The report has run's schema: source ``random inputs``, stages inference and outputs."""
    c = config or RunConfig()
    (warn or (lambda message: None))(notice(be, frames=False))
    save_outputs = c.save_outputs
    if save_outputs:
        check_outputs_folder(save_outputs)
    writer = OutputWriter(save_outputs) if save_outputs else None
    feeds = random_inputs(be)
    steps = c.max_frames or RANDOM_STEPS
    times = rep.StageTimes()
    done = warmed = 0
    error, interrupted, rss_after_warmup = None, None, None
    t_start = time.perf_counter()
    try:
        while done < steps:
            t0 = time.perf_counter()
            out = be.run_inputs(feeds)
            t1 = time.perf_counter()
            if writer is not None:
                writer.write(out)
            t2 = time.perf_counter()
            if warmed < c.warmup:
                warmed += 1
                t_start = time.perf_counter()
                continue
            if rss_after_warmup is None:
                rss_after_warmup = rep.rss_mib()
            done += 1
            times.add("inference", t1 - t0)
            if writer is not None:
                times.add("outputs", t2 - t1)
            times.add("end_to_end", t2 - t0)
    except KeyboardInterrupt as e:
        interrupted, error = rep.interruption(e, Terminated)
    except AvssmError as e:
        if done == 0 and warmed == 0:
            raise
        error = str(e)
    elapsed = time.perf_counter() - t_start
    memory = rep.run_memory(be, rss_after_warmup)
    meta = be.metadata
    batch = next(iter(feeds.values())).shape[0] if feeds and next(iter(feeds.values())).ndim else 1
    return {
        "schema": rep.SCHEMA,
        "kind": "run",
        "environment": rep.environment(be.info),
        "model": {k: meta.get(k) for k in ("model", "task", "precision", "scan_op", "export_size", "avssm_version")},
        "backend": be.describe(),
        "source": {"spec": "random inputs", "inputs": {name: list(v.shape) for name, v in feeds.items()},
                   "batch": batch, "save_outputs": save_outputs},
        "frames": {"processed": done * batch, "warmup": warmed * batch, "captured": 0, "dropped": 0,
                   "unreadable": 0},
        "latency_ms": times.summary(),
        "throughput_fps": done * batch / elapsed if done and elapsed > 0 else 0.0,
        "memory": memory,
        "error": error,
        "interrupted": bool(interrupted),
        "signal": interrupted,
    }
