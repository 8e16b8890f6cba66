"""Reading checkpoint files without running code: default-deny, exact names, two independent layers.

A PyTorch checkpoint is a pickle, and a pickle can name any Python object (``os.system``, ``eval``)
and call it. avssm admits only the objects listed in :data:`ALLOWED_GLOBALS`, matched exactly as
(module, name) pairs, never by prefix and never with a dot in the name (the pickle protocol resolves
``torch._utils`` + ``_rebuild_tensor.__builtins__.get`` to ``eval``):

* what PyTorch's own ``weights_only`` loader admits for tensors and storages (rebuild functions,
  tensor, storage and dtype classes, ``torch.Size``, ``torch.device``, ``set``, ...);
* ``collections.OrderedDict``;
* the two configuration classes the official files pickle: ``argparse.Namespace`` (Vim) and yacs'
  ``CfgNode`` (VMamba), read into :class:`PickledConfig`, a plain dict, so yacs is not needed.

PyTorch's ``weights_only=True`` cannot read the official VMamba files (it refuses SETITEM on a dict
subclass such as CfgNode), hence an unpickler of our own. The two layers:

1. :func:`check_checkpoint_file` reads every pickle in the file as an opcode stream (``pickletools``)
   before anything is unpickled: each GLOBAL, STACK_GLOBAL and INST must name a listed pair; extension
   codes, TorchScript archives and the pre-0.4 tar format are refused.
2. :class:`RestrictedUnpickler` resolves only listed pairs while unpickling.

    obj = load_checkpoint_file("vssm1_tiny_0230s_ckpt_epoch_264.pth")   # raises RefusedCheckpointError
"""
from __future__ import annotations

import argparse
import importlib
import io
import pickle
import pickletools
import tarfile
import zipfile
from pathlib import Path


class PickledConfig(dict):
    """Stand-in for yacs' CfgNode (a dict subclass) so its contents can be read without yacs."""


class RefusedCheckpointError(pickle.UnpicklingError):
    """The file names a Python object outside the allow-list, or has a form that is not read."""


def _pairs(module: str, names: str) -> dict:
    return {(module, name): None for name in names.split()}


_STORAGES = ("BFloat16Storage BoolStorage ByteStorage CharStorage ComplexDoubleStorage ComplexFloatStorage "
             "DoubleStorage FloatStorage HalfStorage IntStorage LongStorage ShortStorage")
_TENSORS = ("BFloat16Tensor BoolTensor ByteTensor CharTensor DoubleTensor FloatTensor HalfTensor IntTensor "
            "LongTensor ShortTensor")
_SPARSE = "BFloat16Tensor ByteTensor CharTensor DoubleTensor FloatTensor HalfTensor IntTensor LongTensor ShortTensor"
_DTYPES = ("bool uint8 int8 int16 int32 int64 float16 float32 float64 bfloat16 complex32 complex64 complex128 "
           "qint8 quint8 qint32 quint4x2 quint2x4 float8_e4m3fn float8_e4m3fnuz float8_e5m2 float8_e5m2fnuz "
           "float8_e8m0fnu float4_e2m1fn_x2 bits1x8 bits2x4 bits4x2 bits8 bits16 uint1 uint2 uint3 uint4 uint5 uint6 "
           "uint7 uint16 uint32 uint64 int1 int2 int3 int4 int5 int6 int7")

# (module, name) -> the object to return instead of importing it (None: import module, take the attribute).
ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    # PyTorch's weights_only list: tensors, parameters, storages, dtypes, layouts, quantization schemes.
    **_pairs("torch._utils", "_rebuild_tensor _rebuild_tensor_v2 _rebuild_tensor_v3 _rebuild_parameter "
                             "_rebuild_parameter_with_state _rebuild_qtensor _rebuild_sparse_tensor "
                             "_rebuild_meta_tensor_no_storage _rebuild_nested_tensor _rebuild_wrapper_subclass "
                             "_rebuild_device_tensor_from_numpy _rebuild_device_tensor_from_cpu_tensor"),
    **_pairs("torch._tensor", "_rebuild_from_type_v2"),
    **_pairs("torch.nn.parameter", "Parameter"),
    **_pairs("torch.serialization", "_get_layout"),
    **_pairs("torch", "Tensor Size device per_tensor_affine per_tensor_symmetric per_channel_affine "
                      "per_channel_symmetric per_channel_affine_float_qparams " + _DTYPES),
    **_pairs("torch", _STORAGES + " QInt32Storage QInt8Storage QUInt2x4Storage QUInt4x2Storage QUInt8Storage "
             + _TENSORS),
    **_pairs("torch.cuda", _STORAGES + " " + _TENSORS),
    **_pairs("torch.sparse", _SPARSE),
    **_pairs("torch.cuda.sparse", _SPARSE),
    **_pairs("torch.storage", "TypedStorage UntypedStorage"),
    **_pairs("collections", "OrderedDict Counter"),
    **_pairs("builtins", "set bytearray complex"),
    **_pairs("_codecs", "encode"),  # protocol 2 writes bytes as _codecs.encode(str, 'latin1')
    ("__builtin__", "set"): set,  # protocol 2 names Python 2's module
    # The official files' configuration objects.
    ("argparse", "Namespace"): argparse.Namespace,
    ("yacs.config", "CfgNode"): PickledConfig,
}

