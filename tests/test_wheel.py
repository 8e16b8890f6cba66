"""The wheel ships every native source, and an installed avssm (not a source checkout) builds them:
`pip install avssm` followed by `avssm build-plugins` compiles the CUDA kernels."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(dist), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return next(dist.glob("avssm-*.whl"))


def test_the_wheel_ships_the_native_sources(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {str(p.relative_to(ROOT)) for p in (ROOT / "avssm" / "csrc").rglob("*") if p.is_file()}
    assert sources and sources <= names, sorted(sources - names)
    assert "avssm/data/vmamba_nano_det_roads.pth" in names


@pytest.mark.skipif(shutil.which("nvcc") is None or shutil.which("cmake") is None, reason="needs nvcc and CMake")
def test_pip_install_then_build_plugins_in_a_fresh_venv(wheel, tmp_path):
    # A fresh virtual environment with the wheel and what the command line needs (typer, rich; --no-deps keeps
    # PyTorch's multi-GB download out of the test: building the kernels does not import it).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    deps = subprocess.run([python, "-m", "pip", "install", "-q", "typer", "rich"], capture_output=True, text=True,
                          timeout=600)
    if deps.returncode != 0:
        pytest.skip(f"no package registry reachable for typer and rich: {deps.stderr.strip().splitlines()[-1:]}")
    r = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    env = {**os.environ, "AVSSM_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("PYTHONPATH", None)
    where = subprocess.run([python, "-c", "import avssm; print(avssm.__file__)"], capture_output=True, text=True,
                           cwd=tmp_path, env=env)
    assert where.stdout.strip().startswith(str(venv)), where.stdout + where.stderr  # the wheel's copy
    r = subprocess.run([str(venv / "bin" / "avssm"), "build-plugins", "--arch", "87"], capture_output=True,
                       text=True, cwd=tmp_path, env=env, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "cache" / "native-build" / "libavssm_kernels.so").is_file()
