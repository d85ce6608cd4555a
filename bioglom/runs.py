"""Runs on disk: one run is one HDF5 file, readable while it is being written.

A :class:`RunWriter` creates the file, appends metric records and state snapshots, flushing at
every call, and runs in HDF5 SWMR mode (single writer, multiple readers) so that a notebook can
follow a live run with :func:`open_run`. Readers get plain numpy arrays.

Layout of a run file::

    /                 attrs: format ("bioglom-run/1"), config (TOML text), seed, status
                      ("running" | "finished" | "failed" | "interrupted" | "diverged"),
                      created / finished (ISO 8601 UTC), versions (JSON text), summary (JSON
                      text of final metrics, set at close), plus caller-given attrs
    /metrics/step     int64 [n]             update count of each record (the x axis)
    /metrics/<name>   float64 [n]           one per metric, NaN where a record lacks it
    /phase            bytes S16 [n]         schedule phase of each record (e.g. "day")
    /snapshots/step   int64 [S]             update count of each snapshot
    /snapshots/<name> [S, *shape]           e.g. state [S, K, N, B, d], islands [S, K, B, Hg, Wg]
    /probe/<name>     fixed arrays written at creation (probe images, masks)

The layout first sketched in docs/design.md §7 had one group per snapshot
(``/snapshots/<step>/state``); it changed: under SWMR, groups, datasets and attributes may not
be created once the writer has switched SWMR on (HDF5 does not support it and open readers do
not see them), so every dataset is created up front and grows along axis 0. For the same reason
``status``, ``finished`` and ``summary`` are written by :meth:`RunWriter.close` after the SWMR
handle is closed, by re-opening the file in ``r+`` mode.

All opens use ``locking=False``: a reader holding the file must not stop the writer's final
``r+`` re-open, and HDF5 refuses to open one file twice in one process with different locking
flags. Exclusive writing is ensured instead by refusing to overwrite an existing file.

Readers fail fast on a damaged file. :func:`open_run` first reads the HDF5 signature and the
superblock's end-of-file address itself (a file cut short -- an interrupted copy, a full disk -- is
reported as truncated), and its SWMR opens ask HDF5 for few metadata read attempts: by default a
SWMR reader retries a metadata block whose checksum fails 100 times, sleeping 1 ns, 2 ns, 4 ns,
... (up to an hour) between tries, which on a truncated file is hours in which Ctrl-C is ignored.

A reader's open handle does not see attributes changed after it opened, so :class:`Run` re-opens
the file whenever attributes are read (``status``, ``summary``, ...). HDF5 shares one file handle
between all opens of a file within a process, so the fresh values are seen only once every other
handle to that file in this process is closed.
"""

from __future__ import annotations

import ctypes
import datetime
import json
import math
import os
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

FORMAT = "bioglom-run/1"
STATUSES = ("running", "finished", "failed", "interrupted", "diverged")
PHASE_BYTES = 16

