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
def test_an_installed_avssm_builds_its_kernels(wheel, tmp_path):
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    env = {**os.environ, "PYTHONPATH": str(site), "AVSSM_CACHE_DIR": str(tmp_path / "cache")}
    where = subprocess.run([sys.executable, "-c", "import avssm; print(avssm.__file__)"], capture_output=True,
                           text=True, cwd=tmp_path, env=env)
    assert where.stdout.strip().startswith(str(site)), where.stdout + where.stderr  # the wheel's copy, not the checkout
    r = subprocess.run([sys.executable, "-m", "avssm.cli", "build-plugins", "--arch", "87"], capture_output=True,
                       text=True, cwd=tmp_path, env=env, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "cache" / "native-build" / "libavssm_kernels.so").is_file()
    assert f"built {tmp_path / 'cache' / 'native-build' / 'libavssm_kernels.so'}" in r.stdout.replace("\n", "")
