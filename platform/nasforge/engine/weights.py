"""A run's supernet weights on disk: where they live, loading them safely, writing atomically.

``RUN_DIR/supernet/`` holds the trained weights (``final.pt``, a plain state dict) and Ray
Train's checkpoints (``state.pt`` + ``epoch.json`` each). Every load goes through
:func:`load_state`, ``torch.load(weights_only=True)`` with one clear error naming the file:
a truncated, corrupt or tampered checkpoint is refused, never executed or half-loaded.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NasforgeError

if TYPE_CHECKING:
    from ..plan import Plan

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
EPOCH_FILE = "epoch.json"


def supernet_dir(run_dir: Path) -> Path:
    """Where a run keeps its supernet: checkpoints, final weights, metrics."""
    return Path(run_dir) / "supernet"


def final_weights(run_dir: Path) -> Path:
    """The trained supernet's state dict of a run."""
    return supernet_dir(run_dir) / "final.pt"


def load_state(source: bytes | str | Path, what: str) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with a clear error naming ``what`` on failure.

    A checkpoint that is not a plain state (truncated, corrupt, or a pickle that would run
    code) is refused rather than half-loaded.
    """
    import torch

    try:
        stream = io.BytesIO(source) if isinstance(source, bytes) else source
        state = torch.load(stream, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NasforgeError(
            f"{what}: not a loadable checkpoint ({type(exc).__name__}: {first})"
        ) from None
    if not isinstance(state, dict):
        raise NasforgeError(f"{what}: expected a state dict, found {type(state).__name__}")
    return state


def save_atomic(state: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_json_atomic(data: Any, path: Path) -> None:
    """JSON to a temporary file in the same folder, then renamed over ``path``: a reader
    (or a rerun after a kill) sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, default=float)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class EpochLog:
    """A JSON-lines log of a training run, one line per finished epoch (``metrics.jsonl``,
    a standalone run's or a sweep recipe's ``history.jsonl``). An epoch logged again after a
    resume (it finished, but the kill came before its checkpoint was recorded) replaces the
    lines from that epoch on, so the file reads as one run."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.lines = path.read_text().splitlines() if path.exists() else []
        self.resumed = False

    def append(self, item: dict[str, Any]) -> None:
        if not self.resumed:
            self.resumed = True
            epoch = item.get("epoch", 0)
            kept = [line for line in self.lines if json.loads(line).get("epoch", 0) < epoch]
            if kept != self.lines:
                self.lines = kept
                self.path.write_text("".join(line + "\n" for line in kept))
        line = json.dumps(item)
        self.lines.append(line)
        with open(self.path, "a") as f:
            f.write(line + "\n")


def trained_weights(run_dir: Path) -> bytes:
    """The bytes of a run's trained supernet weights, checked to load as a plain state
    (a missing, corrupt or tampered ``final.pt`` is one clear error naming the file)."""
    from .run_location import durable

    path = final_weights(run_dir)
    if not path.exists():
        raise NasforgeError(
            f"{durable(path)}: no trained supernet: run `nasforge train` (or `nasforge run`) first"
        )
    blob = path.read_bytes()
    load_state(blob, str(durable(path)))
    return blob


def supernet_from_state(plan: Plan, state: dict[str, Any], device: str, what: str) -> Any:
    """Build the plan's supernet and load ``state`` into it (strict), in eval mode."""
    supernet = plan.build_supernet()
    try:
        supernet.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise NasforgeError(f"{what}: does not match this experiment's supernet: {first}") from None
    return supernet.to(device).eval()


def latest_checkpoint_state(root: str | Path, restored: Any = None) -> dict[str, Any] | None:
    """The state of the newest complete checkpoint: Ray Train's restored one, or a newer
    one found under ``root`` (a path or a cloud URI, see :mod:`.run_location`: a kill can
    land after a checkpoint is stored but before Ray Train's own record of it is);
    unreadable (half-copied) checkpoints are skipped."""
    import pyarrow.fs as pafs

    from .run_location import open_location

    fs, base = open_location(str(root), "checkpoint folder")

    def read(path: str) -> bytes:
        with fs.open_input_stream(path) as stream:
            return stream.read()

    candidates: list[tuple[int, str]] = []
    for info in fs.get_file_info(pafs.FileSelector(base, allow_not_found=True)):
        if info.type != pafs.FileType.Directory or not info.base_name.startswith("checkpoint_"):
            continue
        try:
            epoch = int(json.loads(read(f"{info.path}/{EPOCH_FILE}"))["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        candidates.append((epoch, info.path))
    if restored is not None:
        with restored.as_directory() as folder:
            try:
                state = load_state(Path(folder, STATE_FILE).read_bytes(), f"checkpoint {folder}")
                if all(epoch <= int(state.get("epoch", 0)) for epoch, _ in candidates):
                    return state
            except NasforgeError as exc:
                log.warning("%s; skipped", exc)
    for _, folder in sorted(candidates, reverse=True):
        try:
            return load_state(read(f"{folder}/{STATE_FILE}"), f"checkpoint {folder}")
        except (OSError, NasforgeError) as exc:
            log.warning("%s; skipped for an older checkpoint", exc)
    return None


def put_supernet_weights(plan: Plan, run_dir: Path) -> tuple[list[Any] | None, str | None]:
    """``([ref], digest)`` of the run's trained supernet weights, put once in the Ray object
    store for every worker, or ``(None, None)`` when the experiment trains no supernet."""
    if plan.supernet_factory is None or plan.experiment.train is None:
        return None, None
    import hashlib

    import ray

    blob = trained_weights(run_dir)  # a bad file is refused here, not on every worker
    return [ray.put(blob)], hashlib.sha256(blob).hexdigest()[:16]