_RESERVED_ATTRS = (
    "format",
    "config",
    "seed",
    "status",
    "created",
    "finished",
    "versions",
    "summary",
    "resumed",
)
_METRIC_CHUNK = 1024
_LOCKING = False
_OPEN_RETRY_S = 1.0  # how long a reader waits out a writer that is not (yet / any more) in SWMR
# Metadata read attempts of a SWMR reader (HDF5's default is 100). HDF5 sleeps 1 ns, 2 ns, 4 ns,
# ... between attempts, so 28 attempts wait out a half-written block for about 0.27 s in all.
_SWMR_READ_ATTEMPTS = 28
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class RunFileError(ValueError):
    """A file that cannot be read as a bioglom run: not HDF5, truncated, damaged, or an HDF5
    file written by another program. The message is one line that starts with the path."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not name or "/" in name or name == "step":
        raise ValueError(
            f"bad {kind} name {name!r}: must be a non-empty str without '/', not 'step'"
        )


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _attr_value(name: str, value: object) -> str | int | float | bool:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"attr {name!r} must be str, int, float or bool, got {type(value).__name__}")


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return [_decode(v) for v in value.tolist()]
    return value


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):  # numpy scalar or 0-d tensor
        return o.item()
    return str(o)


def _fsync(path: Path) -> None:
    """``fsync`` a file by path (its written pages reach the disk)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rewrite(path: Path) -> None:
    """Copy a run into a fresh file and rename it over the old one.

    A writer killed while in SWMR mode leaves the file marked as open for writing; HDF5 then
    refuses to open it for writing again (readers are fine). A fresh copy, read through a
    SWMR reader, carries every flushed record and no such mark.
    """
    tmp = path.with_name(f".{path.name}.resume-{os.getpid()}")
    try:
        with (
            _open_h5(path) as src,
            h5py.File(tmp, "w", libver="latest", locking=_LOCKING) as dst,
        ):
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            for name in src:
                src.copy(src[name], dst, name=name)
        _fsync(tmp)  # the copy is on disk before it replaces the only other one
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class RunWriter:
    """Write one run to an HDF5 file that readers can follow while it grows.

    Parameters
    ----------
    path : str or Path
        The ``.h5`` file; parent directories are created.
    config_text : str
        The run's configuration as TOML text.
    seed : int
        The run's random seed.
    metrics : sequence of str
        Names of the metrics that :meth:`record` may be given.
    snapshots : mapping of name to (shape, dtype)
        Arrays stored by :meth:`snapshot`, e.g. ``{"state": ((K, N, B, d), "float16")}``;
        each becomes a dataset [S, *shape].
    probe : mapping of name to array
        Fixed arrays stored once (probe images, masks).
    attrs : mapping of name to str, int, float or bool
        Extra root attributes.
    versions : mapping of name to str
        Versions to record besides python, numpy, h5py and hdf5.
    overwrite : bool
        Replace an existing file instead of raising FileExistsError.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        config_text: str,
        seed: int,
        metrics: Sequence[str],
        snapshots: Mapping[str, tuple[tuple[int, ...], np.dtype | str]] = {},
        probe: Mapping[str, np.ndarray] = {},
        attrs: Mapping[str, object] = {},
        versions: Mapping[str, str] = {},
        overwrite: bool = False,
    ) -> None:
        self._path = Path(path)
        self._metrics = list(metrics)
        if len(set(self._metrics)) != len(self._metrics):
            raise ValueError(f"duplicate metric names in {self._metrics}")
        for name in self._metrics:
            _check_name("metric", name)
        self._snap_shapes: dict[str, tuple[int, ...]] = {}
        self._snap_dtypes: dict[str, np.dtype] = {}
        for name, (shape, dtype) in snapshots.items():
            _check_name("snapshot", name)
            self._snap_shapes[name] = tuple(int(s) for s in shape)
            self._snap_dtypes[name] = np.dtype(dtype)
        for name in probe:
            _check_name("probe", name)
        extra = {}
        for name, value in attrs.items():
            if name in _RESERVED_ATTRS:
                raise ValueError(f"attr {name!r} is reserved; reserved names: {_RESERVED_ATTRS}")
            extra[name] = _attr_value(name, value)
        all_versions = {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "h5py": h5py.version.version,
            "hdf5": h5py.version.hdf5_version,
            **{str(k): str(v) for k, v in versions.items()},
        }

        if self._path.exists():
            if not overwrite:
                raise FileExistsError(
                    f"run file {str(self._path)!r} already exists; "
                    "pass overwrite=True (--overwrite) to replace it"
                )
            # unlink rather than truncate, so a reader still holding the old file is not corrupted
            self._path.unlink()
        self._path.parent.mkdir(parents=True, exist_ok=True)

        self._n_records = 0
        self._n_snapshots = 0
        self._closed = False
        f = h5py.File(self._path, "w", libver="latest", locking=_LOCKING)
        try:
            f.attrs["format"] = FORMAT
            f.attrs["config"] = config_text
            f.attrs["seed"] = int(seed)
            f.attrs["status"] = "running"
            f.attrs["created"] = _now()
            f.attrs["versions"] = json.dumps(all_versions)
            for name, value in extra.items():
                f.attrs[name] = value

            grow = {"maxshape": (None,), "chunks": (_METRIC_CHUNK,)}
            m = f.create_group("metrics")
            m.create_dataset("step", shape=(0,), dtype="int64", fillvalue=-1, **grow)
            for name in self._metrics:
                m.create_dataset(name, shape=(0,), dtype="float64", fillvalue=np.nan, **grow)
            f.create_dataset("phase", shape=(0,), dtype=f"S{PHASE_BYTES}", **grow)

            s = f.create_group("snapshots")
            s.create_dataset("step", shape=(0,), dtype="int64", fillvalue=-1, **grow)
            for name, shape in self._snap_shapes.items():
                s.create_dataset(
                    name,
                    shape=(0, *shape),
                    maxshape=(None, *shape),
                    chunks=(1, *shape),
                    dtype=self._snap_dtypes[name],
                    compression="gzip",
                    compression_opts=1,
                    shuffle=True,
                )

            p = f.create_group("probe")
            for name, array in probe.items():
                array = _to_numpy(array)
                compress = {"compression": "gzip", "shuffle": True} if array.ndim else {}
                p.create_dataset(name, data=array, **compress)

            f.flush()
            f.swmr_mode = True
        except BaseException:
            f.close()
            self._path.unlink(missing_ok=True)
            raise
        self._f: h5py.File | None = f

    @classmethod
    def reopen(
        cls,
        path: str | os.PathLike[str],
        n_records: int,
        n_snapshots: int,
        metrics: Sequence[str] | None = None,
    ) -> RunWriter:
        """Continue writing an existing run (``--resume``): keep its first ``n_records`` records
        and ``n_snapshots`` snapshots (what its checkpoint had seen), drop any later ones, set
        its status back to ``running`` and switch SWMR on again.

        ``metrics``: the names the resumed run will record; a file that declares other names
        (written by another version of bioglom) raises RunFileError before anything changes.
        """
        self = cls.__new__(cls)
        self._path = Path(path)
        if not self._path.exists():
            raise FileNotFoundError(f"no run file {str(self._path)!r} to resume")
        _rewrite(self._path)
        f = h5py.File(self._path, "r+", libver="latest", locking=_LOCKING)
        try:
            if f.attrs.get("format") != FORMAT:
                raise ValueError(f"{str(self._path)!r} is not a bioglom run ({FORMAT})")
            m, s = f["metrics"], f["snapshots"]
            have_r, have_s = m["step"].shape[0], s["step"].shape[0]
            if n_records > have_r or n_snapshots > have_s:
                raise ValueError(
                    f"{str(self._path)!r} holds {have_r} records and {have_s} snapshots, fewer "
                    f"than its checkpoint saw ({n_records}, {n_snapshots}): wrong file?"
                )
            self._metrics = tuple(k for k in m if k != "step")
            if metrics is not None and set(metrics) != set(self._metrics):
                missing = sorted(set(metrics) - set(self._metrics))
                extra = sorted(set(self._metrics) - set(metrics))
                what = "; ".join(
                    f"{label} {', '.join(names[:3])}{' ...' if len(names) > 3 else ''} "
                    f"({len(names)})"
                    for label, names in (("lacks", missing), ("has unknown", extra))
                    if names
                )
                raise RunFileError(
                    f"{self._path}: written by another version of bioglom (its metrics {what}), "
                    "so it cannot be resumed: train it afresh"
                )
            self._snap_shapes, self._snap_dtypes = {}, {}
            for name in s:
                if name != "step":
                    self._snap_shapes[name] = tuple(s[name].shape[1:])
                    self._snap_dtypes[name] = s[name].dtype
            for ds in [*m.values(), f["phase"]]:
                ds.resize((n_records,))
            for ds in s.values():
                ds.resize((n_snapshots, *ds.shape[1:]))
            f.attrs["status"] = "running"
            f.attrs["resumed"] = _now()
            for stale in ("finished", "summary", "diverged_at", "diverged_tensor"):
                if stale in f.attrs:
                    del f.attrs[stale]
            f.flush()
            f.swmr_mode = True
        except BaseException:
            f.close()
            raise
        self._f = f
        self._n_records, self._n_snapshots, self._closed = n_records, n_snapshots, False
        return self

    @property
    def path(self) -> Path:
        """Path of the run file."""
        return self._path

    @property
    def n_records(self) -> int:
        """Number of metric records written so far."""
        return self._n_records

    @property
    def n_snapshots(self) -> int:
        """Number of snapshots written so far."""
        return self._n_snapshots

    def _file(self) -> h5py.File:
        if self._f is None:
            raise RuntimeError(f"run {str(self._path)!r} is closed")
        return self._f

    def sync(self) -> None:
        """Flush the file and ask the OS to put it on disk (``fsync``): what a checkpoint
        written after this says is in the file survives a power loss too."""
        self._file().flush()
        _fsync(self._path)

    def record(self, step: int, values: Mapping[str, float], phase: str = "") -> None:
        """Append one record and flush.

        Parameters
        ----------
        step : int
            Update count of this record.
        values : mapping of metric name to float
            Declared metrics missing here are stored as NaN.
        phase : str
            Schedule phase, at most 16 bytes in UTF-8.
        """
        f = self._file()
        unknown = [k for k in values if k not in self._metrics]
        if unknown:
            raise KeyError(f"undeclared metrics {unknown}; declared: {self._metrics}")
        phase_bytes = phase.encode("utf-8")
        if len(phase_bytes) > PHASE_BYTES:
            raise ValueError(f"phase {phase!r} is longer than {PHASE_BYTES} bytes")
        row = {name: float(values[name]) if name in values else math.nan for name in self._metrics}
        i = self._n_records
        for name in self._metrics:
            ds = f["metrics"][name]
            ds.resize((i + 1,))
            ds[i] = row[name]
        ds = f["phase"]
        ds.resize((i + 1,))
        ds[i] = phase_bytes
        ds = f["metrics"]["step"]  # last, so a full step column means a full row
        ds.resize((i + 1,))
        ds[i] = int(step)
        f.flush()
        self._n_records = i + 1

    def snapshot(self, step: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Append one snapshot of every declared array and flush.

        Parameters
        ----------
        step : int
            Update count of this snapshot.
        arrays : mapping of name to array
            Every declared snapshot name, each with its declared shape; cast to the declared dtype.
        """
        f = self._file()
        unknown = [k for k in arrays if k not in self._snap_shapes]
        if unknown:
            raise KeyError(
                f"undeclared snapshot arrays {unknown}; declared: {list(self._snap_shapes)}"
            )
        data = {}
        for name, shape in self._snap_shapes.items():
            if name not in arrays:
                raise ValueError(f"snapshot array {name!r} missing; expected shape {shape}")
            a = _to_numpy(arrays[name])
            if a.shape != shape:
                raise ValueError(f"snapshot array {name!r} has shape {a.shape}, expected {shape}")
            data[name] = a.astype(self._snap_dtypes[name], copy=False)
        i = self._n_snapshots
        for name, a in data.items():
            ds = f["snapshots"][name]
            ds.resize((i + 1, *a.shape))
            ds[i] = a
        ds = f["snapshots"]["step"]
        ds.resize((i + 1,))
        ds[i] = int(step)
        f.flush()
        self._n_snapshots = i + 1

    def close(
        self,
        status: str = "finished",
        summary: Mapping[str, float] | None = None,
        attrs: Mapping[str, object] | None = None,
    ) -> None:
        """Close the file and set its final status; later calls do nothing.

        Parameters
        ----------
        status : str
            One of "finished", "failed", "interrupted", "diverged" (or "running").
        summary : mapping of name to float, optional
            Final metrics, stored as JSON text in the ``summary`` attr.
        attrs : mapping of name to str, int, float or bool, optional
            Root attributes to set at the end (e.g. why a run stopped).
        """
        if self._closed:
            return
        if status not in STATUSES:
            raise ValueError(f"status {status!r} is not one of {STATUSES}")
        if self._f is not None:
            self._f.close()
            self._f = None
        with h5py.File(self._path, "r+", locking=_LOCKING) as f:
            f.attrs["status"] = status
            f.attrs["finished"] = _now()
            if summary is not None:
                f.attrs["summary"] = json.dumps(dict(summary), default=_json_default)
            for name, value in (attrs or {}).items():
                f.attrs[name] = _attr_value(name, value)
        self._closed = True

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close("finished")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.close("interrupted")
        else:
            self.close("failed")

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"RunWriter({str(self._path)!r}, {state}, records={self._n_records})"


