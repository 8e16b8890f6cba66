"""The ``avssm`` command line: a thin layer over the library (avssm.models, avssm.runtime, ...).

One vocabulary in every command: sizes are HxW (as the ONNX input shape reads), ``--json PATH`` writes the
command's result as JSON (``-``: to stdout, which then holds the JSON alone, the human output going to
stderr), ``--max-frames`` bounds the frames or images read. Exit codes: 0 success; 2 bad input, found
before any work (one line, no traceback); 1 a fault during the work, after the partial report; 130 Ctrl-C;
143 SIGTERM (handled as Ctrl-C is: the partial report, no temporary file left).
"""
from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from avssm.errors import AvssmError, Terminated
from avssm.outputs import check_distinct, check_output, check_output_dir, write_json
from avssm.calib.options import CalibOptions
from avssm.export.options import ExportOptions
from avssm.runtime.config import RunConfig

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="avssm: VMamba and Vim perception models for the edge.")


def make_console(stderr: bool = False) -> Console:
    """A console for human output. Off a terminal (a log, a pipe, a file) lines are not wrapped at 80 columns,
    which split file names and table rows: the width is $COLUMNS where set, else wide enough for any line."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty() or os.environ.get("COLUMNS"):
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=10_000)


console = make_console()


def _version(value: bool) -> None:
    if value:
        import avssm

        print(f"avssm {avssm.__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print avssm's version and exit.")) -> None:
    """avssm: VMamba and Vim perception models for the edge."""


JSON_HELP = "Write the result as JSON to this file, or to stdout with '-' (the human output then goes to stderr)."


def json_option():
    return typer.Option(None, "--json", metavar="PATH", help=JSON_HELP)


def human_console(json_path: Optional[str]) -> Console:
    """Where a command that takes `--json PATH` prints its table: stderr when the JSON goes to stdout ('-')."""
    return make_console(stderr=True) if json_path == "-" else console


def warn(message: str) -> None:
    print(f"avssm: warning: {message}", file=sys.stderr, flush=True)


def inform(message: str) -> None:
    """A line for the user that is not a warning (where to watch a run, ...)."""
    print(f"avssm: {message}", file=sys.stderr, flush=True)


PROGRESS_EVERY_S = 10.0  # a progress line this often when stderr is not a terminal (AVSSM_PROGRESS_EVERY overrides)


@contextlib.contextmanager
def working(message: str):
    """Progress of a long step: a spinner showing ``message`` on a terminal; elsewhere (logs, pipes, CI) one
    line on stderr for each step the work names through the callback this yields."""
    if sys.stdout.isatty() and sys.stderr.isatty():
        with make_console(stderr=True).status(f"{message} ...") as status:
            yield lambda m: status.update(f"{m} ...")
        return
    yield lambda m: print(f"avssm: {m} ...", file=sys.stderr, flush=True)


@contextlib.contextmanager
def counting(message: str, unit: str = "frames"):
    """Progress of work counted in ``unit``: the callback this yields takes (done, total or None). On a terminal a
    bar with the count, rate and time left; elsewhere (logs, pipes, CI) a line on stderr every PROGRESS_EVERY_S
    seconds (``$AVSSM_PROGRESS_EVERY``) and at the end."""
    import time

    try:
        every_s = float(os.environ.get("AVSSM_PROGRESS_EVERY", PROGRESS_EVERY_S))
    except ValueError:
        every_s = PROGRESS_EVERY_S
    start = time.perf_counter()
    if sys.stdout.isatty() and sys.stderr.isatty():
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        columns = [SpinnerColumn(), TextColumn(message), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                   TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn()]
        with Progress(*columns, console=make_console(stderr=True), transient=True) as bar:
            task = bar.add_task(message, total=None, rate="")

            def update(done, total):
                elapsed = time.perf_counter() - start
                bar.update(task, completed=done, total=total, rate=f"{done / elapsed:.1f}/s" if elapsed > 0 else "")

            yield update
        return
    state = {"printed_at": start, "count": None, "printed": None}

    def line(done, total, now):
        state["printed_at"], state["printed"] = now, done
        print(f"avssm: {message}: {progress_line(done, total, now - start, unit)}", file=sys.stderr, flush=True)

    def update(done, total):
        now = time.perf_counter()
        state["count"] = (done, total)
        if now - state["printed_at"] >= every_s:
            line(done, total, now)

    yield update
    count, now = state["count"], time.perf_counter()
    if count is not None and now - start >= every_s and state["printed"] != count[0]:  # a long run's final count
        line(*count, now)


def progress_line(done: int, total: Optional[int], elapsed: float, unit: str) -> str:
    """'120/795 frames, 4.2 per second, 2:40 left' (without total: '120 frames, 4.2 per second')."""
    rate = done / elapsed if elapsed > 0 else 0.0
    text = f"{done}/{total} {unit}" if total else f"{done} {unit}"
    text += f", {rate:.1f} per second"
    if total and rate > 0 and total > done:
        left = int((total - done) / rate)
        text += f", {left // 60}:{left % 60:02d} left"
    return text


@contextlib.contextmanager
def json_stdout(json_path: Optional[str]):
    """With `--json -`, whatever the work prints on stdout (ONNX Runtime, other libraries, at the file
    descriptor too) goes to stderr instead, so stdout carries the JSON alone."""
    if json_path != "-":
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def check_json_path(json_path: Optional[str], inputs: Optional[dict] = None) -> None:
    if json_path:
        check_output(json_path, "--json", inputs=inputs, stdout=True)


def _shipped(value: Optional[str]) -> Optional[str]:
    """--checkpoint shipped: the shipped vmamba_nano_det weights, from any folder."""
    if value == "shipped":
        from avssm.app import DEFAULT_CHECKPOINT

        return str(DEFAULT_CHECKPOINT)
    return value


def checkpoint_option(help_text: str):
    return typer.Option(None, "--checkpoint", "-c", callback=_shipped,
                        help=f"{help_text} 'shipped': the shipped vmamba_nano_det weights.")


@app.command("models")
def models_cmd(json_path: Optional[str] = json_option()):
    """List every registered model with its task and parameter count."""

    from avssm.app import DEFAULT_CHECKPOINT, DEFAULT_MODEL, SHIPPED_WEIGHTS_NOTE, model_rows

    check_json_path(json_path)
    rows = model_rows()
    for r in rows:
        r["shipped_weights"] = str(DEFAULT_CHECKPOINT) if r["name"] == DEFAULT_MODEL else None
    if json_path:
        write_json(rows, json_path)
    table = Table(title="avssm models")
    for col in ("name", "task", "family", "params"):
        table.add_column(col, justify="right" if col == "params" else "left")
    for r in rows:
        table.add_row(r["name"] + (" *" if r["shipped_weights"] else ""), r["task"], r["family"],
                      f"{r['params'] / 1e6:.2f}M")
    human = human_console(json_path)
    human.print(table)
    human.print(f"* {DEFAULT_MODEL} has shipped weights, {DEFAULT_CHECKPOINT} (-c shipped names them in any "
                f"command); {SHIPPED_WEIGHTS_NOTE}. Other models start from random weights or your -c CHECKPOINT.",
                soft_wrap=True, markup=False, highlight=False)


@app.command("export")
def export_cmd(
    model: str = typer.Argument(..., help="Registered model name (see `avssm models`), or your own model as "
                                "package.module:name (a model or a factory of one; code on mamba_ssm or the "
                                "official VMamba/Vim code included)."),
    output: str = typer.Option(..., "--output", "-o", help="Path of the .onnx file to write."),
    checkpoint: Optional[str] = checkpoint_option("Weights (official or avssm .pth)."),
    input_size: str = typer.Option("x".join(map(str, ExportOptions.input_size)), "--input-size",
                                   help="Export (and, with --dynamic, optimal) size HxW."),
    dynamic: bool = typer.Option(ExportOptions.dynamic, "--dynamic", help="Symbolic batch, height and width."),
    batch: int = typer.Option(ExportOptions.batch, "--batch", min=1, help="Batch size of the example input."),
    scan_op: str = typer.Option(ExportOptions.scan_op, "--scan-op",
                                help="plugin: SelectiveScan nodes for TensorRT + the avssm plugin; portable: standard ops only."),
    fused: bool = typer.Option(ExportOptions.fused, "--fused/--unfused",
                               help="VMamba/Vim scans as one fused node each (default); --unfused: traversal copies "
                                    "around a version 1 node, for SelectiveScan implementations that read only "
                                    "version 1 nodes (plugin libraries built before version 2)."),
    precision: str = typer.Option(ExportOptions.precision, "--precision",
                                  help="fp32 or fp16 (scan A/D/delta_bias and state stay fp32)."),
    opset: int = typer.Option(ExportOptions.opset, "--opset", help="ONNX opset (>= 17)."),
    verify: bool = typer.Option(False, "--verify", help="Run the file and PyTorch on the same input and print the errors."),
    inputs: Optional[List[str]] = typer.Option(None, "--input", help="Your own model (package.module:name): an "
                                               "input's name and shape, NAME=1x256x64; repeat for each input."),
    output_names: Optional[List[str]] = typer.Option(None, "--output-name", help="Your own model: its outputs' "
                                                     "names, in order; repeat for each (default output0, output1, ...)."),
    dynamic_axes: Optional[List[str]] = typer.Option(None, "--dynamic-axes", metavar="INPUT=AXES",
                                                     help="Your own model: axes of an input that are dynamic, e.g. "
                                                          "images=2,3 (height, width) or x=1 (sequence length); "
                                                          "repeat for each input. --dynamic: the batch of each."),
    json_path: Optional[str] = json_option(),
):
    """Export a model to ONNX (plugin or portable form) with the metadata the runtime reads."""
    from avssm.export.onnx_export import export_onnx, parse_input_size

    if ":" in model:
        return _export_own_model(model, output, checkpoint, inputs or [], dynamic, dynamic_axes or [], scan_op, fused,
                                 precision, opset, verify, json_path, output_names or None)
    size = parse_input_size(input_size)
    check_json_path(json_path, {"--checkpoint": checkpoint, "--output": output})
    with json_stdout(json_path), working("exporting") as step:
        result = export_onnx(model, output, checkpoint=checkpoint, input_size=size, dynamic=dynamic, batch=batch,
                             scan_op=scan_op, fused=fused, precision=precision, opset=opset, verify=verify,
                             progress=step)
    if checkpoint is None:
        warn(f"no --checkpoint: {model} was exported with random weights; its outputs are meaningless")
    if json_path:
        write_json(result.to_dict(), json_path)
    human = human_console(json_path)
    print_verification(human, result.verification)
    human.print(result.summary(), soft_wrap=True, markup=False, highlight=False)


def print_verification(human, rows) -> None:
    """One line per verified output (a zoo model's rows also name the size they ran at)."""
    for v in rows:
        size = f"{v['size'][0]}x{v['size'][1]} " if "size" in v else f"at {v['at']}: " if v.get("at") else ""
        human.print(f"verify {size}{v['output']}: max abs {v['max_abs']:.3e}, max rel {v['max_rel']:.3e}"
                    f"{'' if v['finite'] else ', NON-FINITE values'} ({v['runtime']})")


def _export_own_model(spec, output, checkpoint, inputs, dynamic, dynamic_axes, scan_op, fused, precision, opset,
                      verify, json_path, output_names) -> None:
    """`avssm export package.module:name --input x=1x256x64`: any nn.Module (avssm.export.module_export)."""
    from avssm.export.module_export import export_module, load_model_spec, parse_dynamic_axes, parse_inputs, scans_found

    shapes = parse_inputs(inputs)
    if not shapes:
        raise AvssmError(f"MODEL {spec}: give each input's shape with --input NAME=1x256x64")
    axes = parse_dynamic_axes(dynamic_axes, shapes)
    check_json_path(json_path, {"--checkpoint": checkpoint, "--output": output})
    check_output(output, "--output", inputs={"--checkpoint": checkpoint})
    with json_stdout(json_path), working("exporting") as step:
        result = export_module(load_model_spec(spec), output, inputs=shapes, checkpoint=checkpoint, dynamic=dynamic,
                               dynamic_axes=axes,
                               scan_op=scan_op, fused=fused, precision=precision, opset=opset, verify=verify,
                               name=spec, output_names=output_names, progress=step)
    if json_path:
        write_json(result.to_dict(), json_path)
    human = human_console(json_path)
    print_verification(human, result.verification)
    human.print(f"{result.summary()} ({scan_op} form)", soft_wrap=True, markup=False, highlight=False)
    human.print(scans_found(result), soft_wrap=True, markup=False, highlight=False)


@app.command("run")
def run_cmd(
    camera: Optional[List[str]] = typer.Option(None, "--camera", help="Camera: index (0), /dev/videoN, or "
                                               "gst:<pipeline>; repeat for several (one batch per step)."),
    source: Optional[List[str]] = typer.Option(None, "--source", help="Video file, rtsp/http URL, image folder or "
                                               "image, or a recorded drive (.mcap, rosbag2 folder, ROS 1 .bag) with "
                                               "--topic; repeat for several (one batch per step)."),
    topic: Optional[List[str]] = typer.Option(None, "--topic", help="Image topic of a recording (Image or "
                                              "CompressedImage); several run as one batch. Without it the topics "
                                              "are listed."),
    sync_tolerance: Optional[float] = typer.Option(None, "--sync-tolerance", min=0.0, metavar="MS",
                                                   help="Several topics: batch frames whose stamps lie within MS."),
    model: Optional[str] = typer.Option(None, "--model", "-m",
                                        help="ONNX file from `avssm export`, or a registered model name (PyTorch). "
                                             "Default: the shipped trained vmamba_nano_det, exported once into ~/.cache/avssm."),
    backend: str = typer.Option("auto", "--backend", help="auto, onnxruntime, onnxruntime-cuda, onnxruntime-tensorrt, torch."),
    checkpoint: Optional[str] = checkpoint_option("Weights for the torch backend."),
    device: str = typer.Option("cpu", "--device", help="Device for the torch backend (cpu, cuda)."),
    plugin_lib: Optional[str] = typer.Option(None, "--plugin-lib", help="avssm TensorRT plugin library."),
    resize: Optional[str] = typer.Option(None, "--resize", help="Resize frames to HxW, e.g. 720x1280 (default: keep "
                                         "full resolution)."),
    drop: Optional[str] = typer.Option(None, "--drop", help="oldest (default for cameras, streams and --realtime) or "
                                       "none (default for files)."),
    realtime: bool = typer.Option(False, "--realtime", help="Play a video file or recording at its own frame rate, "
                                  "like a camera (dropping the oldest frame when inference falls behind, unless "
                                  "--drop none)."),
    max_frames: Optional[int] = typer.Option(RunConfig.max_frames, "--max-frames", min=1,
                                             help="Stop after this many frames (after warm-up)."),
    warmup: int = typer.Option(RunConfig.warmup, "--warmup", min=0, help="Frames run before timing starts."),
    max_image_pixels: int = typer.Option(RunConfig.max_image_pixels, "--max-image-pixels", min=1,
                                         help="Refuse, undecoded, images and recorded frames of more pixels (and "
                                              "recorded chunks of more than 4 bytes per pixel)."),
    score_threshold: float = typer.Option(RunConfig.score_threshold, "--score-threshold", min=0.0, max=1.0,
                                          help="Minimum detection score."),
    iou_threshold: float = typer.Option(RunConfig.iou_threshold, "--iou-threshold", min=0.0, max=1.0,
                                        help="Class-aware NMS IoU threshold."),
    show: bool = typer.Option(False, "--show", help="Show a window with boxes and live FPS."),
    save_video: Optional[str] = typer.Option(None, "--save-video", help="Write the frames with boxes to this video."),
    jsonl: Optional[str] = typer.Option(None, "--jsonl", help="Write one line of detections per frame."),
    record: Optional[str] = typer.Option(None, "--record", help="Write the detections as vision_msgs/"
                                         "Detection2DArray to this MCAP file (ROS 2; Foxglove, RViz)."),
    record_images: bool = typer.Option(False, "--record-images", help="With --record: the images too."),
    view: bool = typer.Option(False, "--view", help="Serve the annotated stream for the Foxglove app "
                              "(ws://127.0.0.1:8765; needs foxglove-sdk): no GUI toolkit needed."),
    view_port: int = typer.Option(8765, "--view-port", min=0, max=65535, help="Port for --view."),
    save_outputs: Optional[str] = typer.Option(None, "--save-outputs", metavar="DIR", help="Write each step's raw "
                                               "model outputs into this new folder, one .npz per step (any model)."),
    json_path: Optional[str] = typer.Option(None, "--json", metavar="PATH", help="Write the report (and "
                                            "environment) as JSON to this file, or to stdout with '-' (the table "
                                            "then goes to stderr)."),
):
    """Run a detector on camera frames, a video or images and report latency per stage and memory.

    With no --camera/--source it runs the default detector on the short sample clip shipped with avssm.
    A model that is not an avssm detector (`avssm export package.module:name`) runs without postprocessing: on
    frames when it takes images, and with no --camera/--source on random inputs of its exported shapes.
    Exit code 1 when the run stopped on a fault (camera lost, truncated file), 130 on Ctrl-C, 143 on SIGTERM;
    the report of what ran is printed (and written) either way.
    """
    from avssm.app import default_model_file, default_sample_clip, open_model, shipped_weights_note
    from avssm.errors import FaultError
    from avssm.runtime import format_table, run
    from avssm.runtime.raw import is_detector, run_random
    from avssm.sizes import parse_size

    if camera and source:
        raise AvssmError("--camera and --source: give one kind of them")
    specs = list(camera or source or [str(default_sample_clip())])
    spec = specs[0] if len(specs) == 1 else specs
    config = RunConfig(camera=bool(camera), resize=parse_size(resize, "--resize") if resize else None, drop=drop,
                       realtime=realtime, max_frames=max_frames, warmup=warmup, score_threshold=score_threshold,
                       iou_threshold=iou_threshold, show=show, save_video=save_video, jsonl=jsonl,
                       topics=tuple(topic or ()), record=record, record_images=record_images,
                       sync_tolerance_ms=sync_tolerance, view_port=view_port if view else None,
                       max_image_pixels=max_image_pixels, save_outputs=save_outputs)
    inputs = {"--model": model, "--checkpoint": checkpoint}
    for one in specs:
        config.check(one, inputs)
    check_json_path(json_path, {**inputs, **{f"--source {one}": one for one in (source or [])}})
    check_distinct({"--save-video": save_video, "--jsonl": jsonl, "--record": record, "--json": json_path})
    with json_stdout(json_path):
        if model is None:
            with working("building the default detector (once)") as step:
                model = str(default_model_file(progress=step))
        backend_ = open_model(model, backend, checkpoint=checkpoint, device=device, plugin_lib=plugin_lib)
        if not (camera or source) and not is_detector(backend_):
            with working("running on random inputs"):
                report = run_random(backend_, config, warn=warn)
        else:
            with counting(f"running on {', '.join(specs)}", "steps" if len(specs) > 1 else "frames") as progress:
                report = run(backend_, spec, config, warn=warn, inform=inform, progress=progress)
    if (note := shipped_weights_note(report["model"])) is not None:
        report["model"]["weights_note"] = note
    human_console(json_path).print(format_table(report), soft_wrap=True, markup=False, highlight=False)
    if json_path:
        write_json(report, json_path)
    if report.get("interrupted"):
        raise typer.Exit(143 if report.get("signal") == "SIGTERM" else 130)
    if report.get("error"):
        raise FaultError(f"the run stopped early: {report['error']}")


@app.command("bench")
def bench_cmd(
    models: Optional[str] = typer.Option(None, "--models", help="Comma-separated model names or exported files "
                                         "(.onnx, engines: any model's, on random inputs of its shapes) "
                                         "(default: vmamba_tiny_det, vim_tiny_det, deit_tiny_det)."),
    sizes: Optional[str] = typer.Option(None, "--sizes", help="Comma-separated HxW sizes (default: 512x512, 720x1280, "
                                        "1080x1920, 1248x1248, 2160x3840; --quick: 256x256, 384x640, 720x1280)."),
    quick: bool = typer.Option(False, "--quick", help="Small sizes, one timed pass: a few minutes on a CPU."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda (PyTorch backend)."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Timed passes per measurement (after one warm-up)."),
    json_path: Optional[str] = json_option(),
    plot_path: Optional[str] = typer.Option(None, "--plot", help="Write a PNG of latency and memory against pixels."),
):
    """Latency and peak memory of the detectors and a DeiT-Tiny-size ViT baseline against resolution."""
    from avssm import bench as B
    from avssm.export.onnx_export import parse_input_size

    names = [m.strip() for m in models.split(",")] if models else list(B.DEFAULT_MODELS)
    size_list = [parse_input_size(s.strip(), "--sizes") for s in sizes.split(",")] if sizes else list(
        B.QUICK_SIZES if quick else B.DEFAULT_SIZES)
    check_json_path(json_path)
    if plot_path:
        check_output(plot_path, "--plot", inputs={"--json": json_path})
    with json_stdout(json_path), working("benchmarking") as step:
        report = B.bench(names, size_list, device=device, repeats=1 if quick else repeats, progress=step)
    table = Table(title=f"avssm bench ({device})")
    for col in ("model", "size HxW", "latency p50 ms", "peak memory MiB"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for e in report["entries"]:
        size = f"{e['height']}x{e['width']}" if e.get("pixels") else ", ".join(
            f"{name}[{','.join(map(str, shape))}]" for name, shape in (e.get("inputs") or {}).items())
        if "error" in e:
            table.add_row(e["model"], size, "-", e["error"][:40])
        else:
            table.add_row(e["model"], size, f"{e['latency_ms']['inference']['p50']:.1f}", f"{e['memory']['peak_mib']:.0f}")
    human = human_console(json_path)
    human.print(table)
    for model, fit in report["fits"].items():
        if sum(e["model"] == model for e in report["entries"]) < 2:
            continue  # one measurement (a file at its exported shapes): nothing to fit
        lat, mem = fit["latency_exponent"], fit["memory_exponent"]
        human.print(f"{model}: latency ~ pixels^{lat:.2f}, memory ~ pixels^{mem:.2f}" if lat is not None and mem is not None
                    else f"{model}: not enough points to fit")
    if json_path:
        write_json(report, json_path)
    if plot_path:
        B.plot(report, plot_path)
        human.print(f"plot: {plot_path}")


@app.command("generate-data")
def generate_data_cmd(
    out_dir: str = typer.Argument(..., help="Folder for images/, annotations.json (COCO) and clip.mp4."),
    count: int = typer.Option(200, "--count", min=1, help="Frames to render."),
    seed: int = typer.Option(0, "--seed", help="First seed; frame i uses seed + i (deterministic)."),
    size: str = typer.Option("1080x1920", "--size", help="Frame size HxW."),
    clip_frames: int = typer.Option(0, "--clip-frames", min=0, help="Also write clip.mp4 with this many frames."),
    workers: int = typer.Option(1, "--workers", min=1, help="Render in this many processes (same output for any number)."),
):
    """Render procedural road scenes with COCO boxes (car, truck, pedestrian, cyclist, sign, light)."""
    from rich.progress import Progress

    from avssm.datasets.roads import write_dataset
    from avssm.sizes import parse_size

    h, w = parse_size(size, "--size")
    check_output_dir(out_dir, "OUT_DIR")
    with Progress(console=console) as bar:
        task = bar.add_task("rendering", total=count)
        path = write_dataset(out_dir, count, seed, h, w, workers=workers,
                             progress=lambda i, n: bar.update(task, completed=i))
    console.print(f"wrote {count} frames and {path}", markup=False)
    if clip_frames:
        import cv2

        from avssm.datasets.roads import render_scene

        writer = cv2.VideoWriter(f"{out_dir}/clip.mp4", cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (w, h))
        for i in range(clip_frames):
            writer.write(render_scene(seed + count + i, h, w)[0])
        writer.release()
        console.print(f"wrote {out_dir}/clip.mp4 ({clip_frames} frames)", markup=False)


@app.command("eval")
def eval_cmd(
    models: list[str] = typer.Argument(..., help="ONNX files / engines from avssm export/build, or registered model "
                                       "names; several give one table (e.g. fp32, fp16 and INT8 of one detector)."),
    data: str = typer.Option(..., "--data", help="COCO annotation JSON."),
    images: str = typer.Option(..., "--images", help="Folder of the images it lists."),
    backend: str = typer.Option("auto", "--backend", help="As for avssm run."),
    checkpoint: Optional[str] = checkpoint_option("Weights for registered model names."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", min=1, help="Evaluate the first N images only."),
    device: str = typer.Option("cpu", "--device", help="For --backend torch: cpu or cuda."),
    json_path: Optional[str] = typer.Option(None, "--json", metavar="PATH", help="Write a JSON list, one result per "
                                            "model, to this file, or to stdout with '-' (the table then goes to stderr)."),
):
    """COCO mAP (pycocotools) of models through the runtime's backends and pre/post-processing."""
    from rich.progress import Progress
    from rich.table import Table

    from avssm.evaluate import evaluate

    # Progress on stderr: stdout is the table or the JSON. Off a terminal (logs, `--json > f`) rich draws no
    # bar, so a line about every tenth of the images instead.
    log = make_console(stderr=True)
    check_json_path(json_path, {"--data": data})
    results = []
    with json_stdout(json_path), Progress(console=log, transient=True) as bar:
        for model in models:
            task = bar.add_task(f"evaluating {model}", total=None)

            def progress(i, n, task=task, model=model):
                bar.update(task, completed=i, total=n)
                if not log.is_terminal and (i == 1 or i == n or i % max(1, n // 10) == 0):
                    log.print(f"avssm: evaluating {model}: {i}/{n} images", markup=False)

            results.append(evaluate(model, data, images, backend=backend, checkpoint=checkpoint,
                                    max_frames=max_frames, device=device, progress=progress, warn=warn))
            results[-1]["file"] = model
    if json_path:
        write_json(results, json_path)
    from rich import box

    table = Table(title=f"COCO mAP on {results[0]['images']} images of {data}", box=box.SIMPLE)
    table.caption = "mAP@[.5:.95], @.5, @.75; S/M/L: mAP of small/medium/large objects"
    table.add_column("model", overflow="fold", min_width=12)
    table.add_column("runs as")
    for column in ("mAP", "@.5", "@.75", "S", "M", "L"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(r["file"], f"{r['backend']} {r['precision']}", *(f"{r[k]:.3f}" for k in (
            "map", "map50", "map75", "map_small", "map_medium", "map_large")))
    human_console(json_path).print(table)


@app.command("train")
def train_cmd(
    model: str = typer.Argument(..., help="Detector to train (e.g. vim_tiny_det, vmamba_tiny_det)."),
    data: str = typer.Option(..., "--data", help="COCO annotation JSON (e.g. from avssm generate-data)."),
    images: str = typer.Option(..., "--images", help="Folder of the images it lists."),
    checkpoint: Optional[str] = checkpoint_option("Start from these weights (ImageNet backbone or detector)."),
    epochs: int = typer.Option(10, "--epochs", min=1, help="Passes over the training images."),
    batch: int = typer.Option(4, "--batch", min=1, help="Images per optimizer step."),
    input_size: str = typer.Option("1080x1920", "--input-size", help="Size HxW the detector will see: frames are fitted "
                                   "into it with scale jitter (0.8-1.25)."),
    crop: Optional[str] = typer.Option(None, "--crop", help="Train on random HxW crops of the fitted frames (default: "
                                       "the whole input size)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Data loader processes (default: min(8, CPUs))."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", min=0.01, help="Minutes: the schedule follows whichever of "
                                                "steps and time is further along; stops when either runs out."),
    half_final: bool = typer.Option(False, "--half-final", help="Store final.pth's weights in fp16 (half the size)."),
    lr: float = typer.Option(1e-3, "--lr", min=0.0, help="Peak learning rate (AdamW), after the linear warm-up and "
                             "before the cosine decay to zero."),
    out: str = typer.Option("runs/train", "--out", help="Folder for last.pth and final.pth."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pth."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Stop after this many optimizer steps."),
):
    """Train a detector (FCOS losses, AdamW, warm-up + cosine, AMP on GPU); checkpoints carry the config."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from avssm.sizes import parse_size
    from avssm.train import train

    size = parse_size(input_size, "--input-size")
    crop_size = parse_size(crop, "--crop") if crop else None
    columns = [TextColumn("step {task.completed}/{task.total}"), BarColumn(), TextColumn("loss {task.fields[loss]:.3f}"),
               TimeRemainingColumn()]
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("train", total=None, loss=float("nan"))
        result = train(model, data, images, out_dir=out, epochs=epochs, batch=batch, input_size=size, crop=crop_size,
                       lr=lr, checkpoint=checkpoint, resume=resume, max_steps=max_steps, workers=workers,
                       time_budget_s=time_budget * 60 if time_budget else None, half_final=half_final,
                       progress=lambda step, total, loss, eta: bar.update(task, completed=step, total=total, loss=loss))
    console.print(f"{result['steps']} steps; checkpoint {result['checkpoint']}", markup=False)


@app.command("calib")
def calib_cmd(
    model: str = typer.Argument(..., help="fp32 ONNX file from `avssm export` (plugin or portable form)."),
    data: str = typer.Option(..., "--data", help="Calibration frames: video, image folder, image, stream URL or a "
                             "COCO JSON (its images/ folder); for any model, a folder of .npz samples (one array "
                             "per input, numpy.savez)."),
    output: str = typer.Option(..., "--output", "-o", help="INT8 Q/DQ file to write (a plugin-form input also gets "
                               "OUTPUT.portable.onnx, its ONNX Runtime twin)."),
    frames: int = typer.Option(CalibOptions.frames, "--frames", min=1, help="Calibration frames to read."),
    holdout: int = typer.Option(CalibOptions.holdout, "--holdout", min=0,
                                help="Further frames, never calibrated on, for the fidelity report."),
    min_frames: int = typer.Option(CalibOptions.min_frames, "--min-frames", min=1,
                                   help="Fail when fewer calibration frames can be read."),
    method: str = typer.Option(CalibOptions.method, "--method", help="entropy, minmax or percentile."),
    op_types: Optional[str] = typer.Option(None, "--op-types", help="Comma-separated op types to quantize "
                                           "(default Conv,MatMul,Gemm)."),
    keep: Optional[list[str]] = typer.Option(None, "--keep", help="Regex of node (or weight) names kept in higher precision; "
                                             "repeat; replaces the default list (scan, x_proj/dt_proj, head decode)."),
    resize: Optional[str] = typer.Option(None, "--resize", help="Resize frames to HxW first (for fixed-size models)."),
    json_path: Optional[str] = typer.Option(None, "--json", metavar="PATH", help="Write the fidelity report as JSON "
                                            "to this file, or to stdout with '-' (the summary then goes to stderr)."),
):
    """INT8 with explicit Q/DQ (TensorRT 10/11 strongly typed) calibrated on real frames, with a fidelity report."""
    from avssm.calib import DEFAULT_KEEP, DEFAULT_OP_TYPES, calibrate
    from avssm.calib.quantize import portable_twin_path
    from avssm.sizes import parse_size

    size = parse_size(resize, "--resize") if resize else None
    check_json_path(json_path, {"MODEL": model, "--data": data, "--output": output,
                                "--output's portable twin": portable_twin_path(Path(output))})
    with json_stdout(json_path), working("calibrating") as step:
        result = calibrate(model, data, output, frames=frames, holdout=holdout, min_frames=min_frames, method=method,
                           op_types=tuple(op_types.split(",")) if op_types else DEFAULT_OP_TYPES,
                           keep=tuple(keep) if keep else DEFAULT_KEEP, resize=size, progress=step, warn=warn)
    if json_path:
        write_json(result, json_path)
    human = human_console(json_path)
    human.print(f"wrote {result['output']} ({result['form']} form, {result['method']}, "
                f"{result['calibration_frames']} {result['data']}, {result['quantized_nodes']} nodes quantized, "
                f"{len(result['kept_nodes'])} kept in higher precision)", markup=False)
    if result["portable_twin"]:
        human.print(f"wrote {result['portable_twin']} (the same INT8 graph in standard ops, for ONNX Runtime)",
                    markup=False)
    for name, r in result["outputs"].items():
        human.print(f"{name}: SQNR {r['sqnr_db']:.1f} dB, cosine {r['cosine']:.6f}, max abs error "
                    f"{r['max_abs_error']:.4g} on {result['heldout_frames']} held-out {result['data']}", markup=False)


@app.command("build")
def build_cmd(
    onnx_file: str = typer.Argument(..., help="ONNX file from `avssm export`."),
    output: str = typer.Option(..., "--output", "-o", help="Engine file to write (a plain TensorRT plan; "
                               "its metadata goes to OUTPUT.json)."),
    plugin_lib: Optional[str] = typer.Option(None, "--plugin-lib", help="avssm TensorRT plugin (default: the one found)."),
    min_shape: Optional[List[str]] = typer.Option(None, "--min-shape", help="Dynamic input: smallest NxCxHxW; a "
                                                  "model of several dynamic inputs: NAME=shape, repeated."),
    opt_shape: Optional[List[str]] = typer.Option(None, "--opt-shape", help="Dynamic input: shape to optimize for "
                                                  "(NAME=shape, repeated, for several)."),
    max_shape: Optional[List[str]] = typer.Option(None, "--max-shape", help="Dynamic input: largest NxCxHxW "
                                                  "(NAME=shape, repeated, for several)."),
    timing_cache: Optional[str] = typer.Option(None, "--timing-cache", help="Timing cache file (read and updated)."),
    workspace: int = typer.Option(4096, "--workspace", min=1, help="Builder workspace limit, MiB."),
):
    """Build a TensorRT engine (strongly typed: precision comes from the ONNX file) with the avssm plugin."""
    from avssm.runtime.tensorrt_backend import build_engine

    def shape(texts, flag):
        """['1x3x720x1280'] -> (1, 3, 720, 1280); ['x=1x24x8', 'y=1x24x8'] -> {'x': (1, 24, 8), 'y': ...}."""
        if not texts:
            return None
        named = {}
        for text in texts:
            name, _, dims = text.rpartition("=")
            try:
                named[name] = tuple(int(v) for v in dims.lower().split("x"))
            except ValueError:
                raise AvssmError(f"{flag} {text}: expected NxCxHxW (1x3x1080x1920), or NAME=shape for a model of "
                                 "several inputs") from None
        if "" in named and len(texts) > 1:
            raise AvssmError(f"{flag}: given {len(texts)} times; name each input's shape, NAME=shape")
        return named[""] if "" in named else named

    info = build_engine(onnx_file, output, plugin_lib=plugin_lib, min_shape=shape(min_shape, "--min-shape"),
                        opt_shape=shape(opt_shape, "--opt-shape"), max_shape=shape(max_shape, "--max-shape"),
                        timing_cache=timing_cache, workspace_mib=workspace, log=lambda m: console.print(m, markup=False))
    console.print(f"wrote {output} (TensorRT {info['tensorrt']}, {info['gpu']}) and {output}.json", markup=False)


@app.command("build-plugins")
def build_plugins_cmd(
    tensorrt_root: Optional[str] = typer.Option(None, "--tensorrt-root", envvar="TensorRT_ROOT",
                                                help="TensorRT installation (headers suffice); without it only the kernels build."),
    arch: Optional[str] = typer.Option(None, "--arch", help='CUDA architectures, e.g. "87;90" (default 80;86;87;89;90).'),
    build_dir: Optional[str] = typer.Option(None, "--build-dir", help="Build directory (default ~/.cache/avssm/native-build, where the libraries are looked for)."),
):
    """Build the CUDA kernel library and (with TensorRT headers) the TensorRT plugin with CMake."""
    from avssm.native import KERNEL_LIB, PLUGIN_LIB, build_plugins
    from avssm.native.libraries import build_dirs

    build = build_plugins(build_dir, tensorrt_root, arch, log=lambda line: console.print(line, markup=False))
    for lib in sorted(build.glob("libavssm_*.so")):
        console.print(f"built {lib}", markup=False)
    if build.resolve() not in [d.resolve() for d in build_dirs()]:  # not where avssm looks: say how to point at it
        for variable, name in (("AVSSM_KERNEL_LIB", KERNEL_LIB), ("AVSSM_PLUGIN_LIB", PLUGIN_LIB)):
            if (build / name).is_file():
                console.print(f"avssm looks in {', '.join(str(d) for d in build_dirs())}: for these, "
                              f"export {variable}={build / name}", markup=False)


@app.command("doctor")
def doctor_cmd(json_path: Optional[str] = json_option()):
    """Report PyTorch/CUDA/GPU, TensorRT, ONNX Runtime providers and avssm's native libraries."""
    from avssm.doctor import doctor

    check_json_path(json_path)
    with json_stdout(json_path):
        report = doctor()
    if json_path:
        write_json(report, json_path)
    console = human_console(json_path)
    t = report["torch"]
    console.print(f"PyTorch: {t['version'] + (' CUDA ' + str(t['cuda']) if t['cuda'] else ' (CPU build)') if t else 'not installed'}"
                  + (f"; GPU: {t['gpu']}" if t and t.get('gpu') else "; no GPU visible"), markup=False)
    console.print(f"TensorRT: {report['tensorrt'] or 'not installed'}", markup=False)
    o = report["onnxruntime"]
    console.print(f"ONNX Runtime: {o['version'] + ' ' + ', '.join(o['providers']) if o else 'not installed'}", markup=False)
    k = report["kernel_library"]
    console.print(f"CUDA kernel library: {k['path'] or 'not found (looked at ' + ', '.join(k['looked_in']) + '): avssm build-plugins, or set AVSSM_KERNEL_LIB to a library built elsewhere'}"
                  + (f" ({'loads' if k['loadable'] else 'does not load, or is an older build: avssm build-plugins'})"
                     if k['path'] else ""), markup=False)
    p = report["trt_plugin_library"]
    state = "loads, exports the loader entry points" if p["ok"] else p["problem"]
    console.print(f"TensorRT plugin library: {p['path'] + ' (' + state + ')' if p['path'] else state}", markup=False)
    if p["path"]:
        console.print("Self-registering plugin library (DeepStream, Triton, trtexec --staticPlugins, ONNX Runtime): "
                      f"{p['autoregister'] or 'not built (rebuild with avssm build-plugins)'}", markup=False)
    cpu = report["cpu_scan_kernel"]
    console.print(f"CPU scan kernel: {'built' if cpu else 'no PyTorch (not needed to run engines)' if cpu is None else 'unavailable (no C compiler)'}",
                  markup=False)
    op = report["onnxruntime_scan_op"] or ("unavailable (no ONNX Runtime or C compiler): plugin-form files run "
                                           "their scans as standard ops")
    console.print(f"ONNX Runtime SelectiveScan op (plugin-form files on the CPU): {op}", markup=False)
    for problem in report["compatibility"]:
        console.print(f"does not fit: {problem}", markup=False)


_terminated = threading.Event()


def _terminate(signum, frame):
    """SIGTERM -> Terminated, which takes Ctrl-C's path (report, clean-up); a second SIGTERM does not cut the
    clean-up short. Click and typer turn it into their Abort or exit code 130 on the way: the event tells 143."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _terminated.set()
    raise Terminated()


# What --help shows for an option's value, by its long name; other values show N (int), X (float) or TEXT
METAVARS = {"--output": "PATH", "--data": "PATH", "--images": "FOLDER", "--model": "MODEL", "--models": "MODEL",
            "--checkpoint": "FILE", "--source": "SOURCE", "--camera": "CAMERA", "--topic": "TOPIC",
            "--input-size": "HxW", "--resize": "HxW", "--crop": "HxW", "--sizes": "HxW", "--size": "HxW",
            "--save-video": "PATH", "--jsonl": "PATH", "--record": "PATH", "--plugin-lib": "PATH",
            "--timing-cache": "PATH", "--out": "FOLDER", "--build-dir": "FOLDER", "--tensorrt-root": "FOLDER",
            "--backend": "BACKEND", "--device": "DEVICE", "--scan-op": "FORM", "--precision": "PRECISION",
            "--method": "METHOD", "--op-types": "TYPES", "--keep": "REGEX", "--arch": "ARCHS", "--drop": "POLICY",
            "--min-shape": "SHAPE", "--opt-shape": "SHAPE", "--max-shape": "SHAPE", "--input": "NAME=SHAPE",
            "--output-name": "NAME", "--forms": "FORM"}


def command():
    """The click-style command of ``app``, each value's metavar named for --help (typer shows <str>, <list[str]>
    and {model} otherwise)."""
    def no_type(ctx=None):  # flags and arguments: no "<bool>" / "<str>" column
        return None

    def help_without_type(ctx, _original):
        option = _original(ctx)
        if option is not None:
            option.display_type_rich = no_type
        return option

    root = typer.main.get_command(app)
    for sub in [root, *getattr(root, "commands", {}).values()]:
        sub.get_help_option = functools.partial(help_without_type, _original=sub.get_help_option)
        for param in sub.params:
            if getattr(param, "is_flag", False) or param.param_type_name == "argument":
                param.display_type_rich = no_type
                if param.param_type_name == "argument" and param.metavar is None:
                    param.metavar = param.name.upper()
                continue
            if param.metavar is None:
                long = next((o for o in param.opts if o.startswith("--")), "")
                kind = param.bare_type().removeprefix("list[").removesuffix("]")
                param.metavar = METAVARS.get(long) or {"int": "N", "float": "X"}.get(kind, "TEXT")
    return root


def main(argv: Optional[list[str]] = None) -> None:
    """The console entry point: runs one command and exits with its code (see the module docstring)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    # OpenCV's own warnings ("[ WARN:0@0.01] can't open camera by index") repeat what avssm says in one line
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    try:
        code = command()(args=argv, prog_name="avssm", standalone_mode=False)
    except AvssmError as e:
        print(f"avssm: error: {e}", file=sys.stderr)
        code = e.exit_code
    except ModuleNotFoundError as e:
        if e.name != "torch":
            raise
        print("avssm: error: this command needs PyTorch (pip install torch); running exported files does not "
              "(avssm run --model FILE.onnx, avssm calib, avssm build, avssm doctor)", file=sys.stderr)
        code = 2
    except typer.Exit as e:
        code = e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        code = 130
    except Exception as e:
        if not _is_usage_error(e):
            raise
        code = _show_usage_error(e)
    if code == 130 and _terminated.is_set():
        code = 143
    if code == 130:
        print("avssm: interrupted", file=sys.stderr)
    elif code == 143:
        print("avssm: terminated (SIGTERM)", file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)


def _is_usage_error(e: Exception) -> bool:
    """Click's usage errors (bad flag, missing argument), from click or from the copy newer typer ships;
    recognized by their interface, so avssm needs neither click nor typer's private modules."""
    return (type(e).__module__.split(".")[0] in ("click", "typer") and callable(getattr(e, "show", None))
            and isinstance(getattr(e, "exit_code", None), int))


def _show_usage_error(e: Exception) -> int:
    """One line naming the flag and the fix, like every other avssm error; bare `avssm` shows the help."""
    if type(e).__name__ == "NoArgsIsHelpError":
        e.show()
        return 2
    ctx = getattr(e, "ctx", None)
    command = ctx.command_path if ctx is not None else "avssm"
    message = " ".join(e.format_message().split())
    print(f"avssm: error: {message} (see '{command} --help')", file=sys.stderr)
    return e.exit_code


if __name__ == "__main__":
    main()
