"""The LLM plugin's text: the standard library's docstrings by default, users' .txt/.jsonl
files, a split by document fixed by a seed, and blocks of tokens."""

from __future__ import annotations

import json

import pytest
from nasforge_llm.corpus import (
    ByteTokenizer,
    Document,
    pack,
    read_documents,
    split_documents,
    stdlib_documents,
)


@pytest.fixture(scope="module")
def stdlib():
    return stdlib_documents()


def test_the_default_corpus_is_the_standard_librarys_docstrings(stdlib):
    names = [d.name for d in stdlib]
    assert len(stdlib) > 100 and len(set(names)) == len(names)
    assert "json/__init__" in names and not any(n.startswith("test/") for n in names)
    text = " ".join(d.text for d in stdlib)
    assert len(text) > 500_000
    words = text.lower().split()
    assert words.count("the") > 0.02 * len(words)  # English prose, not code


def test_documents_split_by_name_disjoint_and_fixed_by_the_seed(stdlib):
    splits = split_documents(stdlib, (0.8, 0.1, 0.1), seed=0)
    assert sum(len(v) for v in splits.values()) == len(stdlib)
    names = [{d.name for d in splits[s]} for s in ("train", "calibration", "heldout")]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    assert 0.6 < len(names[0]) / len(stdlib) < 0.95
    assert split_documents(stdlib, (0.8, 0.1, 0.1), seed=0) == splits
    assert split_documents(stdlib, (0.8, 0.1, 0.1), seed=1) != splits
    with pytest.raises(ValueError, match="fractions"):
        split_documents(stdlib, (0.8, 0.3, 0.1))


def test_users_text_and_jsonl_files_are_read_with_errors_naming_file_and_line(tmp_path):
    (tmp_path / "a.txt").write_text("A whole document.\nTwo lines.")
    rows = [{"text": "first"}, {"text": "second"}]
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    documents = read_documents([tmp_path / "a.txt", tmp_path / "b.jsonl"])
    assert [d.text for d in documents] == ["A whole document.\nTwo lines.", "first", "second"]
    assert [d.name for d in documents] == ["a.txt", "b.jsonl:1", "b.jsonl:2"]
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: expected a JSON object"):
        read_documents([tmp_path / "bad.jsonl"])
    with pytest.raises(ValueError, match=r"missing\.txt: cannot read"):
        read_documents([tmp_path / "missing.txt"])


def test_packing_joins_documents_with_end_of_text_and_cuts_blocks():
    tokenizer = ByteTokenizer()
    documents = [Document("a", "abc"), Document("b", "de")]
    blocks = pack(documents, tokenizer, block_size=3)
    assert blocks.tolist() == [[97, 98, 99], [256, 100, 101]]  # the last 256 is dropped
    assert tokenizer.decode(blocks.flatten().tolist()) == "abcde"
    assert pack(documents, tokenizer, block_size=2, max_blocks=1).shape == (1, 2)
    with pytest.raises(ValueError, match="do not fill one block"):
        pack(documents, tokenizer, block_size=64)
