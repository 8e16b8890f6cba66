"""Files avssm writes: checked before any work starts, never one of the inputs, written atomically.

    check_output("det.int8.onnx", "--output", inputs={"MODEL": "det.onnx"})   # exit-2 errors, before work
    with atomic_output("det.int8.onnx") as tmp:                                 # write tmp; renamed on success
        onnx.save(model, str(tmp))
    write_json(report, "-")                                                     # "-" is stdout

A file is written beside its destination and renamed into place, so a failed or interrupted write leaves
the old file (or none); it gets the mode a plain ``open()`` would give it under the user's umask.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

from avssm.errors import AvssmError, FaultError


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(path: str | os.PathLike, flag: str, inputs: dict | None = None, stdout: bool = False) -> None:
    """Refuse, before any work, an output that cannot be written or that is one of ``inputs`` ({flag: path})."""
    if stdout and str(path) == "-":
        return
    check_not_input(path, flag, inputs)
    out = Path(path)
    if out.is_dir():
        raise AvssmError(f"{flag} {path}: is a folder; give a file name")
    if out.exists() and not out.is_file():
        raise AvssmError(f"{flag} {path}: not a regular file" + ("; use - for stdout" if stdout else ""))
    parent = out.parent
    if parent.exists() and not parent.is_dir():
        raise AvssmError(f"{flag} {path}: {parent} is a file, not a folder")
    if not parent.is_dir():
        raise AvssmError(f"{flag} {path}: folder {parent} does not exist; create it first")
    _probe_folder(parent, f"{flag} {path}")


def check_not_input(path: str | os.PathLike, flag: str, inputs: dict | None) -> None:
    """Refuse an output that is the same file as one of ``inputs`` ({flag: path}): same path, link or hard link."""
    for name, given in (inputs or {}).items():
        if given and _same_file(Path(path), Path(given)):
            raise AvssmError(f"{flag} {path} is the same file as {name} {given}: writing it would destroy the "
                             f"input; choose another {flag}")


def check_distinct(outputs: dict) -> None:
    """Refuse, before any work, two outputs of one command that are the same file ({flag: path}; None and "-"
    are skipped): same path, link or hard link. One would overwrite the other."""
    given = [(flag, path) for flag, path in outputs.items() if path and str(path) != "-"]
    for i, (flag, path) in enumerate(given):
        for other, other_path in given[i + 1:]:
            if _same_file(Path(path), Path(other_path)):
                raise AvssmError(f"{other} {other_path} is the same file as {flag} {path}: one would overwrite "
                                 f"the other; give each output its own file")


def check_output_dir(path: str | os.PathLike, flag: str) -> None:
    """Refuse, before any work, an output folder that is a file or cannot be created or written."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise AvssmError(f"{flag} {path}: is a file, not a folder")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise AvssmError(f"{flag} {path}: {existing} is a file, not a folder")
    _probe_folder(existing, f"{flag} {path}")


def _probe_folder(folder: Path, what: str) -> None:
    try:  # os.access says yes to root on read-only and virtual file systems; a real file says the truth
        fd, probe = tempfile.mkstemp(prefix=".avssm-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise AvssmError(f"{what}: cannot write in {folder} ({e.strerror}); choose another place") from None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, keep_suffix: bool = False):
    """Yield a temporary path beside ``path``; on success give it the umask's mode and rename it to ``path``.
    ``keep_suffix``: the temporary name ends with ``path``'s suffix too (writers that choose the format by it)."""
    path = Path(path)
    suffix = ".partial" + (path.suffix if keep_suffix else "")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def discard_outputs(stack: contextlib.ExitStack) -> None:
    """Close ``stack`` as if its block had failed: each atomic_output entered on it removes its temporary file and
    renames nothing (an output kept open across calls, found broken)."""
    stack.__exit__(FaultError, FaultError("discarded"), None)


@contextlib.contextmanager
def atomic_outputs(*paths: str | os.PathLike):
    """Temporary paths beside each of ``paths``, renamed into place together when the block succeeds: files that
    belong together (an engine and its sidecar) are all written, or none is."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_output(path)) for path in paths]


def write_fault(flag: str, path, error: OSError) -> FaultError:
    """The one error for an output that could not be written during the work (disk full, file too large)."""
    return FaultError(f"{flag} {path}: could not be written ({error.strerror or error})")


@contextlib.contextmanager
def faults_as(flag: str, path: str | os.PathLike):
    """An OSError inside the block (a full disk, a file too large) becomes the FaultError naming ``flag`` and
    ``path``: one line, exit 1."""
    try:
        yield
    except OSError as e:
        raise write_fault(flag, path, e) from None


def write_text(path: str | os.PathLike, text: str, flag: str = "output") -> None:
    """Write ``text`` atomically; a failure (disk full) is a fault during work: exit 1."""
    with faults_as(flag, path), atomic_output(path) as tmp:
        tmp.write_text(text)


def write_json(obj, path: str | os.PathLike, flag: str = "--json") -> None:
    """``obj`` as indented JSON to the file ``path``, or to stdout when ``path`` is "-"."""
    text = json.dumps(obj, indent=2) + "\n"
    if str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    write_text(path, text, flag)
