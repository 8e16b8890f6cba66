"""Checkpoints that are not weights: memory bounded by the file, one reading of the bytes, no state set on
Python's own classes, only dense strided CPU tensors. Each file is refused in one line.

The memory tests load in a child process whose data segment is capped at 1 GiB (``RLIMIT_DATA``): a loader
that allocated what the file claims would fail there with MemoryError instead of the refusal."""
import argparse
import codecs
import collections
import io
import pickle
import struct
import subprocess
import sys
import zipfile

import pytest
import torch

from avssm.errors import CheckpointError
from avssm.models.checkpoint import read_checkpoint_file
from avssm.models.safe_pickle import MAX_PICKLE_BYTES
from conftest import run_capped

GiB = 1 << 30


def load_in_capped_child(path, cap=GiB) -> str:
    """read_checkpoint_file(path) in a child limited to ``cap`` bytes of data; what it printed (one line)."""
    return run_capped("import sys\n"
                      "from avssm.models.checkpoint import read_checkpoint_file\n"
                      "from avssm.errors import CheckpointError\n"
                      "try:\n"
                      "    print('loaded', sorted(read_checkpoint_file(sys.argv[1])))\n"
                      "except CheckpointError as e:\n"
                      "    print(e)\n", path, cap=cap)


class Call:
    """Pickles as ``func(*args)`` (REDUCE)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


class _StoragePickler(pickle.Pickler):
    """Writes objects of ``Storage`` as the persistent ids torch.save uses for tensor storages."""

    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, Storage) else None


class Storage:
    def __init__(self, *pid):
        self.pid = pid


def pickled(obj, protocol=2) -> bytes:
    buf = io.BytesIO()
    _StoragePickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


def zip_checkpoint(path, data_pkl: bytes, records=()):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", "little")
        for name, data in records:
            z.writestr(f"archive/{name}", data)


def legacy_checkpoint(path, obj_pkl: bytes, keys, tail: bytes):
    info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    path.write_bytes(pickled(0x1950A86A20F9469CFC6C) + pickled(1001) + pickled(info) + obj_pkl + pickled(keys) + tail)


def rebuilt(storage, size):
    """A tensor pickled the way torch.save writes one: _rebuild_tensor_v2(storage, 0, size, stride, ...)."""
    stride = tuple(int(torch.tensor(size[i + 1:]).prod()) for i in range(len(size)))
    return Call(torch._utils._rebuild_tensor_v2, storage, 0, tuple(size), stride, False, collections.OrderedDict())


# --- kilobytes that become gigabytes -------------------------------------------------------------------------

def test_legacy_storage_larger_than_the_file_is_refused_before_allocating(tmp_path):
    path = tmp_path / "small.pth"
    n = 3 * GiB // 4  # 3 GiB of float32 declared, none of it in the file
    legacy_checkpoint(path, pickled({"w": rebuilt(Storage("storage", torch.FloatStorage, "0", "cpu", n, None), (n,))}),
                      ["0"], struct.pack("<q", n))
    assert path.stat().st_size < 1024
    assert load_in_capped_child(path) == (f"checkpoint {path}: refused to load: storage 0 needs {3 * GiB} bytes, "
                                          "the file holds 8 more; nothing in it was run")


def test_zip_storage_whose_record_is_smaller_than_its_tensor_is_refused(tmp_path):
    path = tmp_path / "small.pth"
    n = 3 * GiB // 4
    zip_checkpoint(path, pickled({"w": rebuilt(Storage("storage", torch.FloatStorage, "0", "cpu", n), (n,))}),
                   [("data/0", bytes(8))])
    assert load_in_capped_child(path).endswith(f"its entry data/0 holds 8 bytes, its tensor needs {3 * GiB}; "
                                               "nothing in it was run")


@pytest.mark.parametrize("call, refused", [
    (Call(bytearray, 3 * GiB), "it builds a bytearray from a size"),
    (Call(torch.FloatTensor, 3 * GiB // 4), "it calls the class 'torch.FloatTensor', which a checkpoint may not call"),
    (Call(torch.UntypedStorage, 3 * GiB), "it calls the class 'torch.storage.UntypedStorage', which a checkpoint may not call"),
    (Call(codecs.encode, "x", "rot13"), "it calls _codecs.encode with the codec 'rot13'"),
])
def test_calls_a_checkpoint_may_not_make_are_refused(tmp_path, call, refused):
    path = tmp_path / "small.pth"
    zip_checkpoint(path, pickled({"model": {}, "x": call}, protocol=4))
    assert load_in_capped_child(path) == f"checkpoint {path}: refused to load: {refused}; nothing in it was run"


def test_an_entry_torch_never_reads_is_never_read(tmp_path):
    # A real checkpoint plus a 1 GiB entry compressed to a few MB: the loader reads only data.pkl and the storages.
    path = tmp_path / "padded.pth"
    torch.save({"model": {"w": torch.arange(4.0)}}, path)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        prefix = z.namelist()[0].split("/")[0]
        with z.open(f"{prefix}/extra.pkl", "w", force_zip64=True) as member:
            zeros = bytes(1 << 20)
            for _ in range(1024):
                member.write(zeros)
    assert path.stat().st_size < 8 << 20
    assert load_in_capped_child(path) == "loaded ['model']"


def test_compressed_and_oversized_pickles_are_refused(tmp_path):
    path = tmp_path / "deflated.pth"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", pickle.dumps({"model": {}}, protocol=2))
    with pytest.raises(CheckpointError, match="entry data.pkl is compressed"):
        read_checkpoint_file(path)
    big = tmp_path / "big.pth"
    zip_checkpoint(big, pickle.dumps(b"x" * MAX_PICKLE_BYTES, protocol=4))
    with pytest.raises(CheckpointError, match=f"entry data.pkl is {MAX_PICKLE_BYTES + 9} bytes"):
        read_checkpoint_file(big)


# --- one reading of the bytes -----------------------------------------------------------------------------------

def test_data_before_the_archive_is_refused(tmp_path):
    # zipfile shifts every offset by the bytes before the archive (and finds the clean data.pkl of the second
    # archive); torch's reader takes the offsets as written (and finds the first archive's). Refused outright.
    first, second = io.BytesIO(), io.BytesIO()
    with zipfile.ZipFile(first, "w") as z:
        z.writestr("archive/data.pkl", pickled({"model": {}, "x": Call(print, "ran")}))
    with zipfile.ZipFile(second, "w") as z:
        z.writestr("archive/data.pkl", pickled({"model": {}}))
    path = tmp_path / "two.pth"
    path.write_bytes(first.getvalue() + second.getvalue())
    with pytest.raises(CheckpointError, match=f"refused to load: it has {len(first.getvalue())} bytes before its "
                                              "zip archive"):
        read_checkpoint_file(path)


# --- a checkpoint cannot change Python ---------------------------------------------------------------------------

BUILD_ON_CLASSES = """
import argparse, collections, sys, torch
from avssm.models.checkpoint import read_checkpoint_file
from avssm.errors import CheckpointError
for path in sys.argv[1:]:
    try:
        read_checkpoint_file(path)
        print("loaded")
    except CheckpointError as e:
        print(e)
