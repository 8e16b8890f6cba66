"""Files avssm writes: refused before any work when they cannot be written or are an input; atomic; the umask."""
import json
import os

import pytest

from avssm.errors import AvssmError
from avssm.outputs import atomic_output, atomic_outputs, check_output, check_output_dir, write_json


def unwritable_places(tmp_path):
    """Places no one can write, root included (tests run as root in CI): a virtual file system, a path through
    a regular file, a folder that does not exist."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    return [("/proc/avssm-out.json", "cannot write in /proc"), (str(blocker / "out.json"), "is a file, not a folder"),
            (str(tmp_path / "missing" / "out.json"), "does not exist; create it first"), (str(tmp_path), "is a folder")]


def test_unwritable_outputs_are_refused_in_one_line(tmp_path):
    for path, message in unwritable_places(tmp_path):
        with pytest.raises(AvssmError, match=message) as e:
            check_output(path, "--json")
        assert str(e.value).startswith(f"--json {path}") and len(str(e.value).splitlines()) == 1
    check_output(tmp_path / "new.json", "--json")  # a new file in a writable folder
    check_output("-", "--json", stdout=True)
    assert sorted(os.listdir(tmp_path)) == ["file.txt"]  # the check leaves nothing behind


def test_an_output_that_is_an_input_is_refused(tmp_path):
    model = tmp_path / "det.onnx"
    model.write_bytes(b"model")
    link = tmp_path / "link.onnx"
    link.symlink_to(model)
    hard = tmp_path / "hard.onnx"
    os.link(model, hard)
    for out in (model, tmp_path / "." / "det.onnx", link, hard):
        with pytest.raises(AvssmError, match=f"is the same file as MODEL {model}: writing it would destroy"):
            check_output(out, "--output", inputs={"MODEL": str(model)})
    check_output(tmp_path / "det.int8.onnx", "--output", inputs={"MODEL": str(model)})


def test_output_folders(tmp_path):
    check_output_dir(tmp_path / "new" / "deeper", "--out")  # created later by the command
    (tmp_path / "f").write_text("x")
    with pytest.raises(AvssmError, match="is a file, not a folder"):
        check_output_dir(tmp_path / "f", "--out")
    with pytest.raises(AvssmError, match="is a file, not a folder"):
        check_output_dir(tmp_path / "f" / "sub", "--out")


def test_writes_are_atomic_and_follow_the_umask(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["report.json"]
    old = os.umask(0o027)
    try:
        write_json({"a": 1}, target)
        assert json.loads(target.read_text()) == {"a": 1}
        assert target.stat().st_mode & 0o777 == 0o640  # as open() would make it; mkstemp alone gives 0600
    finally:
        os.umask(old)


def test_files_that_belong_together_are_written_together(tmp_path):
    engine, sidecar = tmp_path / "det.engine", tmp_path / "det.engine.json"
    with pytest.raises(RuntimeError):
        with atomic_outputs(engine, sidecar) as (engine_tmp, sidecar_tmp):
            engine_tmp.write_bytes(b"plan")
            raise RuntimeError("the sidecar could not be made")
    assert os.listdir(tmp_path) == []  # not an engine without its sidecar
    with atomic_outputs(engine, sidecar) as (engine_tmp, sidecar_tmp):
        engine_tmp.write_bytes(b"plan")
        sidecar_tmp.write_text("{}")
    assert engine.read_bytes() == b"plan" and sidecar.read_text() == "{}" and len(os.listdir(tmp_path)) == 2
