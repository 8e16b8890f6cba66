"""`avssm bench`: measurements in subprocesses, scaling fits, the PNG plot, the CLI."""
import json
import subprocess
import sys

import pytest

from avssm.bench import bench, plot, scaling_exponent
from avssm.errors import UnknownModelError
from avssm.models import create_model


def test_scaling_exponent_recovers_known_slopes():
    px = [1e4, 1e5, 1e6]
    assert scaling_exponent(px, [2 * p for p in px]) == pytest.approx(1.0)
    assert scaling_exponent(px, [p**2 for p in px]) == pytest.approx(2.0)
    assert scaling_exponent(px[:1], [1.0]) is None


def test_vit_baseline_is_deit_tiny_sized():
    backbone = create_model("deit_tiny", num_classes=0)
    assert abs(sum(p.numel() for p in backbone.parameters()) / 1e6 - 5.5) < 0.2  # DeiT-Ti without head


def test_bench_report_and_plot(tmp_path):
    report = bench(["vim_tiny_det", "deit_tiny_det"], [(64, 64), (96, 128)], repeats=1)
    assert report["schema"] == "avssm.report/1" and report["kind"] == "bench"
    assert len(report["entries"]) == 4 and all("error" not in e for e in report["entries"])
    for e in report["entries"]:
        assert e["latency_ms"]["inference"]["p50"] > 0 and e["memory"]["peak_mib"] >= 0
    assert set(report["fits"]) == {"vim_tiny_det", "deit_tiny_det"}
    assert report["fits"]["vim_tiny_det"]["latency_exponent"] is not None
    png = tmp_path / "bench.png"
    plot(report, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_unknown_model():
    with pytest.raises(UnknownModelError):
        bench(["nope"], [(64, 64)])


def test_cli_bench_json(tmp_path):
    out = tmp_path / "b.json"
    r = subprocess.run([sys.executable, "-m", "avssm.cli", "bench", "--models", "deit_tiny_det", "--sizes", "64x64,64x128",
                        "--repeats", "1", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "deit_tiny_det: latency ~ pixels^" in r.stdout
    assert len(json.loads(out.read_text())["entries"]) == 2
