"""Loading a checkpoint never runs code: crafted files are refused in one line and their payload never runs.

Each payload is first shown to be live (plain ``torch.load(weights_only=False)`` runs it and the marker file
appears), so a refusal below is a real one.
"""
import functools
import io
import os
import pickle
import subprocess
import zipfile

import pytest
import torch

from avssm.errors import CheckpointError
from avssm.models import create_model, load_checkpoint
from avssm.models.checkpoint import read_checkpoint_file
from avssm.models.safe_pickle import ALLOWED_GLOBALS, RefusedCheckpointError, RestrictedUnpickler, check_checkpoint_file


def _short_string(text: str) -> bytes:
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data  # SHORT_BINUNICODE


class DottedEval:
    """Pickles as torch._utils + '_rebuild_tensor.__builtins__.get' -> eval, then eval(code)."""

    def __init__(self, code):
        self.code = code

    def raw(self) -> bytes:
        return (_short_string("torch._utils") + _short_string("_rebuild_tensor.__builtins__.get") + b"\x93"  # STACK_GLOBAL
                + _short_string("eval") + b"\x85R"  # TUPLE1 REDUCE: get('eval')
                + _short_string(self.code) + b"\x85R")  # eval(code)


class _RawPickler(pickle._Pickler):
    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, DottedEval):
            self.framer.commit_frame()
            self.write(obj.raw())
            return
        super().save(obj, save_persistent_id)


class RawPickleModule:
    """torch.save's pickle module that writes DottedEval objects as raw opcodes (protocol 4)."""

    Pickler = _RawPickler

    @staticmethod
    def dump(obj, f, protocol=4):
        _RawPickler(f, protocol=protocol).dump(obj)


class Reduce:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def payloads(marker):
    touch = f"open({str(marker)!r}, 'w').close()"
    return {
        "dotted_eval": (DottedEval(touch), "torch._utils._rebuild_tensor.__builtins__.get"),
        "os_system": (Reduce(os.system, f"touch {marker}"), f"{os.system.__module__}.system"),
        "subprocess": (Reduce(subprocess.call, ["touch", str(marker)]), "subprocess.call"),
        "eval": (Reduce(eval, touch), "builtins.eval"),
        "exec": (Reduce(exec, touch), "builtins.exec"),
        "partial": (Reduce(functools.partial(os.system, f"touch {marker}")), "functools.partial"),
    }


PAYLOADS = ["dotted_eval", "os_system", "subprocess", "eval", "exec", "partial"]


def placed(payload, where):
    weights = {"w": torch.zeros(2)}
    if where == "top":
        return {"model": weights, "payload": payload}
    if where == "nested":
        return {"model": weights, "config": {"MODEL": {"extra": [1, {"deep": payload}]}}}
    return {"model": weights, "model_ema": payload}  # where the EMA weights sit in the official files


def write(obj, path, fmt):
    torch.save(obj, path, pickle_module=RawPickleModule, pickle_protocol=4,
               _use_new_zipfile_serialization=(fmt == "zip"))


