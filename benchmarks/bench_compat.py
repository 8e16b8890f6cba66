"""Code written against mamba_ssm (and the official VMamba code) on avssm's compatibility layer: its speed.

    python benchmarks/bench_compat.py [--dim 192] [--depth 4] [--length 784] [--repeats 5] [--vmamba-code DIR] [--json]

1. Stand-ins against avssm's own model of the same architecture, eager PyTorch on the CPU, inference:
   a stack of mamba_ssm ``Mamba`` blocks on their fast path (``mamba_inner_fn`` -> avssm's ``causal_conv1d_cuda``
   and ``selective_scan_cuda`` stand-ins) against the same blocks written on avssm's ops (``selective_scan`` with
   the gate), with the same weights: the outputs are compared once. Target: stand-ins within 1.2x.
   With ``--vmamba-code DIR`` (a checkout's ``classification/models``, with timm and fvcore importable), the
   official ``vmamba_tiny_s1l8`` on the ``selective_scan_cuda_oflex`` stand-in and the Triton cross-scan's PyTorch
   path against avssm's ``vmamba_tiny`` loaded with its weights, at 224x224.
2. ONNX Runtime with avssm's op against PyTorch for the mamba_ssm model: exported in the plugin form, the
   SelectiveScan nodes run by avssm's ONNX Runtime op. Target: <= 1.0x. With ``--vmamba-code``, the official
   vmamba_tiny_s1l8 on ONNX Runtime exported fused (one cross-2d node per block, avssm.compat.vmamba) against
   as written (the traversal copies, version 1 nodes, the merge).

Every pair is timed in one process with the same thread count, interleaved (one call of each per round, median of
--repeats rounds after one warm-up).
"""
from __future__ import annotations

import argparse
import io
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F

from avssm import compat, native
from avssm.malloc import keep_freed_memory
from avssm.ops import selective_scan
from bench_onnx_cpu import interleaved_medians  # this folder: run as a script


class AvssmMamba(torch.nn.Module):
    """mamba_ssm's Mamba block (mamba_simple, no inference cache) written on avssm's ops, sharing its weights."""

    def __init__(self, block):
        super().__init__()
        self.block = block

    def forward(self, h):
        m = self.block
        length = h.shape[1]
        x, z = m.in_proj(h).transpose(1, 2).chunk(2, dim=1)
        x = F.silu(F.conv1d(x, m.conv1d.weight, m.conv1d.bias, padding=m.d_conv - 1, groups=x.shape[1])[..., :length])
        dt, B, C = m.x_proj(x.transpose(1, 2)).split([m.dt_rank, m.d_state, m.d_state], dim=-1)
        y = selective_scan(x, (dt @ m.dt_proj.weight.t()).transpose(1, 2), -torch.exp(m.A_log.float()),
                           B.transpose(1, 2)[:, None], C.transpose(1, 2)[:, None], D=m.D.float(), z=z,
                           delta_bias=m.dt_proj.bias.float(), delta_softplus=True)
        return m.out_proj(y.transpose(1, 2))


def mamba_stack(dim: int, depth: int):
    """A third-party-style model: residual pre-norm blocks of mamba_ssm's Mamba; and the same on avssm's ops."""
    from mamba_ssm import Mamba

    torch.manual_seed(0)
    blocks = torch.nn.ModuleList(Mamba(d_model=dim, d_state=16, d_conv=4, expand=2) for _ in range(depth))
    norms = torch.nn.ModuleList(torch.nn.LayerNorm(dim) for _ in range(depth))

    class Stack(torch.nn.Module):
        def __init__(self, mixers):
            super().__init__()
            self.mixers, self.norms = mixers, norms

        def forward(self, x):
            for norm, mixer in zip(self.norms, self.mixers):
                x = x + mixer(norm(x))
            return x

    return Stack(blocks).eval(), Stack(torch.nn.ModuleList(AvssmMamba(b) for b in blocks)).eval()


def official_vmamba(code: str):
    """The official vmamba_tiny_s1l8 and avssm's vmamba_tiny with its weights."""
    from avssm.models import create_model

    sys.path.insert(0, code)
    import vmamba as official  # noqa: PLC0415 - the user's checkout

    torch.manual_seed(0)
    theirs = official.vmamba_tiny_s1l8().eval()
    ours = create_model("vmamba_tiny", checkpoint={"model": theirs.state_dict()}).eval()
    return theirs, ours


