"""Most important first: reorder a LLaMA's MLP neurons and KV groups before slicing.

The supernet keeps MLP neurons and KV groups as prefixes, but a pretrained model's are in
no particular order. :func:`sort_by_importance` measures, on calibration text, how much each
contributes and permutes the weights so that every prefix keeps the most important ones;
the full model computes the same function (a permutation of hidden units).

Importance is Wanda's activation-times-weight score summed over the unit (Sun et al. 2024,
also LLM-Pruner's first-order view): for MLP neuron ``j`` of a layer,
``||X_j||_2 * ||W_down[:, j]||_2``, with ``X`` the input of ``down_proj``; for a KV group,
the same score summed over the ``o_proj`` input columns of its query heads. Query heads move
with their KV head, so grouped-query attention keeps its head-to-group mapping.

Sort once, before training: the full-precision model is unchanged, but the quantisation
groups of ``down_proj`` and ``o_proj`` follow their (re-ordered) inputs.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .supernet import LlamaSupernet


@torch.no_grad()
def measure_importance(
    supernet: LlamaSupernet, batches: Iterable[torch.Tensor]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer of the base model: the importance of each MLP neuron and each KV group
    (CPU tensors), measured on the largest arch over ``batches`` of token ids (moved to the
    model's device)."""
    previous = supernet.active_arch
    supernet.set_active(supernet.space.largest())
    layers = supernet.layers.all()
    device = layers[0].mlp.down_proj.weight.device
    mlp_sq = [torch.zeros(layer.mlp.down_proj.in_features, device=device) for layer in layers]
    attn_sq = [torch.zeros(layer.self_attn.o_proj.in_features, device=device) for layer in layers]
    hooks = []

    def accumulate(store: list[torch.Tensor], index: int):
        def hook(module, args):
            x = args[0].detach().float()
            store[index] += x.pow(2).reshape(-1, x.shape[-1]).sum(0)

        return hook

    for index, layer in enumerate(layers):
        hooks.append(layer.mlp.down_proj.register_forward_pre_hook(accumulate(mlp_sq, index)))
        hooks.append(layer.self_attn.o_proj.register_forward_pre_hook(accumulate(attn_sq, index)))
    was_training = supernet.training
    supernet.eval()
    try:
        for batch in batches:
            supernet(batch.to(device))
    finally:
        for hook in hooks:
            hook.remove()
        supernet.train(was_training)
        if previous is not None:
            supernet.set_active(previous)
    group_width = supernet.heads_per_group * supernet.head_dim
    neurons, groups = [], []
    for index, layer in enumerate(layers):
        down = layer.mlp.down_proj.merged_weight(layer.mlp.down_proj.in_features)
        neurons.append((mlp_sq[index].sqrt() * down.norm(dim=0)).cpu())
        out = layer.self_attn.o_proj.merged_weight(layer.self_attn.o_proj.in_features)
        score = attn_sq[index].sqrt() * out.norm(dim=0)
        groups.append(score.reshape(-1, group_width).sum(1).cpu())
    return neurons, groups


@torch.no_grad()
def sort_by_importance(supernet: LlamaSupernet, batches: Iterable[torch.Tensor]) -> None:
    """Reorder every layer's MLP neurons and KV groups, most important first, in place
    (weights, biases and adapters alike; the full model's function is unchanged)."""
    neurons, groups = measure_importance(supernet, batches)
    head_dim, per_group = supernet.head_dim, supernet.heads_per_group
    for layer, neuron_score, group_score in zip(
        supernet.layers.all(), neurons, groups, strict=True
    ):
        order = torch.argsort(neuron_score, descending=True, stable=True)
        for projection in (layer.mlp.gate_proj, layer.mlp.up_proj):
            _permute_outputs(projection, order)
        _permute_inputs(layer.mlp.down_proj, order)
        group_order = torch.argsort(group_score, descending=True, stable=True)
        query = _expand(group_order, per_group * head_dim)
        key_value = _expand(group_order, head_dim)
        _permute_outputs(layer.self_attn.q_proj, query)
        _permute_outputs(layer.self_attn.k_proj, key_value)
        _permute_outputs(layer.self_attn.v_proj, key_value)
        _permute_inputs(layer.self_attn.o_proj, query)


def _expand(order: torch.Tensor, width: int) -> torch.Tensor:
    """Unit order -> row order, for units of ``width`` consecutive rows."""
    return (order[:, None] * width + torch.arange(width)).reshape(-1)


def _reorder(tensor: torch.Tensor, index: torch.Tensor, dim: int) -> None:
    tensor.copy_(tensor.index_select(dim, index.to(tensor.device)))


def _permute_outputs(projection, index: torch.Tensor) -> None:
    _reorder(projection.weight, index, 0)
    _reorder(projection.lora_B, index, 1)
    if projection.bias is not None:
        _reorder(projection.bias, index, 0)


def _permute_inputs(projection, index: torch.Tensor) -> None:
    _reorder(projection.weight, index, 1)
    _reorder(projection.lora_A, index, 2)
