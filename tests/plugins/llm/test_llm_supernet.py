"""The ``llm.llama`` space and its elastic LLaMA supernet, on small randomly initialised models.

The contract: an arch picks depth and which layers (a contiguous dropped block), whole KV
groups, MLP width, LoRA ranks and bits per layer; activating it slices the one
``LlamaForCausalLM`` in place (no weight copies), and ``generate()`` / the KV cache work with
it active; ``extract(arch)`` is a physically smaller model whose logits match; a uniform
arch's extract is a plain Hugging Face model that ``from_pretrained`` reloads exactly.
"""

from __future__ import annotations

import pytest

pytest.importorskip("transformers", reason="nasforge[llm] is not installed")

import torch
from nasforge_llm.quantization import fake_quantize
from nasforge_llm.space import LlamaSpace
from nasforge_llm.supernet import LlamaSupernet
from transformers import AutoModelForCausalLM, DynamicCache, LlamaConfig, LlamaForCausalLM

from nasforge import ArchError
from nasforge.testing import check_space, check_supernet

CONFIG = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 6,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "vocab_size": 97,
    "max_position_embeddings": 64,
}
OPTIONS = {
    "config": CONFIG,
    "min_depth": 3,
    "lora_ranks": [0, 4, 8],
    "bits": [4, 8, 16],
    "group_size": 16,
    "seq_len": 12,
}


@pytest.fixture(scope="module")
def space():
    return LlamaSpace(**OPTIONS)


@pytest.fixture(scope="module")
def supernet(space):
    net = LlamaSupernet(space).eval()
    with torch.no_grad():  # adapters that do something (B starts at zero)
        generator = torch.Generator().manual_seed(0)
        for name, parameter in net.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)
    return net


def test_the_space_reads_its_sizes_from_the_model_config(space):
    assert space.num_layers == 6 and space.min_depth == 3
    assert space["kv_groups"].choices == [1, 2]
    assert space["mlp"].choices == [32, 64, 96, 128]
    assert space.largest()["depth"] == 6 and "drop_at" not in space.largest()
    smallest = space.smallest()
    assert smallest["depth"] == 3 and space.kept_layers(smallest) == [0, 4, 5]
    assert space.num_classes == 97
    check_space(space)


@pytest.mark.parametrize(
    ("depth", "drop_at", "kept"),
    [(4, 2, [0, 1, 4, 5]), (4, 4, [0, 1, 2, 5]), (3, 4, [0, 1, 5]), (5, 1, [0, 2, 3, 4, 5])],
)
def test_depth_drops_one_contiguous_block_and_keeps_the_first_and_last_layer(
    space, depth, drop_at, kept
):
    arch = {**space.largest(), "depth": depth, "drop_at": drop_at}
    assert space.kept_layers(arch) == kept
    canonical = space.canonical(arch)
    assert space.kept_layers(canonical) == kept
    assert canonical["drop_at"] == min(drop_at, depth - 1)  # where the block really starts


def test_archs_equal_as_networks_have_one_key(space):
    arch = {**space.largest(), "depth": 4, "drop_at": 2}
    other = dict(arch)
    other["mlp"] = list(arch["mlp"])
    other["mlp"][2] = 32  # layer 2 is dropped: its MLP width does not matter
    other["drop_at"] = 2
    assert space.key(arch) == space.key(other)
    assert space.key({**arch, "drop_at": 4}) != space.key(arch)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_depth": 9}, "min_depth 9 > the model's 6 layers"),
        ({"kv_groups": [1, 3]}, "the model has 2 KV groups"),
        ({"bits": [7]}, "bits must be among"),
        ({"mlp_ratios": [0.0, 1.0]}, "mlp_ratios must lie in"),
        ({"model": "/nowhere"}, "exactly one of 'model'"),
    ],
)
def test_bad_space_options_say_what_is_wrong(options, message):
    with pytest.raises(ValueError, match=message):
        LlamaSpace(**{**OPTIONS, **options})


def test_a_model_directory_is_read_as_the_base(tmp_path):
    torch.manual_seed(1)
    model = LlamaForCausalLM(LlamaConfig(**CONFIG)).eval()
    model.save_pretrained(tmp_path)
    space = LlamaSpace(model=str(tmp_path), min_depth=3, lora_ranks=[0, 4])
    assert space.num_layers == 6 and space["kv_groups"].choices == [1, 2]
    net = LlamaSupernet(space).eval()
    x = torch.randint(0, 97, (2, 10))
    with torch.no_grad():  # the largest arch at 16 bits with a zero-initialised adapter
        assert torch.allclose(net(x), model(x).logits, atol=1e-5)


