"""The ``llm.llama`` search space: sub-networks of one LLaMA-family model.

An arch is a plain JSON dict with one entry per layer of the base model in every per-layer
list (slots of dropped layers are ignored, and set to the largest choice by
:meth:`LlamaSpace.canonical`, so equal networks have equal keys)::

    {"depth": 28, "drop_at": 20,           # layers 20 and 21 dropped (a contiguous block)
     "kv_groups": [3, 2, ...],             # KV groups kept per layer (whole GQA groups)
     "mlp": [1536, 1152, ...],             # MLP intermediate size per layer
     "lora_attn": [16, 8, ...], "lora_mlp": [16, 0, ...],   # LoRA rank (0: no adapter)
     "bits": [16, 4, ...]}                 # weight bit-width per layer

Depth is which layers run, not only how many: the ``L - depth`` dropped layers form one
contiguous block starting at ``drop_at`` (the first layer and the last are always kept:
deep blocks just before the last layer are the most removable ones, ShortGPT / Gromov et
al. 2024), so that every (depth, drop_at) pair is a valid network. Heads are dropped by
whole KV groups so grouped-query attention stays consistent; the supernet keeps the most
important groups and MLP neurons first (:mod:`nasforge_llm.importance`).

The sizes come from the base model's configuration (:mod:`nasforge_llm.source`); the space
never loads weights.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from nasforge import Arch, IntRange, PerLayer, SearchSpace

from .source import ModelSource, llama_sizes

#: per-layer dimensions, in arch order
LAYER_DIMENSIONS = ("kv_groups", "mlp", "lora_attn", "lora_mlp", "bits")
#: each projection of a layer -> the dimension that sets its LoRA rank
ADAPTER_GROUP = {
    "q_proj": "lora_attn",
    "k_proj": "lora_attn",
    "v_proj": "lora_attn",
    "o_proj": "lora_attn",
    "gate_proj": "lora_mlp",
    "up_proj": "lora_mlp",
    "down_proj": "lora_mlp",
}


def _distinct_sorted(name: str, values: list[Any]) -> list[Any]:
    if not values:
        raise ValueError(f"{name} needs at least one value")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} lists a value twice: {values}")
    return sorted(values)


class LlamaSpace(SearchSpace):
    """Sub-networks of a LLaMA model: depth and which layers, KV groups, MLP width, LoRA
    rank per module group and weight bit-width, per layer."""

    class Options(ModelSource):
        """What an experiment may set under ``space.options``: the base model (``model`` or
        ``config``, see :class:`~nasforge_llm.source.ModelSource`) and the choices."""

        model_config = ConfigDict(extra="forbid")
        min_depth: int | None = Field(
            None, ge=2, description="fewest layers kept (default: three quarters of them)"
        )
        kv_groups: list[int] | None = Field(
            None, description="KV groups kept per layer (default: 1 .. all)"
        )
        mlp_ratios: list[float] = Field(
            default_factory=lambda: [0.25, 0.5, 0.75, 1.0],
            description="MLP intermediate sizes as fractions of the base model's",
        )
        lora_ranks: list[int] = Field(
            default_factory=lambda: [0, 8, 16],
            description="LoRA ranks of the attention and of the MLP projections (0: none)",
        )
        bits: list[int] = Field(
            default_factory=lambda: [16],
            description="weight bit-widths per layer, e.g. [2, 3, 4, 8, 16] (16: unquantised)",
        )
        lora_alpha: float = Field(
            16.0, gt=0, description="LoRA scale numerator: adapters add alpha / max rank"
        )
        adapters: Literal["shared", "per_bits"] = Field(
            "shared",
            description="one LoRA adapter for every bit-width, or one per bit-width "
            "(LLM-QFA's decoupled adapters)",
        )
        group_size: int = Field(64, ge=8, description="weights per quantisation group")
        seq_len: int = Field(128, ge=2, description="tokens per sample in examples and checks")

        @field_validator("mlp_ratios")
        @classmethod
        def _ratios(cls, value: list[float]) -> list[float]:
            if any(not 0 < r <= 1 for r in value):
                raise ValueError(f"mlp_ratios must lie in (0, 1], got {value}")
            return _distinct_sorted("mlp_ratios", value)

        @field_validator("lora_ranks")
        @classmethod
        def _ranks(cls, value: list[int]) -> list[int]:
            if any(r < 0 for r in value):
                raise ValueError(f"lora_ranks must be >= 0, got {value}")
            return _distinct_sorted("lora_ranks", value)

        @field_validator("bits")
        @classmethod
        def _bits(cls, value: list[int]) -> list[int]:
            if any(b not in (2, 3, 4, 5, 6, 8, 16) for b in value):
                raise ValueError(f"bits must be among 2, 3, 4, 5, 6, 8, 16, got {value}")
            return _distinct_sorted("bits", value)

        @field_validator("kv_groups")
        @classmethod
        def _groups(cls, value: list[int] | None) -> list[int] | None:
            if value is not None and any(g < 1 for g in value):
                raise ValueError(f"kv_groups must be >= 1, got {value}")
            return None if value is None else _distinct_sorted("kv_groups", value)

        @model_validator(mode="after")
        def _one_source(self) -> LlamaSpace.Options:
            self.check_source()
            return self

    def __init__(self, **options: Any):
        opts = self.Options.model_validate(options)
        self.options: dict[str, Any] = opts.model_dump()
        self.source = ModelSource.model_validate(
            {k: self.options[k] for k in ModelSource.model_fields}
        )
        sizes = llama_sizes(self.source)
        self.sizes = sizes
        layers, groups = sizes.num_layers, sizes.num_kv_heads
        kv_choices = opts.kv_groups or list(range(1, groups + 1))
        if kv_choices[-1] > groups:
            raise ValueError(
                f"LlamaSpace: kv_groups: the model has {groups} KV groups per layer, got "
                f"{kv_choices}"
            )
        min_depth = opts.min_depth if opts.min_depth is not None else max(2, -(-3 * layers // 4))
        if min_depth > layers:
            raise ValueError(f"LlamaSpace: min_depth {min_depth} > the model's {layers} layers")
        self.num_layers = layers
        self.min_depth = min_depth
        full = sizes.intermediate_size  # fractions rounded to multiples of 8, 1.0 exact
        self.mlp_sizes = sorted(
            {
                full if r == 1.0 else min(full, max(8, round(full * r / 8) * 8))
                for r in opts.mlp_ratios
            }
        )
        self.num_classes = sizes.vocab_size  # the logits' last dimension
        self.seq_len = opts.seq_len
        self.group_size = opts.group_size
        self.lora_alpha = opts.lora_alpha
        #: LoRA adapters per projection: one, or one per bit-width (see ``adapter_index``)
        self.num_adapters = len(opts.bits) if opts.adapters == "per_bits" else 1
        dimensions = [IntRange("depth", min_depth, layers)]
        if min_depth < layers:
            dimensions.append(
                IntRange("drop_at", 1, layers - 2, when={"depth": list(range(min_depth, layers))})
            )
        dimensions += [
            PerLayer("kv_groups", kv_choices, layers),
            PerLayer("mlp", self.mlp_sizes, layers),
            PerLayer("lora_attn", opts.lora_ranks, layers),
            PerLayer("lora_mlp", opts.lora_ranks, layers),
            PerLayer("bits", opts.bits, layers),
        ]
        super().__init__(dimensions)

    def kept_layers(self, arch: Arch) -> list[int]:
        """The base model's layers that ``arch`` runs, in order."""
        depth = arch["depth"]
        dropped = self.num_layers - depth
        if dropped == 0:
            return list(range(self.num_layers))
        start = min(arch["drop_at"], depth - 1)  # the block ends before the last layer
        return [i for i in range(self.num_layers) if not start <= i < start + dropped]

    def canonical(self, arch: Any) -> Arch:
        """``arch`` with ``drop_at`` clamped to where its block really starts and the
        per-layer slots of dropped layers set to their largest choice."""
        arch = dict(self.validate(arch))
        if arch["depth"] < self.num_layers:
            arch["drop_at"] = min(arch["drop_at"], arch["depth"] - 1)
        kept = set(self.kept_layers(arch))
        for name in LAYER_DIMENSIONS:
            largest = self[name].choices[-1]
            arch[name] = [v if i in kept else largest for i, v in enumerate(arch[name])]
        return arch

    def __getitem__(self, name: str) -> Any:
        for dimension in self.dimensions:
            if dimension.name == name:
                return dimension
        raise KeyError(name)

    def check_task(self, task: Any) -> None:
        """Raise ``ValueError`` when ``task``'s tokens do not fit the model: more token ids
        than its vocabulary, or samples that are not token sequences."""
        shape = tuple(getattr(task, "input_shape", ()))
        name = type(task).__name__
        if len(shape) != 1:
            raise ValueError(f"task {name} has samples of shape {shape}, not token sequences")
        tokenizer = getattr(getattr(task, "config", None), "tokenizer", None)
        if tokenizer == "bytes" and self.source.model is not None:
            raise ValueError(
                f"task {name} reads bytes, but the model '{self.source.model}' was trained "
                "on its own tokens: set the task's tokenizer to the model (the same value)"
            )
        if task.num_classes > self.num_classes:
            raise ValueError(
                f"task {name}'s tokenizer has {task.num_classes} token ids but the model's "
                f"vocabulary has {self.num_classes}: use the model's own tokenizer"
            )

    def input_shape(self, arch: Arch) -> tuple[int, ...]:
        """One sample: ``seq_len`` token ids."""
        return (self.seq_len,)

    def example_input(self, arch: Arch, batch: int, generator: Any) -> Any:
        """Random token ids of shape ``(batch, seq_len)`` (what the conformance suite feeds)."""
        import torch

        return torch.randint(0, self.num_classes, (batch, self.seq_len), generator=generator)

    def adapter_index(self, bits: int) -> int:
        """Which of a projection's adapters runs at ``bits`` (0 when they are shared)."""
        return self["bits"].choices.index(bits) if self.num_adapters > 1 else 0

    def projection_shapes(self, arch: Arch, layer: int) -> dict[str, tuple[int, int]]:
        """``(out, in)`` of each of one layer's seven projections under ``arch`` (query
        heads follow their KV groups; ``o_proj`` and ``down_proj`` read what the others
        write), keyed as in :data:`ADAPTER_GROUP`."""
        sizes = self.sizes
        hidden, mlp = sizes.hidden_size, arch["mlp"][layer]
        kv = arch["kv_groups"][layer] * sizes.head_dim
        query = kv * sizes.heads_per_group
        return {
            "q_proj": (query, hidden),
            "k_proj": (kv, hidden),
            "v_proj": (kv, hidden),
            "o_proj": (hidden, query),
            "gate_proj": (mlp, hidden),
            "up_proj": (mlp, hidden),
            "down_proj": (hidden, mlp),
        }
