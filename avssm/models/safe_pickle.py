"""Reading checkpoint files without running code: default-deny, exact names, bounded memory, one reader.

A PyTorch checkpoint is a pickle, and a pickle can name any Python object (``os.system``, ``eval``)
and call it. avssm reads checkpoints itself, without ``torch.load``, so that what is checked is
exactly what is loaded:

* **One reader.** The zip format (``torch.save`` since 1.6) is read with ``zipfile``; an archive
  with data before it (whose offsets two zip readers resolve differently), a name listed twice, or
  a compressed entry (``torch.save`` writes none) is refused. The legacy format (five pickles, then
  the raw storages) is read from the file directly. The bytes of each pickle are read once and
  both layers below work on those bytes.
* **Layer 1**, :func:`check_pickle`: every pickle is read as an opcode stream (``pickletools``)
  before anything is unpickled: each GLOBAL, STACK_GLOBAL and INST must name a listed (module,
  name) pair, exactly (never by prefix, never with a dot in the name: the protocol resolves
  ``torch._utils`` + ``_rebuild_tensor.__builtins__.get`` to ``eval``); extension codes,
  TorchScript archives and the pre-0.4 tar format are refused.
* **Layer 2**, :class:`RestrictedUnpickler`: resolves only the listed pairs; calls (REDUCE,
  NEWOBJ, INST, OBJ) only the listed functions and constructors, never a class such as
  ``torch.FloatTensor`` that would allocate what a number says; sets state (BUILD) only on
  containers it created itself, never on a class or a function; builds only dense, strided CPU
  tensors that lie inside their storage.
* **Memory.** A storage's declared size must equal its record's size (zip) or fit in what is left
  of the file (legacy) before anything is allocated, so a file never costs more memory than it
  holds, plus at most :data:`MAX_PICKLE_BYTES` of pickled structure.

What a checkpoint may contain: tensors (dense, strided, CPU after loading; fp/int/bool dtypes),
dicts, lists, tuples, sets, numbers, strings, bytes, ``collections.OrderedDict`` / ``Counter``, and
the two configuration classes the official files pickle: ``argparse.Namespace`` (Vim) and yacs'
``CfgNode`` (VMamba), read into :class:`PickledConfig`, a plain dict, so yacs is not needed.

    obj = load_checkpoint_file("vssm1_tiny_0230s_ckpt_epoch_264.pth")   # raises RefusedCheckpointError
"""
from __future__ import annotations

import argparse
import collections
import io
import os
import pickle
import pickletools
import struct
import sys
import tarfile
import zipfile
from pathlib import Path

import torch

# The pickled structure (not the tensor data) of one checkpoint: official files hold well under 1 MiB.
MAX_PICKLE_BYTES = 16 << 20


class PickledConfig(dict):
    """Stand-in for yacs' CfgNode (a dict subclass) so its contents can be read without yacs."""


class RefusedCheckpointError(pickle.UnpicklingError):
    """The file names a Python object outside the allow-list, or has a form that is not read."""


# --- what a checkpoint may name -------------------------------------------------------------------------------

def _tensor_in_storage(storage, offset, size, stride):
    """Refuse a tensor view that is not a plain strided view inside its (CPU) storage."""
    if not isinstance(storage, torch.storage.TypedStorage) or storage._untyped_storage.device.type != "cpu":
        raise RefusedCheckpointError("a tensor's storage is not one read from the file")
    ints = (offset, *size, *stride)
    if len(size) != len(stride) or any(type(v) is not int or v < 0 for v in ints):
        raise RefusedCheckpointError("a tensor has a negative or non-integer size, stride or offset")
    numel = 1
    for s in size:
        numel *= s
    elements = storage._size()
    if numel and (offset + sum((s - 1) * st for s, st in zip(size, stride)) >= elements or numel > elements):
        raise RefusedCheckpointError(f"a tensor of size {tuple(size)} does not lie inside its storage "
                                     f"of {elements} elements")


