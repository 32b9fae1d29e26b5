"""Text for language-model supernets: documents, a split by document, tokens in blocks.

**The embedded default is the docstrings of Python's standard library**, read from its
source files with :mod:`ast` (nothing is imported or executed): real English prose written
by people (about 365 modules and 1.6 million characters on CPython 3.11), present on every
machine that runs nasforge, fixed for a given Python version, and free to use (the PSF
licence). Python's HTML documentation is not installed on most machines; package
docstrings vary with what is installed. It is technical English, so perplexities are not
comparable with WikiText-2's — compare archs with each other, on the same text.

Users point at their own files instead: ``.txt`` (one document per file) or ``.jsonl``
(one document per line, its ``"text"`` field). Documents are split into train /
calibration / held-out by a hash of their name and the seed (never a document in two
splits), tokenised, joined with the end-of-text token between documents and cut into
blocks of ``block_size`` tokens.
"""

from __future__ import annotations

import ast
import hashlib
import json
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: stdlib folders that hold tests, demos or vendored code rather than library docstrings
SKIPPED_FOLDERS = frozenset(
    {"test", "tests", "idlelib", "site-packages", "dist-packages", "lib2to3", "turtledemo",
     "__pycache__", "__phello__"}
)  # fmt: skip
SPLITS = ("train", "calibration", "heldout")


@dataclass(frozen=True)
class Document:
    """One document: a name that identifies it (its split follows from it) and its text."""

    name: str
    text: str


def stdlib_documents(min_chars: int = 200) -> list[Document]:
    """One document per standard-library module: its module, class and function docstrings,
    in source order (modules with less than ``min_chars`` of docstrings are left out)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    documents = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if SKIPPED_FOLDERS.intersection(relative.parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
        docstrings = [ast.get_docstring(node) for node in ast.walk(tree) if isinstance(node, kinds)]
        text = "\n\n".join(d.strip() for d in docstrings if d and d.strip())
        if len(text) >= min_chars:
            documents.append(Document(relative.with_suffix("").as_posix(), text))
    return documents


def read_documents(paths: Sequence[str | Path]) -> list[Document]:
    """Documents from ``.txt`` files (one each) and ``.jsonl`` files (one per line, the
    ``"text"`` field); a bad file or line raises ``ValueError`` naming it."""
    documents = []
    for raw in paths:
        path = Path(raw).expanduser()
        try:
            content = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: cannot read text: {exc}") from None
        if path.suffix.lower() == ".jsonl":
            for number, line in enumerate(content.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    text = json.loads(line)["text"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise ValueError(
                        f'{path}:{number}: expected a JSON object with a "text" field'
                    ) from None
                if not isinstance(text, str):
                    raise ValueError(f'{path}:{number}: "text" must be a string')
                documents.append(Document(f"{path.name}:{number}", text))
        else:
            documents.append(Document(path.name, content))
    if not documents:
        raise ValueError("no documents in the given files")
    return documents


def split_of(document: Document, fractions: Sequence[float], seed: int) -> str:
    """The split a document belongs to: fixed by its name and ``seed``."""
    digest = hashlib.sha256(f"{seed}|{document.name}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for split, fraction in zip(SPLITS, fractions, strict=True):
        edge += fraction
        if u < edge:
            return split
    return SPLITS[-1]


def split_documents(
    documents: Sequence[Document], fractions: Sequence[float] = (0.9, 0.05, 0.05), seed: int = 0
) -> dict[str, list[Document]]:
    """``{"train": [...], "calibration": [...], "heldout": [...]}``, by document; each split
    gets at least one document when there are enough."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"fractions: expected three non-negative parts summing to 1, got {fractions}"
        )
    splits: dict[str, list[Document]] = {name: [] for name in SPLITS}
    for document in documents:
        splits[split_of(document, fractions, seed)].append(document)
    for name in SPLITS:  # a tiny corpus: borrow the last document of the largest split
        if not splits[name] and len(documents) >= len(SPLITS):
            donor = max(SPLITS, key=lambda s: len(splits[s]))
            splits[name].append(splits[donor].pop())
    return splits


class ByteTokenizer:
    """Tokens are UTF-8 bytes (ids 0-255) and one end-of-text id (256): what a randomly
    initialised model without a tokenizer of its own reads (its vocabulary must be >= 257)."""

    vocab_size = 257
    eos_token_id = 256

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """The text's UTF-8 bytes (no special tokens are ever added)."""
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        """Bytes back to text (the end-of-text id and invalid bytes dropped)."""
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="ignore")


def pack(documents: Sequence[Document], tokenizer, block_size: int, max_blocks: int | None = None):
    """The documents' tokens, each followed by the end-of-text token, cut into blocks of
    ``block_size`` (the remainder dropped): an ``int64`` tensor ``(blocks, block_size)``."""
    import torch

    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no end-of-text token")
    ids: list[int] = []
    limit = None if max_blocks is None else max_blocks * block_size
    for document in documents:
        ids.extend(tokenizer.encode(document.text, add_special_tokens=False))
        ids.append(eos)
        if limit is not None and len(ids) >= limit:
            break
    count = len(ids) // block_size
    if max_blocks is not None:
        count = min(count, max_blocks)
    if count == 0:
        raise ValueError(f"{len(ids)} tokens do not fill one block of {block_size}: give more text")
    return torch.tensor(ids[: count * block_size], dtype=torch.int64).reshape(count, block_size)