def test_the_supernet_passes_the_conformance_suite(space, supernet):
    check_supernet(space, supernet, n=6, atol=1e-4)


def test_activating_an_arch_slices_in_place_and_keeps_the_state_dict(space, supernet):
    keys = list(supernet.state_dict())
    base = {name: p.data_ptr() for name, p in supernet.named_parameters()}
    for seed in range(4):
        supernet.set_active(space.sample(seed))
    assert list(supernet.state_dict()) == keys
    assert {name: p.data_ptr() for name, p in supernet.named_parameters()} == base
    trainable = {name for name, p in supernet.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)  # the base is frozen


def test_a_bad_arch_names_its_key(space, supernet):
    arch = space.largest()
    with pytest.raises(ArchError, match="kv_groups"):
        supernet.set_active({**arch, "kv_groups": [3] * 6})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generation_and_the_kv_cache_work_with_an_arch_active(space, supernet, seed):
    arch = {**space.sample(seed), "depth": 4, "drop_at": 1 + seed}  # a block dropped
    supernet.set_active(arch)
    prompt = torch.randint(0, 97, (1, 5), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        generated = supernet.model.generate(prompt, max_new_tokens=6, do_sample=False)
        sequence = prompt
        for _ in range(6):  # greedy decoding without any cache
            next_token = supernet(sequence)[:, -1].argmax(-1, keepdim=True)
            sequence = torch.cat([sequence, next_token], 1)
        assert generated.tolist() == sequence.tolist()
        cache = DynamicCache(config=supernet.model.config)
        supernet.model(input_ids=sequence[:, :5], cache=cache, use_cache=True)
        step = supernet.model(input_ids=sequence[:, 5:6], cache=cache, use_cache=True).logits
        assert torch.allclose(step[:, -1], supernet(sequence[:, :6])[:, -1], atol=1e-5)


def test_a_uniform_arch_extracts_to_a_plain_hugging_face_model(space, supernet, tmp_path):
    arch = {**space.largest(), "depth": 5, "drop_at": 2}
    arch.update(kv_groups=[1] * 6, mlp=[64] * 6, lora_attn=[4] * 6, lora_mlp=[8] * 6, bits=[4] * 6)
    subnet = supernet.extract(arch)
    assert subnet.per_layer is None
    hf = subnet.hf
    assert hf.config.num_hidden_layers == 5 and hf.config.intermediate_size == 64
    assert hf.config.num_key_value_heads == 1 and hf.config.num_attention_heads == 2
    hf.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    x = torch.randint(0, 97, (2, 12))
    supernet.set_active(arch)
    with torch.no_grad():
        assert torch.allclose(reloaded(x).logits, supernet(x), atol=1e-4)
    params = sum(p.numel() for p in hf.parameters())
    assert params < sum(p.numel() for n, p in supernet.named_parameters() if "lora" not in n)


def test_per_layer_sizes_extract_layer_by_layer(space, supernet):
    arch = {**space.largest(), "kv_groups": [1, 2, 1, 2, 1, 2], "mlp": [32, 128, 64, 96, 32, 128]}
    subnet = supernet.extract(arch)
    assert subnet.per_layer is not None and len(subnet.per_layer) == 6
    mlp = [layer.mlp.up_proj.out_features for layer in subnet.hf.model.layers]
    assert mlp == arch["mlp"]


def test_fake_quantisation_has_at_most_2_to_the_bits_levels_per_group_and_a_straight_gradient():
    weight = torch.randn(8, 40, requires_grad=True)
    quantized = fake_quantize(weight, 3, 16)
    for row in quantized.detach():
        for group in row.split(16):
            assert len(torch.unique(group.round(decimals=4))) <= 2**3  # STE float noise aside
    assert (quantized - weight).abs().max() < (weight.max() - weight.min()) / 7
    quantized.sum().backward()
    assert torch.equal(weight.grad, torch.ones_like(weight))
    assert fake_quantize(weight, 16, 16) is weight


def test_sorting_by_importance_keeps_the_function_and_puts_the_important_units_first(space):
    from nasforge_llm.importance import measure_importance, sort_by_importance

    net = LlamaSupernet(space).eval()  # a fresh one: sorting changes the weights' order
    generator = torch.Generator().manual_seed(3)
    batches = [torch.randint(0, 97, (2, 12), generator=generator) for _ in range(3)]
    x = torch.randint(0, 97, (2, 12), generator=generator)
    largest = {**space.largest(), "bits": [16] * 6}
    net.set_active(largest)
    with torch.no_grad():
        before = net(x)
        neurons, _ = measure_importance(net, batches)
        assert any(not torch.equal(n, n.sort(descending=True).values) for n in neurons)
        sort_by_importance(net, batches)
        net.set_active(largest)
        assert torch.allclose(net(x), before, atol=1e-4)  # the same function
        neurons, groups = measure_importance(net, batches)
    for score in [*neurons, *groups]:  # most important first, in every layer
        assert torch.all(score[:-1] >= score[1:] - 1e-5 * score.max())


def test_memory_counts_what_the_extracted_model_holds(space, supernet):
    from nasforge_llm.memory import LlamaMemory

    from nasforge import EvalContext
    from nasforge.testing import check_hardware

    memory = LlamaMemory(space, context_length=64)
    context = EvalContext(run_dir=None)
    check_hardware(memory, space)
    for seed in range(4):
        arch = {**space.sample(seed), "bits": [16] * 6}
        hf = supernet.extract(arch).hf
        params = sum(p.numel() for p in hf.parameters())  # tied weights counted once
        got = memory.measure(arch, None, context)
        assert got["params_m"] * 1e6 == pytest.approx(params)
        assert got["weight_mb"] * 1e6 == pytest.approx(2 * params)  # 16 bits, adapters merged
        kv = sum(arch["kv_groups"][i] for i in space.kept_layers(arch))
        assert got["kv_cache_mb"] * 1e6 == pytest.approx(2 * kv * 16 * 64 * 2)
    arch = space.largest()
    full = memory.measure({**arch, "bits": [16] * 6}, None, context)["weight_mb"]
    four = memory.measure({**arch, "bits": [4] * 6, "lora_attn": [0] * 6, "lora_mlp": [0] * 6},
                          None, context)["weight_mb"]  # fmt: skip
    heads = 1 if space.sizes.tied_embeddings else 2  # embeddings (and head), norms: 16-bit
    projections = full - 2 * (heads * 97 * 64 + 64 + 6 * 2 * 64) / 1e6
    # 4 bits, and a 16-bit scale and zero point per 16 inputs: 0.5 + 4 / 16 bytes per weight
    assert four == pytest.approx(full - projections * (1 - (0.5 + 4 / 16) / 2))


def test_throughput_is_measured_on_the_extracted_model(space, supernet):
    from nasforge_llm.throughput import LlamaThroughput

    from nasforge.testing import check_hardware

    throughput = LlamaThroughput(space, prompt_tokens=8, new_tokens=3, warmup=0, repeats=1)
    check_hardware(throughput, space, n=2, subnet_for=supernet.extract)


def test_a_partial_quantisation_group_keeps_its_own_range():
    weight = torch.linspace(1.0, 2.0, 72).repeat(2, 1)  # 64 + a tail of 8, all in [1, 2]
    quantized = fake_quantize(weight, 2, 64)
    tail = quantized[:, 64:]
    # the group's minimum is stored in fp16 (what a packed export keeps): within its rounding
    assert tail.min() >= weight[:, 64:].min() - 2e-3 and len(torch.unique(tail[0])) > 1


def test_a_pretrained_model_refuses_byte_tokens(tmp_path):
    from nasforge_llm.text import TextTask

    torch.manual_seed(1)
    LlamaForCausalLM(LlamaConfig(**{**CONFIG, "vocab_size": 300})).save_pretrained(tmp_path)
    space = LlamaSpace(model=str(tmp_path), min_depth=3)
    corpus = tmp_path / "a.txt"
    corpus.write_text("text " * 200)
    with pytest.raises(ValueError, match="reads bytes, but the model"):
        space.check_task(TextTask(files=[str(corpus)]))


def test_a_bf16_base_trains_float32_adapters_and_extracts():
    """The recipe for a 7-8 B base on one GPU: frozen bf16 weights, fp32 LoRA."""
    space = LlamaSpace(**{**OPTIONS, "dtype": "bfloat16", "bits": [4, 16]})
    net = LlamaSupernet(space)
    q_proj = net.layers.all()[0].self_attn.q_proj
    assert q_proj.weight.dtype == torch.bfloat16 and q_proj.lora_A.dtype == torch.float32
    arch = {**space.largest(), "bits": [4, 16, 4, 16, 4, 16]}
    net.set_active(arch)
    x = torch.randint(0, 97, (2, 12))
    net(x).float().logsumexp(-1).mean().backward()
    assert q_proj.lora_A.grad is not None and q_proj.lora_A.grad.dtype == torch.float32
    assert q_proj.weight.grad is None
    net.eval()
    with torch.no_grad():
        subnet = net.extract(arch)
        assert next(subnet.parameters()).dtype == torch.bfloat16
        assert torch.allclose(subnet(x).float(), net(x).float(), atol=0.05)
