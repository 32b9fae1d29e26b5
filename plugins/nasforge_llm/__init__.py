"""nasforge_llm: LLaMA-family supernets — elastic depth, KV groups, MLP width, LoRA rank and
per-layer bit-width over one pretrained (or config-built) Hugging Face model."""


def load_pretrained(path, device: str = "cpu"):
    """Load a directory ``nasforge export --format hf|hf-packed`` wrote, layers of their own
    sizes and packed weights included (see :mod:`nasforge_llm.hf_export`)."""
    from .hf_export import load_pretrained as load

    return load(path, device)
