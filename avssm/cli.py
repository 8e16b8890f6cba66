"""The ``avssm`` command line: a thin layer over the library (avssm.models, avssm.runtime, ...).

User errors (bad names, files, sizes) print one line and exit 2, without a traceback.
"""
from __future__ import annotations

import json
import sys
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from avssm.errors import AvssmError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="avssm: VMamba and Vim perception models for the edge.")
console = Console()


def human_console(json_path: Optional[str]) -> Console:
    """Where a command that takes `--json PATH` prints its table: stderr when the JSON goes to stdout ('-')."""
    return Console(stderr=True) if json_path == "-" else console


@app.command("models")
def models_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")):
    """List every registered model with its task and parameter count."""
    from avssm.models import describe_models

    rows = describe_models()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="avssm models")
    for col in ("name", "task", "family", "params"):
        table.add_column(col, justify="right" if col == "params" else "left")
    for r in rows:
        table.add_row(r["name"], r["task"], r["family"], f"{r['params'] / 1e6:.2f}M")
    console.print(table)


@app.command("export")
def export_cmd(
    model: str = typer.Argument(..., help="Registered model name (see `avssm models`)."),
    output: str = typer.Option(..., "--output", "-o", help="Path of the .onnx file to write."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", "-c", help="Weights (official or avssm .pth)."),
    input_size: str = typer.Option("1080x1920", "--input-size", help="Export (and, with --dynamic, optimal) size HxW."),
    dynamic: bool = typer.Option(False, "--dynamic", help="Symbolic batch, height and width."),
    batch: int = typer.Option(1, "--batch", help="Batch size of the example input."),
    scan_op: str = typer.Option("plugin", "--scan-op",
                                help="plugin: SelectiveScan nodes for TensorRT + the avssm plugin; portable: standard ops only."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 or fp16 (scan A/D/delta_bias and state stay fp32)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (>= 17)."),
    verify: bool = typer.Option(False, "--verify", help="Run the file and PyTorch on the same input and print the errors."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
):
    """Export a model to ONNX (plugin or portable form) with the metadata the runtime reads."""
    from avssm.export.onnx_export import export_onnx, parse_input_size

    size = parse_input_size(input_size)
    with console.status("exporting ...") as status:
        result = export_onnx(model, output, checkpoint=checkpoint, input_size=size, dynamic=dynamic, batch=batch,
                             scan_op=scan_op, precision=precision, opset=opset, verify=verify,
                             progress=lambda message: status.update(f"{message} ..."))
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    for v in result.verification:
        console.print(f"verify {v['size'][0]}x{v['size'][1]} {v['output']}: max abs {v['max_abs']:.3e}, "
                      f"max rel {v['max_rel']:.3e}{'' if v['finite'] else ', NON-FINITE values'} ({v['runtime']})")
    console.print(result.summary(), soft_wrap=True, markup=False, highlight=False)


@app.command("run")
def run_cmd(
    camera: Optional[str] = typer.Option(None, "--camera", help="Camera: index (0), /dev/videoN, or gst:<pipeline>."),
    source: Optional[str] = typer.Option(None, "--source", help="Video file, rtsp/http URL, image folder or image."),
    model: Optional[str] = typer.Option(None, "--model", "-m",
                                        help="ONNX file from `avssm export`, or a registered model name (PyTorch). "
                                             "Default: the shipped trained vmamba_nano_det, exported once into ~/.cache/avssm."),
    backend: str = typer.Option("auto", "--backend", help="auto, onnxruntime, onnxruntime-cuda, onnxruntime-tensorrt, torch."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", "-c", help="Weights for the torch backend."),
    device: str = typer.Option("cpu", "--device", help="Device for the torch backend (cpu, cuda)."),
    plugin_lib: Optional[str] = typer.Option(None, "--plugin-lib", help="avssm TensorRT plugin library."),
    resize: Optional[str] = typer.Option(None, "--resize", help="Resize frames to WIDTHxHEIGHT (default: keep full resolution)."),
    drop: Optional[str] = typer.Option(None, "--drop", help="oldest (default for cameras/streams) or none (default for files)."),
    realtime: bool = typer.Option(False, "--realtime", help="Play a video file at its own frame rate, like a camera."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Stop after this many frames (after warm-up)."),
    warmup: int = typer.Option(1, "--warmup", help="Frames run before timing starts."),
    score_threshold: float = typer.Option(0.3, "--score-threshold", help="Minimum detection score."),
    iou_threshold: float = typer.Option(0.6, "--iou-threshold", help="Class-aware NMS IoU threshold."),
    show: bool = typer.Option(False, "--show", help="Show a window with boxes and live FPS."),
    save_video: Optional[str] = typer.Option(None, "--save-video", help="Write the frames with boxes to this video."),
    jsonl: Optional[str] = typer.Option(None, "--jsonl", help="Write one line of detections per frame."),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write the report (and environment) as JSON to "
                                            "this file, or to stdout with '-' (the table then goes to stderr)."),
):
    """Run a detector on camera frames, a video or images and report latency per stage and memory.

    With no --camera/--source it runs the default detector on the short sample clip shipped with avssm.
    """
    from avssm.runtime import default_model_file, default_sample_clip, format_table, run
    from avssm.sizes import parse_size

    if camera and source:
        raise AvssmError("--camera and --source: give one of them")
    spec = camera or source or str(default_sample_clip())
    if model is None:
        with console.status("building the default detector (once) ...") as status:
            model = str(default_model_file(progress=lambda m: status.update(f"{m} ...")))
    with console.status(f"running on {spec} ..."):
        report = run(model, spec, camera=camera is not None, backend=backend, checkpoint=checkpoint, device=device,
                     plugin_lib=plugin_lib, resize=parse_size(resize, "--resize", "WxH") if resize else None,
                     drop=drop, realtime=realtime, max_frames=max_frames,
                     warmup=warmup, score_threshold=score_threshold, iou_threshold=iou_threshold, show=show,
                     save_video=save_video, jsonl=jsonl)
    if json_path:
        from avssm.runtime.report import write_json

        write_json(report, json_path)
    human_console(json_path).print(format_table(report), soft_wrap=True, markup=False, highlight=False)
    if report.get("error"):
        raise typer.Exit(1)


@app.command("bench")
def bench_cmd(
    models: Optional[str] = typer.Option(None, "--models", help="Comma-separated model names "
                                         "(default: vmamba_tiny_det, vim_tiny_det, deit_tiny_det)."),
    sizes: Optional[str] = typer.Option(None, "--sizes", help="Comma-separated HxW sizes (default: 512x512, 720x1280, "
                                        "1080x1920, 1248x1248, 2160x3840; --quick: 256x256, 384x640, 720x1280)."),
    quick: bool = typer.Option(False, "--quick", help="Small sizes, one timed pass: a few minutes on a CPU."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda (PyTorch backend)."),
    repeats: int = typer.Option(3, "--repeats", help="Timed passes per measurement (after one warm-up)."),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write the report as JSON to this file, or to stdout "
                                            "with '-' (the table then goes to stderr)."),
    plot_path: Optional[str] = typer.Option(None, "--plot", help="Write a PNG of latency and memory against pixels."),
):
    """Latency and peak memory of the detectors and a DeiT-Tiny-size ViT baseline against resolution."""
    from avssm import bench as B
    from avssm.export.onnx_export import parse_input_size

    names = [m.strip() for m in models.split(",")] if models else list(B.DEFAULT_MODELS)
    size_list = [parse_input_size(s.strip()) for s in sizes.split(",")] if sizes else list(
        B.QUICK_SIZES if quick else B.DEFAULT_SIZES)
    with console.status("benchmarking ...") as status:
        report = B.bench(names, size_list, device=device, repeats=1 if quick else repeats,
                         progress=lambda m: status.update(f"{m} ..."))
    table = Table(title=f"avssm bench ({device})")
    for col in ("model", "size", "latency p50 ms", "peak memory MiB"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for e in report["entries"]:
        size = f"{e['width']}x{e['height']}"
        if "error" in e:
            table.add_row(e["model"], size, "-", e["error"][:40])
        else:
            table.add_row(e["model"], size, f"{e['latency_ms']['inference']['p50']:.1f}", f"{e['memory']['peak_mib']:.0f}")
    human = human_console(json_path)
    human.print(table)
    for model, fit in report["fits"].items():
        lat, mem = fit["latency_exponent"], fit["memory_exponent"]
        human.print(f"{model}: latency ~ pixels^{lat:.2f}, memory ~ pixels^{mem:.2f}" if lat is not None and mem is not None
                    else f"{model}: not enough points to fit")
    if json_path:
        from avssm.runtime.report import write_json

        write_json(report, json_path)
    if plot_path:
        B.plot(report, plot_path)
        human.print(f"plot: {plot_path}")


@app.command("generate-data")
def generate_data_cmd(
    out_dir: str = typer.Argument(..., help="Folder for images/, annotations.json (COCO) and clip.mp4."),
    count: int = typer.Option(200, "--count", help="Frames to render."),
    seed: int = typer.Option(0, "--seed", help="First seed; frame i uses seed + i (deterministic)."),
    size: str = typer.Option("1080x1920", "--size", help="Frame size HxW."),
    clip_frames: int = typer.Option(0, "--clip-frames", help="Also write clip.mp4 with this many frames."),
    workers: int = typer.Option(1, "--workers", help="Render in this many processes (same output for any number)."),
):
    """Render procedural road scenes with COCO boxes (car, truck, pedestrian, cyclist, sign, light)."""
    from rich.progress import Progress

    from avssm.datasets.roads import write_dataset
    from avssm.sizes import parse_size

    h, w = parse_size(size)
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
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", "-c", help="Weights for registered model names."),
    max_images: Optional[int] = typer.Option(None, "--max-images", help="Evaluate the first N images only."),
    device: str = typer.Option("cpu", "--device", help="For --backend torch: cpu or cuda."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list, one result per model."),
):
    """COCO mAP (pycocotools) of models through the runtime's backends and pre/post-processing."""
    from rich.progress import Progress
    from rich.table import Table

    from avssm.evaluate import evaluate

    # Progress on stderr: stdout is the table or the JSON. Off a terminal (logs, `--json > f`) rich draws no
    # bar, so a line about every tenth of the images instead.
    log = Console(stderr=True)
    results = []
    with Progress(console=log, transient=True) as bar:
        for model in models:
            task = bar.add_task(f"evaluating {model}", total=None)

            def progress(i, n, task=task, model=model):
                bar.update(task, completed=i, total=n)
                if not log.is_terminal and (i == 1 or i == n or i % max(1, n // 10) == 0):
                    log.print(f"evaluating {model}: {i}/{n} images", markup=False)

            results.append(evaluate(model, data, images, backend=backend, checkpoint=checkpoint,
                                    max_images=max_images, device=device, progress=progress))
            results[-1]["file"] = model
    if as_json:
        print(json.dumps(results, indent=2))
        return
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
    console.print(table)


@app.command("train")
def train_cmd(
    model: str = typer.Argument(..., help="Detector to train (e.g. vim_tiny_det, vmamba_tiny_det)."),
    data: str = typer.Option(..., "--data", help="COCO annotation JSON (e.g. from avssm generate-data)."),
    images: str = typer.Option(..., "--images", help="Folder of the images it lists."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", "-c", help="Start from these weights (ImageNet backbone or detector)."),
    epochs: int = typer.Option(10, "--epochs"),
    batch: int = typer.Option(4, "--batch"),
    input_size: str = typer.Option("1080x1920", "--input-size", help="Size HxW the detector will see: frames are fitted "
                                   "into it with scale jitter (0.8-1.25)."),
    crop: Optional[str] = typer.Option(None, "--crop", help="Train on random HxW crops of the fitted frames (default: "
                                       "the whole input size)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Data loader processes (default: min(8, CPUs))."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", help="Minutes: the schedule follows whichever of "
                                                "steps and time is further along; stops when either runs out."),
    half_final: bool = typer.Option(False, "--half-final", help="Store final.pth's weights in fp16 (half the size)."),
    lr: float = typer.Option(1e-3, "--lr"),
    out: str = typer.Option("runs/train", "--out", help="Folder for last.pth and final.pth."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pth."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps."),
):
    """Train a detector (FCOS losses, AdamW, warm-up + cosine, AMP on GPU); checkpoints carry the config."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from avssm.sizes import parse_size
    from avssm.train import train

    size = parse_size(input_size)
    crop_size = parse_size(crop) if crop else None
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
                             "COCO JSON (its images/ folder)."),
    output: str = typer.Option(..., "--output", "-o", help="INT8 Q/DQ file to write (a plugin-form input also gets "
                               "OUTPUT.portable.onnx, its ONNX Runtime twin)."),
    frames: int = typer.Option(256, "--frames", help="Calibration frames to read."),
    holdout: int = typer.Option(16, "--holdout", help="Further frames, never calibrated on, for the fidelity report."),
    min_frames: int = typer.Option(8, "--min-frames", help="Fail when fewer calibration frames can be read."),
    method: str = typer.Option("entropy", "--method", help="entropy, minmax or percentile."),
    op_types: Optional[str] = typer.Option(None, "--op-types", help="Comma-separated op types to quantize "
                                           "(default Conv,MatMul,Gemm)."),
    keep: Optional[list[str]] = typer.Option(None, "--keep", help="Regex of node (or weight) names kept in higher precision; "
                                             "repeat; replaces the default list (scan, x_proj/dt_proj, head decode)."),
    resize: Optional[str] = typer.Option(None, "--resize", help="Resize frames to WxH first (for fixed-size models)."),
    report: Optional[str] = typer.Option(None, "--report", help="Write the fidelity report (JSON) here."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
):
    """INT8 with explicit Q/DQ (TensorRT 10/11 strongly typed) calibrated on real frames, with a fidelity report."""
    from avssm.calib import DEFAULT_KEEP, DEFAULT_OP_TYPES, calibrate

    size = None
    if resize:
        try:
            w, h = (int(v) for v in resize.lower().split("x"))
            size = (w, h)
        except ValueError:
            raise AvssmError(f"--resize '{resize}': expected WxH, e.g. 1920x1080") from None
    with console.status("calibrating ...") as status:
        result = calibrate(model, data, output, frames=frames, holdout=holdout, min_frames=min_frames, method=method,
                           op_types=tuple(op_types.split(",")) if op_types else DEFAULT_OP_TYPES,
                           keep=tuple(keep) if keep else DEFAULT_KEEP, resize=size, report_path=report,
                           progress=lambda message: status.update(f"{message} ..."))
    if as_json:
        print(json.dumps(result, indent=2))
        return
    console.print(f"wrote {result['output']} ({result['form']} form, {result['method']}, "
                  f"{result['calibration_frames']} frames, {result['quantized_nodes']} nodes quantized, "
                  f"{len(result['kept_nodes'])} kept in higher precision)", markup=False)
    if result["portable_twin"]:
        console.print(f"wrote {result['portable_twin']} (the same INT8 graph in standard ops, for ONNX Runtime)",
                      markup=False)
    for name, r in result["outputs"].items():
        console.print(f"{name}: SQNR {r['sqnr_db']:.1f} dB, cosine {r['cosine']:.6f}, max abs error "
                      f"{r['max_abs_error']:.4g} on {result['heldout_frames']} held-out frames", markup=False)


@app.command("build")
def build_cmd(
    onnx_file: str = typer.Argument(..., help="ONNX file from `avssm export`."),
    output: str = typer.Option(..., "--output", "-o", help="Engine file to write (a plain TensorRT plan; "
                               "its metadata goes to OUTPUT.json)."),
    plugin_lib: Optional[str] = typer.Option(None, "--plugin-lib", help="avssm TensorRT plugin (default: the one found)."),
    min_shape: Optional[str] = typer.Option(None, "--min-shape", help="Dynamic input: smallest NxCxHxW."),
    opt_shape: Optional[str] = typer.Option(None, "--opt-shape", help="Dynamic input: shape to optimize for."),
    max_shape: Optional[str] = typer.Option(None, "--max-shape", help="Dynamic input: largest NxCxHxW."),
    timing_cache: Optional[str] = typer.Option(None, "--timing-cache", help="Timing cache file (read and updated)."),
    workspace: int = typer.Option(4096, "--workspace", help="Builder workspace limit, MiB."),
):
    """Build a TensorRT engine (strongly typed: precision comes from the ONNX file) with the avssm plugin."""
    from avssm.runtime.tensorrt_backend import build_engine

    def shape(text):
        if text is None:
            return None
        try:
            return tuple(int(v) for v in text.lower().split("x"))
        except ValueError:
            raise AvssmError(f"shape '{text}': expected NxCxHxW, e.g. 1x3x1080x1920") from None

    info = build_engine(onnx_file, output, plugin_lib=plugin_lib, min_shape=shape(min_shape), opt_shape=shape(opt_shape),
                        max_shape=shape(max_shape), timing_cache=timing_cache, workspace_mib=workspace,
                        log=lambda m: console.print(m, markup=False))
    console.print(f"wrote {output} (TensorRT {info['tensorrt']}, {info['gpu']}) and {output}.json", markup=False)


@app.command("build-plugins")
def build_plugins_cmd(
    tensorrt_root: Optional[str] = typer.Option(None, "--tensorrt-root", envvar="TensorRT_ROOT",
                                                help="TensorRT installation (headers suffice); without it only the kernels build."),
    arch: Optional[str] = typer.Option(None, "--arch", help='CUDA architectures, e.g. "87;90" (default 80;86;87;89;90).'),
    build_dir: Optional[str] = typer.Option(None, "--build-dir", help="Build directory (default plugins/build)."),
):
    """Build the CUDA kernel library and (with TensorRT headers) the TensorRT plugin with CMake."""
    from avssm.native import build_plugins

    build = build_plugins(build_dir, tensorrt_root, arch, log=lambda line: console.print(line, markup=False))
    for lib in sorted(build.glob("libavssm_*.so")):
        console.print(f"built {lib}", markup=False)


@app.command("doctor")
def doctor_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Report PyTorch/CUDA/GPU, TensorRT, ONNX Runtime providers and avssm's native libraries."""
    from avssm.native import doctor

    report = doctor()
    if as_json:
        print(json.dumps(report, indent=2))
        return
    t = report["torch"]
    console.print(f"PyTorch: {t['version'] + (' CUDA ' + str(t['cuda']) if t['cuda'] else ' (CPU build)') if t else 'not installed'}"
                  + (f"; GPU: {t['gpu']}" if t and t.get('gpu') else "; no GPU visible"), markup=False)
    console.print(f"TensorRT: {report['tensorrt'] or 'not installed'}", markup=False)
    o = report["onnxruntime"]
    console.print(f"ONNX Runtime: {o['version'] + ' ' + ', '.join(o['providers']) if o else 'not installed'}", markup=False)
    k = report["kernel_library"]
    console.print(f"CUDA kernel library: {k['path'] or 'not built (avssm build-plugins)'}"
                  + (f" ({'loads' if k['loadable'] else 'does not load, or is an older build: avssm build-plugins'})"
                     if k['path'] else ""), markup=False)
    p = report["trt_plugin_library"]
    state = "loads, exports the loader entry points" if p["ok"] else p["problem"]
    console.print(f"TensorRT plugin library: {p['path'] + ' (' + state + ')' if p['path'] else state}", markup=False)
    cpu = report["cpu_scan_kernel"]
    console.print(f"CPU scan kernel: {'built' if cpu else 'no PyTorch (not needed to run engines)' if cpu is None else 'unavailable (no C compiler)'}",
                  markup=False)
    op = report["onnxruntime_scan_op"] or ("unavailable (no ONNX Runtime or C compiler): plugin-form files run "
                                           "their scans as standard ops")
    console.print(f"ONNX Runtime SelectiveScan op (plugin-form files on the CPU): {op}", markup=False)


def main() -> None:
    try:
        app(standalone_mode=False)
    except AvssmError as e:
        print(f"avssm: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except ModuleNotFoundError as e:
        if e.name != "torch":
            raise
        print("avssm: error: this command needs PyTorch (pip install torch); running exported files does not "
              "(avssm run --model FILE.onnx, avssm calib, avssm build, avssm doctor)", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("avssm: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # usage errors (click's, or the copy of click that typer >= 0.25 ships) exit 2
        if isinstance(e, _usage_error_types()):
            e.show()
            sys.exit(e.exit_code)
        raise


def _usage_error_types() -> tuple:
    import click

    types = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException
        types.append(ClickException)
    except ImportError:
        pass
    return tuple(types)


if __name__ == "__main__":
    main()