def ort_session(model, example, name, unfused=False):
    """(ONNX Runtime session with avssm's op, "N <layout>" of its SelectiveScan nodes) for ``model`` exported in the
    plugin form; ``unfused``: within unfused_export (the official VMamba code as written: version 1 nodes)."""
    import contextlib

    import onnx
    import onnxruntime as ort

    from avssm.graph.onnx_io import session_options
    from avssm.graph.scan_node import layout_counts
    from avssm.ops import selective_scan_onnx

    buffer = io.BytesIO()
    with torch.no_grad(), (selective_scan_onnx.unfused_export() if unfused else contextlib.nullcontext()):
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=17, input_names=[name])
    proto = onnx.load_from_string(buffer.getvalue())
    options = session_options()
    options.register_custom_ops_library(str(native.ort_scan_op_library()))
    scans = ", ".join(f"{n} {kind}" for kind, n in layout_counts(proto).items())
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"]), scans


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=192, help="model width (Vim-Tiny's)")
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--length", type=int, default=784, help="tokens (a 28x28 map)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--vmamba-code", help="the official VMamba code's classification/models folder")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    compat.install()
    keep_freed_memory()
    rows = []
    theirs, ours = mamba_stack(args.dim, args.depth)
    x = torch.randn(1, args.length, args.dim, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want = ours(x)
        error = float((theirs(x) - want).abs().max() / want.abs().max())
        t = interleaved_medians({"stand-ins": lambda: theirs(x), "avssm": lambda: ours(x)}, args.repeats)
    rows.append({"comparison": "mamba_ssm Mamba stack, stand-ins / avssm ops (eager CPU)",
                 "shape": f"1x{args.length}x{args.dim}, depth {args.depth}", "a_ms": t["stand-ins"] * 1e3,
                 "b_ms": t["avssm"] * 1e3, "ratio": t["stand-ins"] / t["avssm"], "target": 1.2, "max_rel": error})
    if args.vmamba_code:
        official, avssm_model = official_vmamba(args.vmamba_code)
        images = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
        with torch.inference_mode():
            want = avssm_model(images)
            error = float((official(images) - want).abs().max() / want.abs().max())
            t = interleaved_medians({"official": lambda: official(images), "avssm": lambda: avssm_model(images)},
                                    args.repeats)
        rows.append({"comparison": "official vmamba_tiny_s1l8 on stand-ins / avssm vmamba_tiny (eager CPU)",
                     "shape": "1x3x224x224", "a_ms": t["official"] * 1e3, "b_ms": t["avssm"] * 1e3,
                     "ratio": t["official"] / t["avssm"], "target": 1.2, "max_rel": error})
    if native.ort_scan_op_library() is None:
        raise SystemExit("avssm's ONNX Runtime op did not build (needs a C compiler)")
    if args.vmamba_code:
        sessions = {form: ort_session(official, images, "images", unfused=form == "unfused")
                    for form in ("fused", "unfused")}
        feed = {"images": images.numpy()}
        with torch.inference_mode():
            want = official(images).numpy()
            error = max(float(np.abs(s.run(None, feed)[0] - want).max() / np.abs(want).max())
                        for s, _ in sessions.values())
            t = interleaved_medians({form: (lambda s=s: s.run(None, feed)) for form, (s, _) in sessions.items()},
                                    args.repeats)
        rows.append({"comparison": f"official vmamba_tiny_s1l8, ONNX Runtime + avssm op: fused "
                                   f"({sessions['fused'][1]}) / as written ({sessions['unfused'][1]})",
                     "shape": "1x3x224x224", "a_ms": t["fused"] * 1e3, "b_ms": t["unfused"] * 1e3,
                     "ratio": t["fused"] / t["unfused"], "target": 1.0, "max_rel": error})
    session, scans = ort_session(theirs, x, "x")
    feed = {"x": x.numpy()}
    with torch.inference_mode():
        want = theirs(x).numpy()
        got = session.run(None, feed)[0]
        t = interleaved_medians({"onnxruntime": lambda: session.run(None, feed), "pytorch": lambda: theirs(x)},
                                args.repeats)
    rows.append({"comparison": f"mamba_ssm Mamba stack, ONNX Runtime + avssm op ({scans}) / PyTorch",
                 "shape": f"1x{args.length}x{args.dim}, depth {args.depth}", "a_ms": t["onnxruntime"] * 1e3,
                 "b_ms": t["pytorch"] * 1e3, "ratio": t["onnxruntime"] / t["pytorch"], "target": 1.0,
                 "max_rel": float(np.abs(got - want).max() / np.abs(want).max())})
    result = {"threads": torch.get_num_threads(), "rows": rows}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{torch.get_num_threads()} threads, median of {args.repeats} interleaved rounds")
    for r in rows:
        verdict = "ok" if r["ratio"] <= r["target"] else "OVER TARGET"
        print(f"{r['comparison']}, {r['shape']}: {r['a_ms']:.1f} / {r['b_ms']:.1f} ms = {r['ratio']:.2f}x "
              f"(target <= {r['target']}, {verdict}); outputs max rel {r['max_rel']:.1e}")


if __name__ == "__main__":
    main()
