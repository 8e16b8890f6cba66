"""Several cameras, one inference call: N sources batched (`avssm run --source a --source b ...`) against the same
N sources run one after another, on the same frames, measured in one run. Prints frames per second of each and
their ratio (batched / sequential; above 1 means batching is faster).

    python benchmarks/bench_multicam.py [--cameras 2 4] [--size 540x960] [--frames 8] [--json]

The model is the shipped detector (`vmamba_nano_det`, plugin form, dynamic shapes, as `avssm run` uses it) on
ONNX Runtime's CPU provider unless --model names another exported file.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2

from avssm.app import default_model_file, default_sample_clip
from avssm.runtime import RunConfig, load_backend, run
from avssm.sizes import parse_size


def frames_folder(folder: Path, size: tuple[int, int], count: int) -> Path:
    folder.mkdir(parents=True)
    clip, frames = cv2.VideoCapture(str(default_sample_clip())), []
    while (read := clip.read())[0]:
        frames.append(cv2.resize(read[1], size[::-1], interpolation=cv2.INTER_AREA))
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:04d}.png"), frames[i % len(frames)])
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--size", default="540x960", help="HxW of the frames")
    ap.add_argument("--frames", type=int, default=8, help="frames per camera (after one warm-up frame)")
    ap.add_argument("--model", default=None, help="an exported .onnx (default: the shipped detector)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    backend = load_backend(args.model or str(default_model_file()))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        size = parse_size(args.size, "--size")
        for n in args.cameras:
            folders = [frames_folder(Path(tmp) / f"n{n}_cam{i}", size, args.frames + 1) for i in range(n)]
            config = RunConfig(warmup=1)
            t0 = time.perf_counter()
            for folder in folders:  # one camera after another
                run(backend, str(folder), config)
            sequential = n * args.frames / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            batched_report = run(backend, [str(f) for f in folders], config)
            batched = n * args.frames / (time.perf_counter() - t0)
            results.append({"cameras": n, "size": list(size), "frames_per_camera": args.frames,
                            "sequential_fps": sequential, "batched_fps": batched, "ratio": batched / sequential,
                            "batched_inference_p50_ms": batched_report["latency_ms"]["inference"]["p50"]})
    if args.json:
        print(json.dumps({"backend": backend.describe(), "results": results}, indent=2))
        return
    print(f"{backend.name} [{backend.device}], {backend.metadata.get('model')}")
    print(f"{'cameras':>8}{'size':>12}{'sequential fps':>16}{'batched fps':>13}{'ratio':>8}")
    for r in results:
        print(f"{r['cameras']:>8}{'x'.join(map(str, r['size'])):>12}{r['sequential_fps']:>16.2f}"
              f"{r['batched_fps']:>13.2f}{r['ratio']:>8.2f}")


if __name__ == "__main__":
    main()