def _no_hooks(hooks):
    if hooks:  # torch.save refuses to write backward hooks; a file that holds some was not made by it
        raise RefusedCheckpointError("a tensor carries backward hooks")


def _rebuild_tensor(storage, storage_offset, size, stride):
    _tensor_in_storage(storage, storage_offset, size, stride)
    return torch.empty((0,), dtype=storage.dtype).set_(storage._untyped_storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    _no_hooks(backward_hooks)
    tensor = _rebuild_tensor(storage, storage_offset, size, stride)
    if metadata:
        torch._utils._set_tensor_metadata(tensor, metadata)  # conj / neg bits only
    return tensor.requires_grad_(bool(requires_grad)) if tensor.is_floating_point() else tensor


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
    if not isinstance(dtype, torch.dtype):
        raise RefusedCheckpointError("a tensor's dtype is not a torch dtype")
    if isinstance(storage, torch.storage.TypedStorage) and storage.dtype != dtype:
        storage = torch.storage.TypedStorage(wrap_storage=storage._untyped_storage, dtype=dtype, _internal=True)
    return _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    _no_hooks(backward_hooks)
    if type(data) is not torch.Tensor:
        raise RefusedCheckpointError("a parameter holds something other than a tensor")
    return torch.nn.Parameter(data, bool(requires_grad) and data.is_floating_point())


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    if state:  # would set attributes named by the file on the parameter
        raise RefusedCheckpointError("a parameter carries Python attributes")
    return _rebuild_parameter(data, requires_grad, backward_hooks)


def _rebuild_from_type_v2(func, new_type, args, state):
    if func not in _REBUILDERS or new_type not in (torch.Tensor, torch.nn.Parameter) or state:
        raise RefusedCheckpointError("a tensor is rebuilt as a subclass or with Python attributes")
    result = func(*args)
    return result if type(result) is new_type else result.as_subclass(new_type)


def _bytearray(*args):
    if args and not isinstance(args[0], (bytes, str)):  # bytearray(3 << 30) would allocate 3 GiB
        raise RefusedCheckpointError("it builds a bytearray from a size")
    return bytearray(*args)


def _encode(text, encoding="utf-8", errors="strict"):
    """Protocol 2's way of writing bytes (``_codecs.encode(str, 'latin1')``), and nothing else a codec can do."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise RefusedCheckpointError(f"it calls _codecs.encode with the codec {str(encoding)[:20]!r}")
    return text.encode("latin-1")


def _pairs(module: str, names: str) -> dict:
    return {(module, name): None for name in names.split()}


_STORAGES = ("BFloat16Storage BoolStorage ByteStorage CharStorage ComplexDoubleStorage ComplexFloatStorage "
             "DoubleStorage FloatStorage HalfStorage IntStorage LongStorage ShortStorage")
_TENSORS = ("BFloat16Tensor BoolTensor ByteTensor CharTensor DoubleTensor FloatTensor HalfTensor IntTensor "
            "LongTensor ShortTensor")
_DTYPES = ("bool uint8 int8 int16 int32 int64 float16 float32 float64 bfloat16 complex32 complex64 complex128 "
           "float8_e4m3fn float8_e4m3fnuz float8_e5m2 float8_e5m2fnuz uint16 uint32 uint64")

_REBUILDERS = {_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter,
               _rebuild_parameter_with_state}

# (module, name) -> the object to return instead of importing it (None: import module, take the attribute:
# classes and dtypes that are only ever values in a checkpoint, never called).
ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    **_pairs("torch", "Tensor Size device UntypedStorage " + _DTYPES + " " + _STORAGES + " " + _TENSORS),
    **_pairs("torch.cuda", _STORAGES + " " + _TENSORS),
    **_pairs("torch.storage", "TypedStorage UntypedStorage"),
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "Counter"): collections.Counter,
    ("builtins", "set"): set, ("__builtin__", "set"): set,  # protocol 2 names Python 2's module
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): _bytearray,
    ("_codecs", "encode"): _encode,  # protocol 2 writes bytes as _codecs.encode(str, 'latin1')
    # The official files' configuration objects.
    ("argparse", "Namespace"): argparse.Namespace,
    ("yacs.config", "CfgNode"): PickledConfig,
}

# What REDUCE may call (the rest of the list are values: classes, dtypes).
_CALLABLE = {*_REBUILDERS, _rebuild_from_type_v2, collections.OrderedDict, collections.Counter, set, complex,
             _bytearray, _encode, torch.Size, torch.device}
# The classes NEWOBJ / INST / OBJ may instantiate, and whose instances BUILD may set state on.
_CONTAINERS = (collections.OrderedDict, collections.Counter, argparse.Namespace, PickledConfig)


def _refuse(module: str, name: str) -> RefusedCheckpointError:
    return RefusedCheckpointError(f"it names the Python object '{module}.{name}', which a checkpoint may not "
                                  "contain (only tensors, containers and the official config classes)")


def _check_pair(module, name) -> None:
    if not (isinstance(module, str) and isinstance(name, str)) or (module, name) not in ALLOWED_GLOBALS:
        raise _refuse(str(module), str(name))


# --- layer 1: the opcodes ---------------------------------------------------------------------------------------

_STRING_PUSH = {"UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "STRING", "BINSTRING", "SHORT_BINSTRING"}
_MEMO_PUT = {"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"}
_MEMO_GET = {"GET", "BINGET", "LONG_BINGET"}


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


# --- layer 2: the unpickler -------------------------------------------------------------------------------------

class RestrictedUnpickler(pickle._Unpickler):
    """Layer 2: resolves only the listed (module, name) pairs, exactly; calls only the listed functions; sets
    state only on containers it made. Python's own unpickler, with those opcodes replaced."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str):
        _check_pair(module, name)
        stand_in = ALLOWED_GLOBALS[(module, name)]
        if stand_in is not None:
            return stand_in
        try:
            return getattr(sys.modules.get(module) or __import__(module, fromlist=[name]), name)
        except (ImportError, AttributeError):
            raise RefusedCheckpointError(f"it names '{module}.{name}', which this PyTorch does not have") from None

    def persistent_load(self, pid):
        raise RefusedCheckpointError("it refers to data outside the pickle")

    def _reduce(self):
        args = self.stack.pop()
        func = self.stack[-1]
        if not _hashable_in(func, _CALLABLE) or not isinstance(args, tuple):
            raise RefusedCheckpointError(f"it calls {_describe(func)}, which a checkpoint may not call")
        self.stack[-1] = func(*args)

    def _new(self, cls, args):
        if cls not in _CONTAINERS or not isinstance(args, (tuple, list)):
            raise RefusedCheckpointError(f"it creates an instance of {_describe(cls)}")
        self.append(cls.__new__(cls, *args) if cls in (argparse.Namespace, PickledConfig) else cls(*args))

    def _newobj(self):
        args = self.stack.pop()
        self._new(self.stack.pop(), args)

    def _newobj_ex(self):
        kwargs, args = self.stack.pop(), self.stack.pop()
        if kwargs:
            raise RefusedCheckpointError("it creates an object with keyword arguments")
        self._new(self.stack.pop(), args)

    def _inst(self):
        module = self.readline()[:-1].decode("ascii")
        name = self.readline()[:-1].decode("ascii")
        self._new(self.find_class(module, name), self.pop_mark())

    def _obj(self):
        args = self.pop_mark()
        self._new(args.pop(0), args)

    def _build(self):
        state = self.stack.pop()
        inst = self.stack[-1]
        if type(inst) not in _CONTAINERS:  # never a class, a function or a tensor
            raise RefusedCheckpointError(f"it sets attributes on {_describe(inst)}")
        if not isinstance(state, dict) or not all(type(k) is str for k in state):
            raise RefusedCheckpointError("it sets attributes that are not named by strings")
        inst.__dict__.update(state)

    def _ext(self):
        raise RefusedCheckpointError("it names objects through the copyreg extension registry")

    for _op, _fn in ((pickle.REDUCE, _reduce), (pickle.NEWOBJ, _newobj), (pickle.NEWOBJ_EX, _newobj_ex),
                     (pickle.INST, _inst), (pickle.OBJ, _obj), (pickle.BUILD, _build), (pickle.EXT1, _ext),
                     (pickle.EXT2, _ext), (pickle.EXT4, _ext)):
        dispatch[_op[0]] = _fn
    del _op, _fn


def _hashable_in(obj, group) -> bool:
    try:
        return obj in group
    except TypeError:
        return False


def _describe(obj) -> str:
    if isinstance(obj, type):
        return f"the class '{obj.__module__}.{obj.__qualname__}'"
    return f"a {type(obj).__name__}"


class _Storages:
    """The storages of one checkpoint, keyed as the pickle names them, each read once and checked before it is
    allocated: ``read(key, nbytes)`` returns the bytes' uint8 tensor."""

    def __init__(self, read):
        self.read, self.loaded = read, {}

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage" and len(pid) in (5, 6)):
            raise RefusedCheckpointError("it refers to data that is not a tensor storage")
        storage_type, key, numel = pid[1], str(pid[2]), pid[4]
        if not (isinstance(storage_type, type) and issubclass(storage_type, (torch.storage._LegacyStorage,
                                                                             torch.storage.UntypedStorage))):
            raise RefusedCheckpointError("a storage's type is not a torch storage class")
        dtype = (torch.uint8 if storage_type is torch.storage.UntypedStorage
                 else torch.storage._get_dtype_from_pickle_storage_type(storage_type.__name__))
        if type(numel) is not int or numel < 0:
            raise RefusedCheckpointError(f"storage {key} has a size of {numel!r}")
        if key not in self.loaded:
            data = self.read(key, numel * torch._utils._element_size(dtype))
            self.loaded[key] = torch.storage.TypedStorage(wrap_storage=data.untyped_storage(), dtype=dtype,
                                                          _internal=True)
        storage = self.loaded[key]
        if storage.dtype != dtype:  # the same bytes read as another dtype
            storage = torch.storage.TypedStorage(wrap_storage=storage._untyped_storage, dtype=dtype, _internal=True)
        view = pid[5] if len(pid) == 6 else None  # legacy files: (view key, offset, size) of a storage slice
        if view is not None:
            _, offset, size = view
            if type(offset) is not int or type(size) is not int or offset < 0 or size < 0 \
                    or offset + size > storage._size():
                raise RefusedCheckpointError(f"a view of storage {key} lies outside it")
            element = torch._utils._element_size(dtype)
            storage = torch.storage.TypedStorage(
                wrap_storage=storage._untyped_storage[offset * element:(offset + size) * element], dtype=dtype,
                _internal=True)
        return storage


def _unpickle(data: bytes, persistent_load=None):
    check_pickle(io.BytesIO(data))  # layer 1, then layer 2 on the same bytes
    unpickler = RestrictedUnpickler(io.BytesIO(data))
    if persistent_load is not None:
        unpickler.persistent_load = persistent_load
    return unpickler.load()


# --- the two file formats ---------------------------------------------------------------------------------------

def _zip_concat(archive: zipfile.ZipFile, f) -> int:
    """Bytes before the archive that zipfile added to every offset (a second reader would not)."""
    end = zipfile._EndRecData(f)
    if end is None:
        return 0
    concat = end[zipfile._ECD_LOCATION] - end[zipfile._ECD_SIZE] - end[zipfile._ECD_OFFSET]
    if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:
        concat -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator
    return concat


class _ZipCheckpoint:
    def __init__(self, f, size: int):
        try:
            self.archive = zipfile.ZipFile(f)
            concat = _zip_concat(self.archive, f)
        except (zipfile.BadZipFile, OSError, ValueError, struct.error) as e:
            raise RefusedCheckpointError(f"it starts as a zip archive but cannot be read as one ({e})") from None
        if concat:
            raise RefusedCheckpointError(f"it has {concat} bytes before its zip archive, which zip readers "
                                         "resolve differently")
        infos = self.archive.infolist()
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise RefusedCheckpointError("its zip archive lists an entry twice")
        if any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in names):
            raise RefusedCheckpointError("it is a TorchScript archive (code), not a checkpoint")
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise RefusedCheckpointError("it is a zip archive without exactly one pickled object (data.pkl)")
        self.prefix, self.size, self.f = pickles[0][:-len("data.pkl")], size, f
        self.infos = {i.filename: i for i in infos}

    def record(self, name: str, expect: int | None = None, limit: int | None = None) -> torch.Tensor | None:
        info = self.infos.get(self.prefix + name)
        if info is None:
            return None
        if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
            raise RefusedCheckpointError(f"its entry {name} is compressed (torch.save writes none)")
        if expect is not None and info.file_size != expect:
            raise RefusedCheckpointError(f"its entry {name} holds {info.file_size} bytes, its tensor needs {expect}")
        if limit is not None and info.file_size > limit:
            raise RefusedCheckpointError(f"its entry {name} is {info.file_size} bytes (at most {limit} read)")
        # Read in place from the file (stored data needs no inflating): the local header must name the entry the
        # directory names, and the data must lie inside the file.
        self.f.seek(info.header_offset)
        local = self.f.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise RefusedCheckpointError(f"its entry {name} has no local header where the directory says")
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        if self.f.read(name_length) != info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437"):
            raise RefusedCheckpointError(f"its entry {name} is named otherwise in its local header")
        start = info.header_offset + 30 + name_length + extra_length
        if start + info.file_size > self.size:
            raise RefusedCheckpointError(f"its entry {name} runs past the end of the file")
        out = torch.empty(info.file_size, dtype=torch.uint8)
        self.f.seek(start)
        if info.file_size and self.f.readinto(memoryview(out.numpy())) != info.file_size:
            raise RefusedCheckpointError(f"its entry {name} is truncated")
        return out

    def load(self):
        order = self.record("byteorder", limit=16)
        if order is not None and bytes(order.numpy()) != b"little":
            raise RefusedCheckpointError("it is not a little-endian checkpoint")
        data = bytes(self.record("data.pkl", limit=MAX_PICKLE_BYTES).numpy())

        def storage(key, nbytes):
            found = self.record(f"data/{key}", expect=nbytes)
            if found is None:
                raise RefusedCheckpointError(f"its storage data/{key} is missing")
            return found

        return _unpickle(data, _Storages(storage).persistent_load)


