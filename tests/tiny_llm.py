"""The small byte-level LLaMA the LLM tests build (randomly initialised, ~40 k parameters)."""

TINY_LLAMA = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "vocab_size": 257,  # UTF-8 bytes and end-of-text (nasforge_llm.corpus.ByteTokenizer)
    "max_position_embeddings": 64,
}


def write_documents(folder, count: int, text: str) -> list[str]:
    """``count`` small .txt documents in ``folder`` (``text`` with ``{i}``, the document's
    number, filled in); their paths."""
    paths = []
    for i in range(count):
        path = folder / f"doc{i}.txt"
        path.write_text(text.format(i=i))
        paths.append(str(path))
    return paths
