"""The elastic LLaMA supernet: a Hugging Face ``LlamaForCausalLM`` whose every projection is
an :class:`~nasforge_llm.elastic.ElasticLoRALinear`, and whose layer list runs only the
layers an arch keeps.

Activating an arch slices in place: each projection's active output size, LoRA rank and bit
width are set, the attention modules of kept layers are renumbered contiguously (the KV
cache is indexed by them, and reads the sequence length from its first slot), and the
model's configuration says how many layers run — so ``generate()`` and the KV cache work
with an arch active. Nothing outside transformers' public model classes is patched:
attention infers its head count from the projections' output sizes, and dropping whole KV
groups keeps ``num_key_value_groups`` (query heads per KV head) unchanged.

Heads and MLP neurons are kept as prefixes, so the supernet must hold them most important
first: :func:`nasforge_llm.importance.sort_by_importance` reorders a pretrained model once
without changing its function.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from nasforge import Arch, SubnetFormats, Supernet

from .elastic import ElasticLoRALinear
from .hf_export import empty_llama, load_pretrained, save_hf
from .quantization import QuantizedWeight
from .source import load_llama
from .space import ADAPTER_GROUP, LlamaSpace

ATTENTION = tuple(name for name, group in ADAPTER_GROUP.items() if group == "lora_attn")
MLP = tuple(name for name, group in ADAPTER_GROUP.items() if group == "lora_mlp")


class ActiveLayers(nn.ModuleList):
    """The decoder layers: all of them are registered (so the state dict never changes),
    iteration, ``len`` and indexing see only the active ones, in order."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        for index, layer in enumerate(layers):
            self.add_module(str(index), layer)
        self.active: list[int] = list(range(len(layers)))

    def all(self) -> list[nn.Module]:
        """Every layer of the base model, active or not."""
        return list(self._modules.values())

    def _active(self) -> list[nn.Module]:
        every = self.all()
        return [every[i] for i in self.active]

    def __iter__(self) -> Iterator[nn.Module]:
        return iter(self._active())

    def __len__(self) -> int:
        return len(self.active)

    def __getitem__(self, index: int | slice) -> Any:
        active = self._active()
        if isinstance(index, slice):
            return nn.ModuleList(active[index])
        return active[index]