class _Bounded(io.RawIOBase):
    """A file read no further than its end: a pickle that says 'read 3 GiB' gets what the file holds."""

    def __init__(self, f, size: int):
        self.f, self.size = f, size

    def readable(self):
        return True

    def tell(self):
        return self.f.tell()

    def remaining(self) -> int:
        return self.size - self.f.tell()

    def readinto(self, buffer):
        view = memoryview(buffer).cast("B")
        return self.f.readinto(view[:max(0, min(len(view), self.remaining()))])

    def read(self, n=-1):
        return self.f.read(self.remaining() if n is None or n < 0 else min(n, self.remaining()))

    def readline(self, limit=-1):
        return self.f.readline(min(1 << 20, self.remaining()) if limit is None or limit < 0 else limit)


_LEGACY_MAGIC, _LEGACY_PROTOCOL = 0x1950A86A20F9469CFC6C, 1001


def _legacy_pickle(f: _Bounded) -> bytes:
    """The bytes of the next pickle in the file (read once; both layers then use them)."""
    start = f.f.tell()
    check_pickle(f)  # reads up to the STOP
    end = f.f.tell()
    if end - start > MAX_PICKLE_BYTES:
        raise RefusedCheckpointError(f"its pickled data is {end - start} bytes (at most {MAX_PICKLE_BYTES} read)")
    f.f.seek(start)
    return f.read(end - start)


