"""nasforge_llm: LLaMA-family supernets — elastic depth, KV groups, MLP width, LoRA rank and
per-layer bit-width over one pretrained (or config-built) Hugging Face model."""