def _hdf5_end(path: Path) -> tuple[int, int | None, int]:
    """The file's size, the end-of-file address its HDF5 superblock records (None where the
    superblock is of an unknown kind or leaves it undefined) and the superblock's file
    consistency flags (0 once every writer has closed the file).

    Raises RunFileError if the file cannot be read, has no HDF5 signature (at 0, 512, 1024, ...,
    where HDF5 looks) or ends inside the superblock.
    """
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            at = 0
            while True:
                fh.seek(at)
                if fh.read(8) == _HDF5_SIGNATURE:
                    break
                at = 512 if at == 0 else 2 * at
                if at >= size:
                    empty = " (it is empty)" if size == 0 else ""
                    raise RunFileError(f"{path}: not an HDF5 file{empty}, so not a bioglom run")
            fh.seek(at)
            sb = fh.read(64)
    except OSError as e:
        raise RunFileError(f"{path}: cannot be read ({e.strerror or e})") from None
    # superblock v0/v1: size of offsets at byte 13, flags at 20-23, base address at 24 (v0) or
    # 28 (v1), then the free-space and end-of-file addresses; v2/v3: size of offsets at 9, flags
    # at 11, base address at 12, then the extension and end-of-file addresses. The end-of-file
    # address counts from the start of the file (HDF5 compares it with the file's size).
    version = sb[8] if len(sb) > 8 else None
    if version in (0, 1):
        width_at, flags_at, base_at = 13, slice(20, 24), (24 if version == 0 else 28)
    elif version in (2, 3):
        width_at, flags_at, base_at = 9, slice(11, 12), 12
    elif version is None:
        width_at, flags_at, base_at = 0, slice(0, 0), 0
    else:
        return size, None, 0
    width = sb[width_at] if len(sb) > width_at else 0
    eof_at = base_at + 2 * width
    if version is None or len(sb) < eof_at + width:
        raise RunFileError(f"{path}: truncated (file is {size:,} bytes, cut inside its superblock)")
    flags = int.from_bytes(sb[flags_at], "little")
    if width not in (2, 4, 8, 16, 32):
        return size, None, flags
    raw = sb[eof_at : eof_at + width]
    if raw == b"\xff" * width:  # undefined address
        return size, None, flags
    return size, int.from_bytes(raw, "little"), flags