def _load_legacy(f: _Bounded):
    """``torch.save(..., _use_new_zipfile_serialization=False)``: magic, protocol, system info, the object,
    the storage keys (five pickles), then each storage as an int64 element count and its bytes."""
    if _unpickle(_legacy_pickle(f)) != _LEGACY_MAGIC:
        raise RefusedCheckpointError("it is neither a zip archive nor a legacy PyTorch file")
    if _unpickle(_legacy_pickle(f)) != _LEGACY_PROTOCOL:
        raise RefusedCheckpointError("it is a legacy PyTorch file of an unknown protocol")
    info = _unpickle(_legacy_pickle(f))
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise RefusedCheckpointError("it is not a little-endian checkpoint")
    obj_bytes = _legacy_pickle(f)
    keys = _unpickle(_legacy_pickle(f))
    budget = [f.remaining()]  # every storage's bytes must be in what is left of the file
    pending = {}

    def allocate(key, nbytes):
        if nbytes > budget[0]:
            raise RefusedCheckpointError(f"storage {key} needs {nbytes} bytes, the file holds {budget[0]} more")
        budget[0] -= nbytes
        pending[key] = torch.empty(nbytes, dtype=torch.uint8)
        return pending[key]

    storages = _Storages(allocate)
    obj = _unpickle(obj_bytes, storages.persistent_load)
    if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(pending):
        raise RefusedCheckpointError("its list of storages does not match the storages its object uses")
    for key in map(str, keys):
        out, element = pending[key], torch._utils._element_size(storages.loaded[key].dtype)
        count = f.read(8)
        if len(count) != 8 or struct.unpack("<q", count)[0] * element != out.numel():
            raise RefusedCheckpointError(f"storage {key}'s recorded size does not match its tensor")
        if f.readinto(memoryview(out.numpy())) != out.numel():
            raise RefusedCheckpointError(f"storage {key} is truncated")
    return obj