@pytest.mark.parametrize("name", PAYLOADS)
def test_payloads_are_live_without_avssm(tmp_path, name):
    marker = tmp_path / "ran"
    payload, _ = payloads(marker)[name]
    write(placed(payload, "top"), tmp_path / "evil.pth", "zip")
    torch.load(tmp_path / "evil.pth", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("where", ["top", "nested", "model_ema"])
@pytest.mark.parametrize("name", PAYLOADS)
def test_crafted_checkpoints_are_refused_and_nothing_runs(tmp_path, name, where, fmt):
    marker = tmp_path / "ran"
    payload, pickled_as = payloads(marker)[name]
    path = tmp_path / "evil.pth"
    write(placed(payload, where), path, fmt)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(create_model("vim_tiny", depth=1), path, ema=where == "model_ema")
    message = str(e.value)
    assert len(message.splitlines()) == 1
    assert f"checkpoint {path}: refused to load: it names the Python object '{pickled_as}'" in message
    assert not marker.exists()
    # Layer 1 alone (opcodes, before unpickling) refuses it too.
    with pytest.raises(RefusedCheckpointError, match="names the Python object"):
        check_checkpoint_file(path)
    assert not marker.exists()


@pytest.mark.parametrize("name", PAYLOADS)
def test_unpickler_alone_refuses_each_payload(tmp_path, name):
    # Layer 2 without layer 1: the restricted unpickler resolves exact names only.
    marker = tmp_path / "ran"
    payload, pickled_as = payloads(marker)[name]
    buf = io.BytesIO()
    RawPickleModule.dump({"x": {"y": payload}}, buf)
    buf.seek(0)
    with pytest.raises(RefusedCheckpointError, match=f"'{pickled_as}'"):
        RestrictedUnpickler(buf).load()
    assert not marker.exists()


def test_allow_list_is_exact_names():
    assert all("." not in name and name for _, name in ALLOWED_GLOBALS)
    assert ("torch._utils", "_rebuild_tensor_v2") in ALLOWED_GLOBALS
    assert not any(module.startswith(("os", "posix", "subprocess", "functools")) or name in ("eval", "exec", "getattr")
                   for module, name in ALLOWED_GLOBALS)


def test_torchscript_archive_is_refused(tmp_path):
    path = tmp_path / "scripted.pth"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(CheckpointError, match="TorchScript archive"):
        read_checkpoint_file(path)


def test_polyglot_zip_tail_does_not_hide_a_legacy_payload(tmp_path):
    # torch.load decides zip vs legacy from the first bytes; the check must read the file the same way.
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pth"
    write(placed(payloads(marker)["os_system"][0], "top"), evil, "legacy")
    clean = io.BytesIO()
    with zipfile.ZipFile(clean, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({}, protocol=2))
    evil.write_bytes(evil.read_bytes() + clean.getvalue())
    with pytest.raises(CheckpointError, match="refused to load"):
        read_checkpoint_file(evil)
    assert not marker.exists()


def test_a_zip_entry_listed_twice_is_refused(tmp_path):
    # Two zip readers may take either copy of a duplicated name: the file is refused whichever is harmful.
    import warnings

    marker = tmp_path / "ran"
    evil, clean = tmp_path / "evil.pth", tmp_path / "clean.pth"
    write(placed(payloads(marker)["os_system"][0], "top"), evil, "zip")
    torch.save({"model": {"w": torch.zeros(2)}}, clean)
    with zipfile.ZipFile(evil) as z:
        payload = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    both = tmp_path / "both.pth"
    with zipfile.ZipFile(clean) as src, zipfile.ZipFile(both, "w") as dst, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        for info in src.infolist():
            if info.filename.endswith("data.pkl"):
                dst.writestr(info.filename, payload)  # the malicious copy first, the clean one after it
            dst.writestr(info, src.read(info))
    with pytest.raises(RefusedCheckpointError, match="lists an entry twice"):
        check_checkpoint_file(both)  # the opcode layer on its own
    with pytest.raises(CheckpointError, match="refused to load: its zip archive lists an entry twice"):
        read_checkpoint_file(both)
    assert not marker.exists()


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_official_nesting_loads_from_files(tmp_path, fmt):
    import argparse

    src = create_model("vim_tiny", depth=1)
    ema = {"module." + k: v + 1.0 for k, v in src.state_dict().items()}
    path = tmp_path / "official.pth"
    torch.save({"state_dict": src.state_dict(), "model_ema": ema, "args": argparse.Namespace(lr=1e-3, epochs=300),
                "epoch": 299, "max_accuracy": 76.1}, path, _use_new_zipfile_serialization=fmt == "zip")
    dst = create_model("vim_tiny", depth=1)
    load_checkpoint(dst, path)
    assert torch.equal(dst.head.bias, src.head.bias)
    load_checkpoint(dst, path, ema=True)
    assert torch.equal(dst.head.bias, src.head.bias + 1.0)
