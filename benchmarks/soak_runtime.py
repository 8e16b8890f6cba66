"""Soak test of the runtime: thousands of frames on the CPU, RSS growth after warm-up.

    python benchmarks/soak_runtime.py [--frames 2100] [--warmup 100] [--size 96x160] [--model vim_tiny_det]
                                      [--scan-op plugin|portable]

Exports the model (dynamic; the plugin form by default, whose scans run in avssm's ONNX Runtime op, as the
default detector's do) into a temporary folder, writes a road-scene clip of --frames frames, runs the full
pipeline (source thread, preprocess, ONNX Runtime, NMS, JSONL sink) and prints the RSS after warm-up, at the
end, and the growth. Target: <= 2% growth.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from avssm.datasets.roads import write_clip
from avssm.export import export_onnx
from avssm.runtime import RunConfig, run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=2100)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--size", default="96x160", help="HxW")
    ap.add_argument("--model", default="vim_tiny_det")
    ap.add_argument("--scan-op", default="plugin", choices=["plugin", "portable"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model.onnx"
        export_onnx(args.model, model, input_size=(h, w), dynamic=True, scan_op=args.scan_op)
        clip = Path(tmp) / "clip.mp4"
        write_clip(str(clip), frames=args.frames, height=h, width=w)
        report = run(str(model), str(clip), RunConfig(warmup=args.warmup, score_threshold=0.0, jsonl=str(Path(tmp) / "d.jsonl")))
    mem = report["memory"]
    growth = (mem["rss_mib"] - mem["rss_after_warmup_mib"]) / mem["rss_after_warmup_mib"]
    summary = {"frames_processed": report["frames"]["processed"], "warmup": report["frames"]["warmup"],
               "rss_after_warmup_mib": mem["rss_after_warmup_mib"], "rss_end_mib": mem["rss_mib"],
               "rss_growth": growth, "inference_p50_ms": report["latency_ms"]["inference"]["p50"],
               "scan_op": args.scan_op, "scan": report["backend"].get("scan")}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{summary['frames_processed']} frames after {summary['warmup']} warm-up ({args.model}, {w}x{h}, "
              f"{args.scan_op} form, ONNX Runtime CPU, scan on {summary['scan']}): RSS {summary['rss_after_warmup_mib']:.1f} MiB after warm-up, "
              f"{summary['rss_end_mib']:.1f} MiB at the end, growth {growth * 100:+.2f}% (target <= 2%)")


if __name__ == "__main__":
    main()