def _check_hdf5(path: Path) -> str | None:
    """Check that ``path`` is an HDF5 file as long as its superblock says.

    Raises RunFileError if it is not HDF5, or is short and was closed by its writer (HDF5 sizes
    a file to its end-of-file address when it closes it). A file still marked open for writing
    may be short for a moment -- a writer writes the superblock, then extends the file -- and a
    writer killed in between leaves it so, missing only unused space. Such a file is looked at
    again for up to ``_OPEN_RETRY_S`` and then left to HDF5: the return value is the message to
    give if HDF5 cannot read it (None where the file is not short).
    """
    deadline = time.monotonic() + _OPEN_RETRY_S
    while True:
        size, end, flags = _hdf5_end(path)
        if end is None or size >= end:
            return None
        short = f"{path}: truncated (file is {size:,} bytes, the HDF5 superblock says {end:,})"
        if flags == 0:
            raise RunFileError(f"{short}; an interrupted copy or a full disk?")
        if time.monotonic() > deadline:
            return short
        time.sleep(0.02)


_set_read_attempts: Any = None  # H5Pset_metadata_read_attempts via ctypes; False if not found


def _swmr_read_fapl() -> h5py.h5p.PropFAID:
    """File access for SWMR readers: libver latest, no file locking (as ``locking=False``), and
    ``_SWMR_READ_ATTEMPTS`` metadata read attempts.

    h5py does not wrap ``H5Pset_metadata_read_attempts``; it is looked up through ctypes in the
    HDF5 library that h5py's extension modules are linked with. Where that fails (e.g. Windows)
    HDF5's default stays, and only the truncation check of ``_check_hdf5`` bounds the wait.
    """
    global _set_read_attempts
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    fapl.set_file_locking(_LOCKING, False)
    if _set_read_attempts is None:
        try:
            fn = ctypes.CDLL(h5py.h5p.__file__).H5Pset_metadata_read_attempts
            fn.argtypes, fn.restype = [ctypes.c_int64, ctypes.c_uint], ctypes.c_int
            _set_read_attempts = fn
        except (OSError, AttributeError):
            _set_read_attempts = False
    if _set_read_attempts:
        _set_read_attempts(fapl.id, _SWMR_READ_ATTEMPTS)
    return fapl