def _is_tar(f) -> bool:
    try:
        f.seek(0)
        return tarfile.is_tarfile(f)
    except (OSError, tarfile.TarError):
        return False
    finally:
        f.seek(0)


def load_checkpoint_file(path: str | Path):
    """Read ``path`` (zip or legacy format) through both layers, onto the CPU; RefusedCheckpointError names what
    was refused. Nothing in the file is run, and memory is bounded by the file's size."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if f.read(4) == b"PK\x03\x04":  # how torch.load recognizes its zip format
            return _ZipCheckpoint(f, size).load()
        if _is_tar(f):
            raise RefusedCheckpointError("it is in PyTorch's pre-0.4 tar format, which avssm does not read")
        return _load_legacy(_Bounded(f, size))  # a file that is no pickle raises ValueError (pickletools)


def check_checkpoint_file(path: str | Path) -> None:
    """Layer 1 alone: refuse the file unless every pickle the loader reads names only listed objects (nothing
    is unpickled)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if f.read(4) == b"PK\x03\x04":
            check_pickle(io.BytesIO(bytes(_ZipCheckpoint(f, size).record("data.pkl", limit=MAX_PICKLE_BYTES).numpy())))
            return
        if _is_tar(f):
            raise RefusedCheckpointError("it is in PyTorch's pre-0.4 tar format, which avssm does not read")
        bounded = _Bounded(f, size)
        for _ in range(5):
            if not f.peek(1):
                break
            _legacy_pickle(bounded)