print(argparse.ArgumentParser().parse_args([]), collections.Counter("aab")["a"])
torch.save({"w": torch.ones(1)}, sys.argv[1] + ".clean")
print(torch.load(sys.argv[1] + ".clean", weights_only=True)["w"].item())
"""


def test_build_on_an_allowed_class_or_function_is_refused(tmp_path):
    files = []
    for name, target, state in [
        ("namespace", argparse.Namespace, (None, {"__init__": None})),
        ("counter", collections.Counter, (None, {"__missing__": None, "update": None})),
        ("rebuild", torch._utils._rebuild_tensor_v2, (None, {"__defaults__": (5,)})),
    ]:
        files.append(tmp_path / f"{name}.pth")
        zip_checkpoint(files[-1], _as_global(target, state))
    out = subprocess.run([sys.executable, "-c", BUILD_ON_CLASSES, *map(str, files)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0].endswith("refused to load: it sets attributes on the class 'argparse.Namespace'; nothing in "
                             "it was run"), lines
    assert lines[1].endswith("refused to load: it sets attributes on the class 'collections.Counter'; nothing in "
                             "it was run"), lines
    assert lines[2].endswith("refused to load: it sets attributes on a function; nothing in it was run"), lines
    assert lines[3:] == ["Namespace() 2", "1.0"]


def _as_global(target, state) -> bytes:
    """{'model': {}, 'x': <target> BUILD <state>} with <target> pushed by GLOBAL, as a hostile file writes it."""
    module, name = target.__module__, target.__name__
    return (b"\x80\x02}q\x00(X\x05\x00\x00\x00model}X\x01\x00\x00\x00x"
            + b"c" + f"{module}\n{name}\n".encode() + pickle.dumps(state, protocol=2)[2:-1] + b"bu.")


# --- tensors that are not weights ------------------------------------------------------------------------------

@pytest.mark.parametrize("tensor, named", [
    (lambda: torch.sparse_coo_tensor(torch.tensor([[0, 1]]), torch.ones(2), (2,)), "_rebuild_sparse_tensor"),
    (lambda: torch.empty(3, device="meta"), "_rebuild_meta_tensor_no_storage"),
    (lambda: torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.quint8), "_rebuild_qtensor"),
])
def test_sparse_meta_and_quantized_tensors_are_refused(tmp_path, tensor, named):
    path = tmp_path / "odd.pth"
    torch.save({"model": {"w": tensor()}}, path)
    with pytest.raises(CheckpointError) as e:
        read_checkpoint_file(path)
    assert str(e.value) == (f"checkpoint {path}: refused to load: it names the Python object 'torch._utils.{named}', "
                            "which a checkpoint may not contain (only tensors, containers and the official config "
                            "classes); nothing in it was run")


def test_a_sparse_tensor_with_an_index_out_of_range_is_refused(tmp_path):
    path = tmp_path / "sparse.pth"
    bad = torch.sparse_coo_tensor(torch.tensor([[0, 1]]), torch.ones(2), (2,))
    torch.save({"model": {"w": bad}}, path)
    with zipfile.ZipFile(path) as z:  # the index 1 becomes 10**6 in the stored int64 indices
        entries = {i.filename: z.read(i) for i in z.infolist()}
    for name, data in entries.items():
        if "/data/" in name and data == struct.pack("<2q", 0, 1):
            entries[name] = struct.pack("<2q", 0, 10**6)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    with pytest.raises(CheckpointError, match="_rebuild_sparse_tensor"):
        read_checkpoint_file(path)


def test_a_view_outside_its_storage_is_refused(tmp_path):
    path = tmp_path / "view.pth"
    zip_checkpoint(path, pickled({"w": Call(torch._utils._rebuild_tensor_v2,
                                            Storage("storage", torch.FloatStorage, "0", "cpu", 2), 1, (4,), (1,),
                                            False, collections.OrderedDict())}), [("data/0", bytes(8))])
    with pytest.raises(CheckpointError, match=r"a tensor of size \(4,\) does not lie inside its storage of 2"):
        read_checkpoint_file(path)


def test_official_layouts_still_load(tmp_path):
    # Parameters, non-contiguous views, shared storages, int and half tensors, both formats.
    base = torch.arange(12.0).reshape(3, 4)
    obj = {"model": collections.OrderedDict(a=base.t(), b=base[1], p=torch.nn.Parameter(torch.ones(2)),
                                            i=torch.arange(3), h=torch.ones(2, dtype=torch.half)),
           "args": argparse.Namespace(lr=0.1)}
    for fmt in (True, False):
        path = tmp_path / f"ok{fmt}.pth"
        torch.save(obj, path, _use_new_zipfile_serialization=fmt)
        got = read_checkpoint_file(path)
        for k, v in obj["model"].items():
            assert torch.equal(got["model"][k], v) and got["model"][k].dtype == v.dtype, k
        assert got["model"]["a"].untyped_storage().data_ptr() == got["model"]["b"].untyped_storage().data_ptr()
        assert got["args"].lr == 0.1
