"""Where a training step's time goes: data loading, forward + loss, backward, optimizer; the scan alone.

    python benchmarks/bench_train_step.py [--model vmamba_nano_det] [--batch 16] [--crop 512] [--steps 10]
                                          [--workers 8] [--profile]

Renders a few frames (avssm.datasets.roads), then on the default device (CUDA when present) times each part
of `avssm train`'s step separately (synchronized), the loader's throughput on its own, and the parallel scan's
forward + backward at the model's stage-1 shape. --profile adds torch.profiler's top kernels of one step.
Written after two H100 runs took 0.7-1.0 s per step (batch 16, 512-576 px crops) without knowing why.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch


def timed(fn, device: str, repeat: int) -> float:
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="vmamba_nano_det")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=512)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()

    from avssm.datasets.coco import CocoDataset
    from avssm.datasets.roads import write_dataset
    from avssm.models import create_model
    from avssm.ops import selective_scan_parallel
    from avssm.train import TrainingSet, _collate, detection_loss

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tmp = tempfile.mkdtemp()
    annotations = write_dataset(tmp, count=max(2 * args.batch, 8), seed=0, workers=min(8, args.workers or 1))
    samples = TrainingSet(CocoDataset(annotations, f"{tmp}/images"), (1080, 1920), (args.crop, args.crop), seed=0)
    loader = torch.utils.data.DataLoader(samples, batch_size=args.batch, shuffle=True, drop_last=True,
                                         num_workers=args.workers, collate_fn=_collate)
    t = time.perf_counter()
    batches = [b for b, _ in zip(loader, range(2))]
    print(f"loader: {(time.perf_counter() - t) / (2 * args.batch) * 1e3:.1f} ms per sample with {args.workers} "
          f"workers (incl. start-up)", flush=True)
    x, targets = batches[0]
    x = x.to(device)

    model = create_model(args.model, class_names=tuple(samples.dataset.class_names)).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device, enabled=device == "cuda")
    state = {}

    def forward():
        with torch.autocast(device, dtype=torch.float16, enabled=device == "cuda"):
            state["loss"] = detection_loss(model, x, targets)["loss"]

    def backward():
        forward()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(state["loss"]).backward()

    def step():
        backward()
        scaler.step(optimizer)
        scaler.update()

    t_fwd = timed(forward, device, args.steps)
    t_fb = timed(backward, device, args.steps)
    t_step = timed(step, device, args.steps)
    print(f"{args.model} batch {args.batch} crop {args.crop} on {device}: forward+loss {t_fwd * 1e3:.0f} ms, "
          f"+backward {t_fb * 1e3:.0f} ms, whole step {t_step * 1e3:.0f} ms", flush=True)
    if device == "cuda":
        print(f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB", flush=True)

    # The scan alone at stage 1: dim = 4 directions x stage-0 width, L = (crop / 4)^2.
    width = getattr(model.backbone.config, "dims", [96])[0]
    dim, L = 4 * width, (args.crop // 4) ** 2
    u = torch.randn(args.batch, dim, L, device=device, requires_grad=True)
    delta = torch.randn(args.batch, dim, L, device=device, requires_grad=True)
    A = -torch.rand(dim, 1, device=device) - 0.5
    B = torch.randn(args.batch, 4, 1, L, device=device)
    C = torch.randn(args.batch, 4, 1, L, device=device)
    scan = lambda: selective_scan_parallel(u, delta, A, B, C, delta_softplus=True).sum().backward()  # noqa: E731
    print(f"parallel scan fwd+bwd at (batch {args.batch}, dim {dim}, L {L}, N 1): "
          f"{timed(scan, device, args.steps) * 1e3:.1f} ms", flush=True)

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
        with profile(activities=activities) as prof:
            step()
            if device == "cuda":
                torch.cuda.synchronize()
        key = "cuda_time_total" if device == "cuda" else "cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=15))


if __name__ == "__main__":
    main()