class LlamaSupernet(nn.Module, Supernet):
    """Every sub-network of ``space`` in one ``LlamaForCausalLM``; ``forward(input_ids)``
    returns the logits of the active arch."""

    def __init__(self, space: LlamaSpace, model: Any = None):
        super().__init__()
        self.space = space
        self.model = model if model is not None else load_llama(space.source)
        config = self.model.config
        self.full_layers = config.num_hidden_layers
        if self.full_layers != space.num_layers:
            raise ValueError(
                f"the model has {self.full_layers} layers, the space {space.num_layers}"
            )
        self.head_dim = space.sizes.head_dim
        self.heads_per_group = space.sizes.heads_per_group
        max_rank = space["lora_attn"].choices[-1]
        for parameter in self.model.parameters():  # the base is frozen: adapters train
            parameter.requires_grad_(False)
        decoder = self.model.model
        for layer in decoder.layers:
            for owner, names in ((layer.self_attn, ATTENTION), (layer.mlp, MLP)):
                rank = max_rank if names is ATTENTION else space["lora_mlp"].choices[-1]
                for name in names:
                    base = getattr(owner, name)
                    elastic = ElasticLoRALinear(
                        base, rank, space.lora_alpha, space.group_size, space.num_adapters
                    )
                    setattr(owner, name, elastic)
        decoder.layers = ActiveLayers(list(decoder.layers))
        self.active_arch: Arch | None = None
        self.set_active(space.largest())

    @property
    def layers(self) -> ActiveLayers:
        """The decoder layers (see :class:`ActiveLayers`)."""
        return self.model.model.layers

    def set_active(self, arch: Arch) -> None:
        """Run ``arch`` from the next forward on (slices set in place, nothing copied)."""
        arch = self.space.canonical(arch)  # validates: an ArchError names the bad key
        kept = self.space.kept_layers(arch)
        every = self.layers.all()
        for position, index in enumerate(kept):
            layer = every[index]
            layer.self_attn.layer_idx = position  # the KV cache's slot
            if hasattr(layer, "layer_idx"):
                layer.layer_idx = position
            shapes = self.space.projection_shapes(arch, index)
            for name, projection in self._projections(layer):
                projection.active_out = shapes[name][0]
                projection.rank = min(arch[ADAPTER_GROUP[name]][index], projection.max_rank)
                projection.bits = arch["bits"][index]
                projection.adapter = self.space.adapter_index(projection.bits)
        self.layers.active = kept
        self.model.config.num_hidden_layers = len(kept)
        self.active_arch = arch

    @staticmethod
    def _projections(layer: nn.Module) -> Iterator[tuple[str, ElasticLoRALinear]]:
        for owner, names in ((layer.self_attn, ATTENTION), (layer.mlp, MLP)):
            for name in names:
                yield name, getattr(owner, name)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The logits of the active arch, ``(batch, tokens, vocab)``."""
        output = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        return output.logits

    @torch.no_grad()
    def extract(self, arch: Arch) -> LlamaSubnet:
        """A physically smaller ``LlamaForCausalLM`` of ``arch`` (adapters merged, weights
        quantised to their bits, copied), wrapped to return logits and to export itself."""
        previous = self.active_arch
        self.set_active(arch)
        arch = self.active_arch
        try:
            kept = self.space.kept_layers(arch)
            config = copy.deepcopy(self.model.config)
            config.num_hidden_layers = len(kept)
            per_layer = [self._layer_sizes(arch, i) for i in kept]
            uniform = all(sizes == per_layer[0] for sizes in per_layer)
            config.head_dim = self.head_dim
            for key, value in per_layer[0].items():
                setattr(config, key, value)
            if getattr(config, "layer_types", None) is not None:
                config.layer_types = [config.layer_types[i] for i in kept]
            model = empty_llama(config, None if uniform else per_layer)
            every = self.layers.all()
            quantized = {}
            for position, index in enumerate(kept):
                source, target = every[index], model.model.layers[position]
                target.input_layernorm = copy.deepcopy(source.input_layernorm)
                target.post_attention_layernorm = copy.deepcopy(source.post_attention_layernorm)
                shapes = self.space.projection_shapes(arch, index)
                for name, projection in self._projections(source):
                    owner = "self_attn" if name in ATTENTION else "mlp"
                    setattr(getattr(target, owner), name, projection.extract(shapes[name][1]))
                    parts = projection.quantized_parts(shapes[name][1])
                    if parts is not None:
                        quantized[f"model.layers.{position}.{owner}.{name}"] = parts
            model.model.embed_tokens = copy.deepcopy(self.model.model.embed_tokens)
            model.model.norm = copy.deepcopy(self.model.model.norm)
            model.model.rotary_emb = copy.deepcopy(self.model.model.rotary_emb)
            if config.tie_word_embeddings:
                model.lm_head.weight = model.model.embed_tokens.weight
            else:
                model.lm_head = copy.deepcopy(self.model.lm_head)
            for parameter in model.parameters():
                parameter.requires_grad_(True)
            model.eval()
            return LlamaSubnet(
                model,
                arch,
                None if uniform else per_layer,
                bits=[arch["bits"][i] for i in kept],
                group_size=self.space.group_size,
                quantized=quantized,
                tokenizer=self.space.source.model,
            )
        finally:
            if previous is not None:
                self.set_active(previous)

    def _layer_sizes(self, arch: Arch, index: int) -> dict[str, int]:
        groups = arch["kv_groups"][index]
        return {
            "intermediate_size": arch["mlp"][index],
            "num_key_value_heads": groups,
            "num_attention_heads": groups * self.heads_per_group,
        }


class LlamaSubnet(nn.Module, SubnetFormats):
    """An extracted sub-network: ``hf`` is a plain ``LlamaForCausalLM``; ``forward`` returns
    logits like the supernet's. ``per_layer`` lists each layer's sizes when they differ
    (then ``hf`` needs :func:`nasforge_llm.load_pretrained` to be rebuilt from its saved
    files); ``bits`` is each kept layer's bit-width; ``quantized`` holds, for each projection
    below 16 bits, the quantised base weight and its adapter apart (what ``hf-packed``
    writes); ``tokenizer`` is where the base model's tokenizer comes from, if it has one."""

    export_formats: ClassVar[dict[str, str]] = {
        "hf": "a Hugging Face directory, float weights (plain from_pretrained when uniform)",
        "hf-packed": "a Hugging Face directory, weights below 16 bits packed to their bits",
    }

    def __init__(
        self,
        hf: Any,
        arch: Arch,
        per_layer: list[dict[str, int]] | None,
        *,
        bits: list[int] | None = None,
        group_size: int = 64,
        quantized: dict[str, tuple[QuantizedWeight, torch.Tensor, torch.Tensor]] | None = None,
        tokenizer: str | None = None,
    ):
        super().__init__()
        self.hf = hf
        self.arch = arch
        self.per_layer = per_layer
        self.bits = bits if bits is not None else [16] * hf.config.num_hidden_layers
        self.group_size = group_size
        self.quantized = quantized or {}
        self.tokenizer = tokenizer

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The logits, ``(batch, tokens, vocab)``."""
        return self.hf(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    def save_export(self, out_dir: Path, fmt: str) -> Path:
        """Write ``out_dir/hf`` or ``out_dir/hf-packed`` (:mod:`nasforge_llm.hf_export`)."""
        return save_hf(self, out_dir, packed=fmt == "hf-packed")

    def load_export(self, path: Path, fmt: str) -> Callable[[torch.Tensor], torch.Tensor]:
        """The saved directory loaded by :func:`nasforge_llm.load_pretrained`, as a function
        from token ids to logits (on this subnet's device)."""
        device = next(self.hf.parameters()).device
        model = load_pretrained(path, device=str(device))

        def logits(input_ids: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return model(input_ids=input_ids, use_cache=False).logits

        return logits