def _open_h5(path: Path) -> h5py.File:
    """Open in SWMR read mode, waiting briefly while a writer is outside SWMR mode.

    Raises RunFileError (one line) if HDF5 cannot open the file.
    """
    deadline = time.monotonic() + _OPEN_RETRY_S
    flags = h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ
    while True:
        try:
            fid = h5py.h5f.open(os.fsencode(path), flags, fapl=_swmr_read_fapl())
            return h5py.File(fid)
        except OSError as e:
            if isinstance(e, FileNotFoundError):
                raise
            why = " ".join(str(e).split())
            busy = "already open for" in why  # "write" (not SWMR) or "SWMR writing" (not yet)
            if not busy:
                raise RunFileError(f"{path}: damaged, HDF5 cannot open it ({why})") from None
            if time.monotonic() > deadline:
                raise RunFileError(
                    f"{path}: open by a writer outside SWMR mode (creating or closing the run); "
                    f"if no process is writing it, `h5clear -s` clears the flag ({why})"
                ) from None
            time.sleep(0.02)


class Run:
    """Read a run file, following it while a writer is still appending.

    Every accessor re-reads from disk and returns numpy copies. Metric arrays are truncated to
    their common length, so they always align even while a live writer appends.

    Parameters
    ----------
    path : str or Path
        The run's ``.h5`` file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        if not self._path.exists():
            raise FileNotFoundError(f"no run file at {str(self._path)!r}")
        short = _check_hdf5(self._path)  # what to say if a short file turns out unreadable
        self._closed = False
        self._f: h5py.File | None = None
        try:
            self._f = _open_h5(self._path)
            try:
                names = list(self._f.attrs)
                fmt = _decode(self._f.attrs["format"]) if "format" in names else None
            except (OSError, RuntimeError, KeyError) as e:
                why = " ".join(str(e).split())
                what = f"{self._path}: damaged, HDF5 cannot read its attributes ({why})"
                raise RunFileError(what) from None
        except RunFileError:
            self.close()
            if short is None:
                raise
            raise RunFileError(f"{short}, and HDF5 cannot read it") from None
        if not (isinstance(fmt, str) and fmt.startswith("bioglom-run/")):
            self.close()
            what = "no 'format' attribute" if fmt is None else f"format {fmt!r}, not {FORMAT!r}"
            raise RunFileError(f"{self._path}: an HDF5 file but not a bioglom run ({what})")

    @property
    def path(self) -> Path:
        """Path of the run file."""
        return self._path

    def _file(self) -> h5py.File:
        if self._closed:
            raise ValueError(f"run {str(self._path)!r} is closed")
        if self._f is None:
            self._f = _open_h5(self._path)
        return self._f

    def refresh(self) -> None:
        """Re-open the file, so that attributes changed by the writer are seen."""
        if self._f is not None:
            self._f.close()
            self._f = None
        self._file()

    def close(self) -> None:
        """Close the file handle."""
        if self._f is not None:
            self._f.close()
            self._f = None
        self._closed = True

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- attributes ----

    @property
    def attrs(self) -> dict[str, Any]:
        """All root attributes, re-read from disk; text is str."""
        self.refresh()
        return {k: _decode(v) for k, v in self._file().attrs.items()}

    @property
    def status(self) -> str:
        """Run status: "running", "finished", "failed", "interrupted" or "diverged"."""
        return self.attrs["status"]

    @property
    def seed(self) -> int:
        """The run's random seed."""
        return int(self.attrs["seed"])

    @property
    def config_text(self) -> str:
        """The run's configuration as TOML text."""
        return self.attrs["config"]

    @property
    def config(self) -> Any:
        """The configuration the run recorded (``bioglom.config.saved_config`` of
        ``config_text``, unvalidated: fields added since take the value that reproduces what
        the run did, and a run whose options are refused today can still be read)."""
        from bioglom.config import saved_config

        return saved_config(self.config_text, validate=False)

    @property
    def versions(self) -> dict[str, str]:
        """Versions recorded at creation (python, numpy, h5py, hdf5, and the caller's)."""
        return json.loads(self.attrs["versions"])

    @property
    def summary(self) -> dict[str, Any] | None:
        """Final metrics given to ``RunWriter.close``, or None."""
        text = self.attrs.get("summary")
        return None if text is None else json.loads(text)

    # ---- records ----

    def _record_datasets(self) -> tuple[dict[str, h5py.Dataset], int]:
        f = self._file()
        dss = {"step": f["metrics"]["step"]}
        dss.update({k: ds for k, ds in f["metrics"].items() if k != "step"})
        dss["/phase"] = f["phase"]
        for ds in dss.values():
            ds.refresh()
        return dss, min(len(ds) for ds in dss.values())

    @property
    def n_records(self) -> int:
        """Number of complete metric records on disk."""
        return self._record_datasets()[1]

    @property
    def metrics(self) -> dict[str, np.ndarray]:
        """Every metric [n] (float64) and "step" [n] (int64), truncated to a common length."""
        dss, n = self._record_datasets()
        return {k: ds[:n] for k, ds in dss.items() if k != "/phase"}

    @property
    def metric_names(self) -> list[str]:
        """Names of the metrics, without "step"."""
        return [k for k in self._file()["metrics"] if k != "step"]

    def metric(self, name: str) -> np.ndarray:
        """One metric [n], aligned with ``steps``."""
        dss, n = self._record_datasets()
        if name not in dss or name == "/phase":
            names = [k for k in dss if k != "/phase"]
            raise KeyError(f"no metric {name!r} in {str(self._path)!r}; metrics: {names}")
        return dss[name][:n]

    @property
    def steps(self) -> np.ndarray:
        """Update count of each record [n] (int64)."""
        return self.metric("step")

    @property
    def phase(self) -> np.ndarray:
        """Schedule phase of each record [n] (str)."""
        dss, n = self._record_datasets()
        return np.char.decode(dss["/phase"][:n], "utf-8")

    def frame(self) -> Any:
        """The records as a pandas DataFrame indexed by ``update``: one column per metric and
        the ``phase`` of each record (needs pandas, the ``analysis`` extra;
        :func:`bioglom.frames.run_frame`)."""
        from .frames import run_frame

        return run_frame(self)

    # ---- snapshots and probe ----

    def _snapshot_datasets(self) -> tuple[dict[str, h5py.Dataset], int]:
        dss = dict(self._file()["snapshots"].items())
        for ds in dss.values():
            ds.refresh()
        return dss, min(len(ds) for ds in dss.values())

    @property
    def snapshot_names(self) -> list[str]:
        """Names of the snapshot arrays, without "step"."""
        return [k for k in self._file()["snapshots"] if k != "step"]

    @property
    def snapshot_steps(self) -> np.ndarray:
        """Update count of each snapshot [S] (int64)."""
        dss, n = self._snapshot_datasets()
        return dss["step"][:n]

    def snapshot(self, step: int) -> dict[str, np.ndarray]:
        """The arrays of the snapshot taken at ``step`` (the last one if several), each [*shape]."""
        dss, n = self._snapshot_datasets()
        steps = dss["step"][:n]
        (where,) = np.nonzero(steps == step)
        if len(where) == 0:
            raise KeyError(f"no snapshot at step {step}; snapshot steps: {steps.tolist()}")
        i = int(where[-1])
        return {k: ds[i] for k, ds in dss.items() if k != "step"}

    @property
    def probe(self) -> dict[str, np.ndarray]:
        """The fixed probe arrays."""
        return {k: ds[()] for k, ds in self._file()["probe"].items()}

    def __repr__(self) -> str:
        if self._closed:
            return f"Run({str(self._path)!r}, closed)"
        steps = self.steps
        last = int(steps[-1]) if len(steps) else None
        return (
            f"Run({str(self._path)!r}, status={self.status!r}, records={len(steps)}, "
            f"last_step={last})"
        )


def table(paths_or_folder: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> Any:
    """One row per run of a folder (sub-folders included), a run file or a list of either, as
    a pandas DataFrame: file, status, seed, last update, the config flattened into
    ``section.key`` columns, every metric's final value and ``best_<metric>`` (needs pandas,
    the ``analysis`` extra; :func:`bioglom.frames.table`)::

        table("runs/islands").groupby(["train.rule", "model.sharing"])["probe_recon_mse"].mean()
    """
    from .frames import table as _table

    return _table(paths_or_folder)


def open_run(path: str | os.PathLike[str]) -> Run:
    """Open a run file for reading (also while it is being written).

    Raises FileNotFoundError if there is no file, and RunFileError (a ValueError) with a one-line
    message if it is not a bioglom run: not HDF5, truncated, damaged or another program's file.
    """
    return Run(path)
