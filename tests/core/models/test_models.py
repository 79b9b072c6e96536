"""cachemux.models: the packaged local models load offline, generate greedily, count FLOPs and time
themselves; any transformers directory works the same way."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may come from a model hub
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # effective only if torch is not loaded yet

import threading  # noqa: E402

import pytest  # noqa: E402

from cachemux.errors import ConfigError, UnknownNameError  # noqa: E402
from cachemux.joint import CostModel  # noqa: E402
from cachemux.models import PACKAGED, FlopsProfile, GenerationResult, LocalModel, get_model, locate_gguf  # noqa: E402
from cachemux.models import local as local_module  # noqa: E402

PROMPT = "What is the capital of France?"


@pytest.fixture(scope="module")
def smol() -> LocalModel:
    return get_model("smollm2-135m").load()


@pytest.fixture(scope="module")
def gemma() -> LocalModel:
    lm = get_model("gemma3-270m")
    if not lm.is_cached and not os.environ.get("CACHEMUX_TEST_GEMMA"):
        pytest.skip("Gemma's fp32 cache is absent (its first load takes ~80 s): run "
                    "`python -m cachemux.models prepare` or set CACHEMUX_TEST_GEMMA=1")
    return lm.load()


# ---- FLOPs: hand numbers ------------------------------------------------------------------
TOY = {"model_type": "llama", "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2,
       "num_key_value_heads": 1, "intermediate_size": 16, "vocab_size": 100}


def test_flops_profile_by_hand():
    p = FlopsProfile.from_config(TOY)
    # per layer: q 8x8 + k,v 8x4 each + o 8x8 = 192; gated MLP 3 x 8 x 16 = 384
    assert p.body == 2 * (192 + 384)
    assert p.head == 8 * 100
    assert p.per_token == 2 * (1152 + 800)
    # attention: token i sees i keys; 4 * width(8) * sum(keys) per layer
    assert p.attention(3) == 4 * 8 * (1 + 2 + 3) * 2
    assert p.attention(1, past=2) == 4 * 8 * 3 * 2
    # generation = prefill (logits once) + one pass per further token
    tin, tout = 5, 3
    expected = p.forward(tin, 0, logits=1) + p.forward(1, tin) + p.forward(1, tin + 1)
    assert p.generation(tin, tout) == pytest.approx(expected)
    assert p.generation(tin, 0) == 0


def test_flops_sliding_window_caps_keys():
    cfg = dict(TOY, model_type="gemma3_text", sliding_window=2,
               layer_types=["sliding_attention", "full_attention"])
    p = FlopsProfile.from_config(cfg)
    assert p.windows == (2, None)
    assert p.attention(3) == 4 * 8 * ((1 + 2 + 2) + (1 + 2 + 3))


def test_flops_profile_rejects_unknown_shapes():
    with pytest.raises(ConfigError, match="model_type 'gpt2'"):
        FlopsProfile.from_config(dict(TOY, model_type="gpt2"))
    with pytest.raises(ConfigError, match="from_model"):
        FlopsProfile.from_config({"model_type": "llama"})


def test_packaged_registry_errors_name_the_choices():
    with pytest.raises(UnknownNameError, match="smollm2-135m"):
        locate_gguf("nope")
    assert set(PACKAGED) == {"smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"}


def test_generation_result_costs():
    r = GenerationResult("Paris", "m", latency=0.5, flops=1e9, tokens_in=10, tokens_out=2, finish_reason="stop")
    assert r.cost("latency") == 0.5 and r.cost("flops") == 1e9 and r.cost("tokens") == 12
    assert r.seconds_per_token == 0.25
    # the adapters hand a run to the engine as its figures (as_dict) in Generation.usage, and the
    # engine's cost model prices it from there
    d = r.as_dict()
    usage = {"flops": d["flops"], "tokens": float(d["tokens_in"] + d["tokens_out"])}
    assert CostModel("flops")("m", d["text"], d["latency"], usage) == 1e9
    assert CostModel("tokens")("m", d["text"], d["latency"], usage) == 12
    assert CostModel("latency")("m", d["text"], d["latency"], usage) == 0.5
    with pytest.raises(ConfigError, match="latency, flops, tokens"):
        r.cost("dollars")


def test_bad_arguments():
    with pytest.raises(ConfigError, match="device"):
        LocalModel("smollm2-135m", device="tpu")
    for bad in (-0.1, float("nan"), float("inf"), "hot", True):
        with pytest.raises(ConfigError, match="temperature"):
            local_module.check_temperature(bad)
    for bad in (-1, 1.5, "7", True):
        with pytest.raises(ConfigError, match="seed"):
            local_module.check_seed(bad)


@pytest.mark.parametrize("name", ["smollm2-135", "gemma-270m", "org/not-a-cached-model", "./no/such/dir",
                                  "missing.gguf"])
def test_a_mistyped_model_name_is_refused_at_construction_with_the_known_ones(name):
    """Not a hub connection error at first use: the name and the packaged choices, at once."""
    with pytest.raises(UnknownNameError, match=r"unknown model .*; known: \['gemma3-270m', 'qwen2.5-coder-0.5b', "
                                                 r"'qwen2.5-coder-1.5b', 'smollm2-135m'\]"):
        LocalModel(name)
    with pytest.raises(UnknownNameError, match="unknown model"):
        get_model(name)
    assert not [k for k in local_module._SHARED if k[0] == name]  # nothing half-made is shared


def test_existing_paths_are_accepted_without_loading(tmp_path):
    assert not LocalModel(str(tmp_path)).loaded  # a directory: from_pretrained's business at load


# ---- the real small model -----------------------------------------------------------------
@pytest.mark.models
def test_smollm2_generates_offline(smol):
    path = locate_gguf("smollm2-135m")[1]
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()
    r = smol.generate(PROMPT, max_new_tokens=12)
    assert "Paris" in r.text
    assert r.model == "smollm2-135m" and r.latency > 0 and 1 <= r.tokens_out <= 12
    assert r.tokens_in > 5  # the chat template wraps the question
    assert r.flops == pytest.approx(smol.flops_profile.generation(r.tokens_in, r.tokens_out))
    info = smol.info()
    assert info["chat_template"] and info["loaded_from"] in ("gguf", "fp32-cache")
    assert info["load_seconds"] > 0 and info["flops_per_token"] == pytest.approx(2 * 134_479_872)


@pytest.mark.models
def test_smollm2_flops_from_config_match_its_weights(smol):
    """The config formula counts exactly the matmul weights the loaded model has."""
    by_config = FlopsProfile.from_config(smol.model.config)
    by_weights = FlopsProfile.from_model(smol.model)
    assert (by_config.body, by_config.head) == (by_weights.body, by_weights.head)
    # the LM head is tied to the input embedding but still counted: it is a real matmul
    assert by_config.head == 576 * 49152


@pytest.mark.models
def test_fp32_cache_is_safetensors_only(smol):
    cache = smol.fp32_cache
    assert smol.is_cached and cache is not None
    names = {p.name for p in cache.iterdir()}
    assert "model.safetensors" in names and "cachemux.json" in names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl"))]


@pytest.mark.models
def test_any_transformers_directory_loads_by_path(smol):
    """The fp32 cache is a plain transformers directory: loading it by path gives the same
    greedy text (the generic from_pretrained route, as for any hub model name)."""
    other = LocalModel(str(smol.fp32_cache), name="by-path")
    a = smol.generate(PROMPT, max_new_tokens=8)
    b = other.generate(PROMPT, max_new_tokens=8)
    assert other.loaded_from == "pretrained" and b.text == a.text and b.flops == a.flops


@pytest.mark.models
def test_stop_strings_and_plain_prompts(smol):
    r = smol.generate(PROMPT, max_new_tokens=12, stop=["Paris"])
    assert "Paris" not in r.text and r.finish_reason == "stop"
    plain = LocalModel(str(smol.fp32_cache), chat=False)
    assert plain.format_prompt("Q: 2+2?\nA:") == "Q: 2+2?\nA:"
    assert plain.format_prompt([{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Hi"}]) == "Be brief.\nUser: Hi\nAssistant:"
    with pytest.raises(ConfigError, match="max_new_tokens"):
        smol.generate(PROMPT, max_new_tokens=0)


@pytest.mark.models
def test_stream_matches_generate(smol):
    whole = smol.generate(PROMPT, max_new_tokens=10)
    stream = smol.stream(PROMPT, max_new_tokens=10)
    pieces = list(stream)
    assert len(pieces) >= 2 and "".join(pieces) == whole.text == stream.result.text
    assert stream.result.tokens_out == whole.tokens_out and stream.result.flops == whole.flops
    stopped = smol.stream(PROMPT, max_new_tokens=12, stop=["Paris"])
    assert "Paris" not in "".join(stopped) and stopped.result.finish_reason == "stop"


@pytest.mark.models
def test_concurrent_callers_share_one_loaded_model(smol):
    assert get_model("smollm2-135m") is smol
    out: list[GenerationResult] = []
    threads = [threading.Thread(target=lambda: out.append(smol.generate(PROMPT, max_new_tokens=4)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 3 and len({r.text for r in out}) == 1


@pytest.mark.models
def test_temperature_samples_reproducibly_with_a_seed(smol):
    import torch

    prompt = "Tell me a story."
    state = torch.random.get_rng_state()
    a = smol.generate(prompt, max_new_tokens=10, temperature=1.0, seed=3)
    b = smol.generate(prompt, max_new_tokens=10, temperature=1.0, seed=3)
    others = {smol.generate(prompt, max_new_tokens=10, temperature=1.0, seed=s).text for s in (4, 5, 6)}
    greedy = smol.generate(prompt, max_new_tokens=10)
    assert a.text == b.text and others - {a.text}  # the seed decides; other seeds differ
    assert greedy.text == smol.generate(prompt, max_new_tokens=10, temperature=0).text
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random state is untouched
    streamed = "".join(smol.stream(prompt, max_new_tokens=10, temperature=1.0, seed=3))
    assert streamed == a.text


# ---- the larger model (when its fp32 cache exists) ----------------------------------------
@pytest.mark.models
def test_gemma_generates_and_costs_more_per_token(smol, gemma):
    r = gemma.generate("Question: What is the capital of France?\nAnswer:", max_new_tokens=6, stop=["\n"])
    assert r.text.strip() == "Paris" and not gemma.uses_chat_template
    by_weights = FlopsProfile.from_model(gemma.model)
    assert (gemma.flops_profile.body, gemma.flops_profile.head) == (by_weights.body, by_weights.head)
    assert gemma.flops_profile.windows.count(None) == 3  # 3 of 18 layers attend globally
    ratio = gemma.flops_profile.per_token / smol.flops_profile.per_token
    assert 1.9 < ratio < 2.1