_STRING_PUSH = {"UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "STRING", "BINSTRING", "SHORT_BINSTRING"}
_MEMO_PUT = {"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"}
_MEMO_GET = {"GET", "BINGET", "LONG_BINGET"}


def _refuse(module: str, name: str) -> RefusedCheckpointError:
    return RefusedCheckpointError(f"it names the Python object '{module}.{name}', which a checkpoint may not "
                                  "contain (only tensors, containers and the official config classes)")


def _check_pair(module, name) -> None:
    if not (isinstance(module, str) and isinstance(name, str)) or (module, name) not in ALLOWED_GLOBALS:
        raise _refuse(str(module), str(name))


def check_pickle(stream) -> None:
    """Read one pickle's opcodes from ``stream`` (up to its STOP) and refuse any global not listed.

    STACK_GLOBAL takes its module and name from the stack; they are accepted only when the two ops before
    it (memo writes aside) push known strings, which is how the pickler writes a global. A stream that is
    not a pickle raises ValueError (pickletools).
    """
    memo: dict[int, str | None] = {}
    strings: list[str] = []  # strings pushed by the ops just before this one, in order
    for op, arg, _ in pickletools.genops(stream):
        name = op.name
        if name in _STRING_PUSH:
            strings.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
            continue
        if name in ("FRAME", "PROTO"):  # framing and the header leave the stack as it is
            continue
        if name in _MEMO_PUT:
            memo[len(memo) if name == "MEMOIZE" else arg] = strings[-1] if strings else None
            continue
        if name in _MEMO_GET:
            value = memo.get(arg)
            strings = strings + [value] if isinstance(value, str) else []
            continue
        if name in ("GLOBAL", "INST"):
            _check_pair(*arg.split(" ", 1))
        elif name == "STACK_GLOBAL":
            if len(strings) < 2:
                raise RefusedCheckpointError("it builds an object from names computed at load time")
            _check_pair(strings[-2], strings[-1])
        elif name.startswith("EXT"):
            raise RefusedCheckpointError("it names objects through the copyreg extension registry")
        strings = []


def check_checkpoint_file(path: str | Path) -> None:
    """Layer 1: refuse the file unless every pickle in it names only listed objects (nothing is unpickled)."""
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        if head == b"PK\x03\x04":  # how torch.load recognizes its zip format
            try:
                archive = zipfile.ZipFile(f)
                names = archive.namelist()
            except zipfile.BadZipFile as e:
                raise RefusedCheckpointError(f"it starts as a zip archive but cannot be read as one ({e})") from None
            if any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in names):
                raise RefusedCheckpointError("it is a TorchScript archive (code), not a checkpoint")
            # Every entry, by its directory record: a name listed twice is read twice, whichever one torch takes.
            pickles = [info for info in archive.infolist() if info.filename.endswith(".pkl")]
            if not pickles:
                raise RefusedCheckpointError("it is a zip archive without pickled data")
            for info in pickles:
                with archive.open(info) as member:
                    check_pickle(io.BytesIO(member.read()))
            return
        if _is_tar(path):
            raise RefusedCheckpointError("it is in PyTorch's pre-0.4 tar format, which avssm does not read")
        # torch.save's legacy format: five pickles (magic, protocol, system info, the object, storage keys),
        # then raw storage bytes.
        for _ in range(5):
            if not f.peek(1):
                break
            check_pickle(f)


def _is_tar(path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


class RestrictedUnpickler(pickle.Unpickler):
    """Layer 2: resolves only the listed (module, name) pairs, exactly."""

    def find_class(self, module: str, name: str):
        _check_pair(module, name)
        stand_in = ALLOWED_GLOBALS[(module, name)]
        if stand_in is not None:
            return stand_in
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            raise RefusedCheckpointError(f"it names '{module}.{name}', which this PyTorch does not have") from None


class RestrictedPickleModule:
    """What torch.load needs of a pickle module: Unpickler and load."""

    Unpickler = RestrictedUnpickler
    __name__ = "avssm_restricted_pickle"

    @staticmethod
    def load(file, **kwargs):
        return RestrictedUnpickler(file, **kwargs).load()


def load_checkpoint_file(path: str | Path):
    """torch.load of ``path`` through both layers; RefusedCheckpointError names what was refused."""
    import torch

    check_checkpoint_file(path)
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=RestrictedPickleModule)
