"""NAS-Bench-Graph: its macro space, canonical hashing and the measured tables.

The benchmark (PyPI ``nas-bench-graph``) trained every distinct arch of a 4-node macro
space on 9 datasets and ships, per dataset, a table keyed by the arch's canonical hash with
validation/test accuracy, latency (seconds) and parameter count (millions). The tables are
pickles: :func:`load_table` reads them with a restricted unpickler that admits only the
plain types they contain (dicts, ints, floats and numpy float/int scalars), so a tampered
file cannot run code.

Equivalent archs (isomorphic DAGs, skip ops that can be moved) are collapsed with the
benchmark's own canonicalisation (``nas_bench_graph.Arch``), so the hash we compute is
the one that keys the tables.
"""

from __future__ import annotations

import functools
import importlib.resources
import itertools
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from nasforge import NasforgeError

DATASETS = (
    "cora",
    "citeseer",
    "pubmed",
    "cs",
    "physics",
    "photo",
    "computers",
    "arxiv",
    "proteins",
)

#: The 9 canonical link patterns: ``link[i]`` is the input of computing node ``i`` (0 = raw input).
LINKS: tuple[tuple[int, int, int, int], ...] = (
    (0, 0, 0, 0),
    (0, 0, 0, 1),
    (0, 0, 1, 1),
    (0, 0, 1, 2),
    (0, 0, 1, 3),
    (0, 1, 1, 1),
    (0, 1, 1, 2),
    (0, 1, 2, 2),
    (0, 1, 2, 3),
)
OPS = ("gat", "gcn", "gin", "cheb", "sage", "arma", "graph", "fc", "skip")
#: proteins was benchmarked on a reduced op list
OPS_PROTEINS = ("gcn", "sage", "arma", "fc", "skip")


def ops_for(dataset: str) -> tuple[str, ...]:
    return OPS_PROTEINS if dataset == "proteins" else OPS


@functools.lru_cache(maxsize=65536)
def canonical(
    link: tuple[int, ...], ops: tuple[str, ...]
) -> tuple[tuple[int, ...], tuple[str, ...], int]:
    """The benchmark's canonical form of an arch and its table key: ``(link, ops, hash)``."""
    from nas_bench_graph.architecture import Arch

    arch = Arch(list(link), list(ops)).regularize()
    arch.move_skip_op()
    arch.equalpart_sort()
    return tuple(arch.link), tuple(arch.ops), int(arch.hash_arch())


# -- the tables ------------------------------------------------------------------------


class BenchFileError(NasforgeError):
    """A ``.bench`` file that is not a plain NAS-Bench-Graph table."""


_FLOAT_KINDS = {"f", "i", "u"}


def _safe_dtype(name: Any, align: Any = False, copy: Any = True) -> np.dtype:
    dtype = np.dtype(name) if isinstance(name, str) else None
    if dtype is None or dtype.kind not in _FLOAT_KINDS:
        raise pickle.UnpicklingError(f"numpy dtype {name!r} is not allowed in a bench table")
    return dtype


def _safe_scalar(dtype: Any, data: Any = None) -> float | int:
    if not isinstance(dtype, np.dtype) or dtype.kind not in _FLOAT_KINDS:
        raise pickle.UnpicklingError("only numeric numpy scalars are allowed in a bench table")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise pickle.UnpicklingError("malformed numpy scalar in a bench table")
    value = np.frombuffer(data, dtype=dtype)[0]
    return int(value) if dtype.kind in "iu" else float(value)


def _safe_encode(text: Any, encoding: Any = "latin1") -> bytes:
    """Pickle protocols 0-2 store a numpy scalar's bytes as ``_codecs.encode(str, 'latin1')``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("only latin-1 byte strings are allowed in a bench table")
    return text.encode(encoding)


class _TableUnpickler(pickle.Unpickler):
    """Admits dicts, lists, tuples, str, int, float and numeric numpy scalars; nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "scalar"): _safe_scalar,
        ("numpy._core.multiarray", "scalar"): _safe_scalar,
        ("numpy", "dtype"): _safe_dtype,
        ("_codecs", "encode"): _safe_encode,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a bench table holds only plain numbers"
            ) from None


def _read_table(path: Path) -> dict[int, dict[str, float]]:
    try:
        with open(path, "rb") as f:
            raw = _TableUnpickler(f).load()
    except OSError as exc:
        raise BenchFileError(f"{path}: cannot read bench table: {exc.strerror}") from None
    except Exception as exc:
        raise BenchFileError(f"{path}: not a plain NAS-Bench-Graph table: {exc}") from None
    if not isinstance(raw, dict):
        raise BenchFileError(f"{path}: expected a dict of arch hash -> metrics")
    table: dict[int, dict[str, float]] = {}
    for key, row in raw.items():
        if not isinstance(key, int) or not isinstance(row, dict):
            raise BenchFileError(f"{path}: entry {key!r} is not 'int hash -> dict of metrics'")
        missing = {"valid_perf", "perf", "latency", "para"} - set(row)
        if missing:
            raise BenchFileError(f"{path}: entry {key} lacks {sorted(missing)}")
        for field, value in row.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise BenchFileError(
                    f"{path}: entry {key} field {field!r} is not a number: {value!r}"
                )
        table[key] = {field: float(value) for field, value in row.items()}
    return table


def bundled_path(dataset: str) -> Path:
    """The table shipped inside the ``nas-bench-graph`` package for ``dataset``."""
    root = importlib.resources.files("nas_bench_graph") / "light" / f"{dataset}.bench"
    return Path(str(root))


@functools.lru_cache(maxsize=16)
def load_table(dataset: str, path: str | None = None) -> dict[int, dict[str, float]]:
    """The measured table of ``dataset`` (or of the ``.bench`` file at ``path``), cached."""
    return _read_table(Path(path) if path else bundled_path(dataset))


@functools.lru_cache(maxsize=16)
def measured_archs(
    dataset: str, path: str | None = None
) -> tuple[tuple[tuple[int, ...], tuple[str, ...], int], ...]:
    """One arch of the space per row of the table, as ``(link, ops, hash)``: the first of
    its canonical class in enumeration order (link patterns, then op tuples), so every
    listed arch lies in the space. Rows no arch of the space hashes to are left out."""
    table = load_table(dataset, path)
    found: dict[int, tuple[tuple[int, ...], tuple[str, ...], int]] = {}
    for link in LINKS:
        for ops in itertools.product(ops_for(dataset), repeat=4):
            key = canonical(link, ops)[2]
            if key in table and key not in found:
                found[key] = (link, ops, key)
    return tuple(found.values())
