"""``llm.text``: a language-modelling task — documents split by document, tokenised, cut
into blocks (see :mod:`nasforge_llm.corpus` for the text and why the standard library's
docstrings are the default).

``arrays(split)`` returns ``(blocks, blocks)``: int64 token ids of shape
``(n, block_size)`` twice (the model predicts each token from those before it; the shift
happens in the loss). ``train`` is the training text, ``val`` the held-out documents that
perplexity is measured on, ``calib`` calibration text (importance sorting). Blocks are built
once per process and kept on disk under ``cache_dir`` (the run directory's ``data/`` when an
LLM trainer or estimator sets it), keyed by everything that shapes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nasforge import Task

from .corpus import ByteTokenizer, pack, read_documents, split_documents, stdlib_documents
from .gguf import gguf_location, load_gguf_tokenizer
from .source import model_path

#: the task's split names -> the corpus's
SPLIT_NAMES = {"train": "train", "val": "heldout", "calib": "calibration"}


def load_tokenizer(spec: str) -> Any:
    """``"bytes"`` (:class:`~nasforge_llm.corpus.ByteTokenizer`), a local Hugging Face
    tokenizer or model directory, a ``.gguf`` file (its embedded tokenizer), or a model
    alias such as ``smollm2-135m``."""
    if spec == "bytes":
        return ByteTokenizer()
    from transformers import AutoTokenizer

    path = model_path(spec)
    if not path.exists():
        raise ValueError(f"tokenizer: {path} does not exist (or use 'bytes')")
    if gguf_location(path) is not None:
        return load_gguf_tokenizer(path)
    return AutoTokenizer.from_pretrained(str(path))


def vocab_size(tokenizer: Any) -> int:
    """Token ids the tokenizer can produce (added tokens included)."""
    if isinstance(tokenizer, ByteTokenizer):
        return tokenizer.vocab_size
    return len(tokenizer)


class TextTask(Task):
    """Text in blocks of tokens: the standard library's docstrings, or your files."""

    class Options(BaseModel):
        """What an experiment may set under ``task.options``."""

        model_config = ConfigDict(extra="forbid")
        files: list[str] | None = Field(
            None, description=".txt / .jsonl files (default: the standard library's docstrings)"
        )
        tokenizer: str = Field(
            "bytes", description="'bytes', or a local tokenizer/model directory or .gguf file"
        )
        block_size: int = Field(128, ge=2, description="tokens per block")
        fractions: tuple[float, float, float] = Field(
            (0.9, 0.05, 0.05), description="train / calibration / held-out shares of documents"
        )
        seed: int = Field(0, ge=0, description="fixes which documents go to which split")
        train_blocks: int | None = Field(None, ge=1, description="at most this many to train on")
        calibration_blocks: int = Field(32, ge=1)
        heldout_blocks: int | None = Field(64, ge=1, description="held-out blocks (None: all)")
        cache_dir: str | None = Field(None, description="where built blocks are kept")

        @field_validator("fractions")
        @classmethod
        def _fractions(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
            if any(f < 0 for f in value) or abs(sum(value) - 1) > 1e-6:
                raise ValueError(f"expected three non-negative shares summing to 1, got {value}")
            return value

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.config = self.Options(**options)
        self._tokenizer: Any = None
        self._blocks: dict[str, Any] = {}
        self.input_shape = (self.config.block_size,)
        self.num_classes = vocab_size(self.tokenizer)
        self.cache_dir: Path | None = Path(self.config.cache_dir) if self.config.cache_dir else None

    @property
    def tokenizer(self) -> Any:
        """The tokenizer, loaded once."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.config.tokenizer)
        return self._tokenizer

    def use_cache_dir(self, folder: str | Path) -> None:
        """Keep built blocks under ``folder`` unless the options name a folder."""
        if self.config.cache_dir is None:
            self.cache_dir = Path(folder)

    def fingerprint(self, split: str) -> str:
        """A digest of everything that shapes a split's blocks."""
        payload = self.config.model_dump(mode="json", exclude={"cache_dir"})
        payload.update(split=split, tokenizer_vocab=self.num_classes)
        if self.config.files:  # the files as they are now, not only their names
            stats = [Path(f).expanduser().stat() for f in self.config.files]
            payload["files_state"] = [(st.st_size, st.st_mtime_ns) for st in stats]
        else:  # the standard library's docstrings change with the Python version
            payload["python"] = list(sys.version_info[:2])
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def arrays(self, split: Literal["train", "val", "calib"]) -> tuple[Any, Any]:
        """``(blocks, blocks)`` of ``split`` (int64, ``(n, block_size)``)."""
        import torch

        if split not in SPLIT_NAMES:
            raise ValueError(f"unknown split {split!r}: expected one of {sorted(SPLIT_NAMES)}")
        if split not in self._blocks:
            path = None
            if self.cache_dir is not None:
                path = self.cache_dir / f"text-{split}-{self.fingerprint(split)}.pt"
                if path.exists():
                    self._blocks[split] = torch.load(path, weights_only=True)
            if split not in self._blocks:
                blocks = self._build(split)
                if path is not None:  # several workers may build it at once: unique partials
                    path.parent.mkdir(parents=True, exist_ok=True)
                    fd, partial = tempfile.mkstemp(dir=path.parent, suffix=".partial")
                    os.close(fd)
                    torch.save(blocks, partial)
                    os.replace(partial, path)
                self._blocks[split] = blocks
        blocks = self._blocks[split]
        return blocks, blocks

    def _build(self, split: str) -> Any:
        c = self.config
        documents = read_documents(c.files) if c.files else stdlib_documents()
        chosen = split_documents(documents, c.fractions, c.seed)[SPLIT_NAMES[split]]
        limit = {"train": c.train_blocks, "val": c.heldout_blocks, "calib": c.calibration_blocks}
        return pack(chosen, self.tokenizer, c.block_size, limit[split])
