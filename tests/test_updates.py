"""Update pairs for predictive coding (nntm.ce.updates) and NNCodec's update coding."""

from __future__ import annotations

import numpy as np
import pytest
from nntm.ce import updates
from nntm.errors import NntmError

DIGITS_PAIRS = ("digits-continue", "digits-domain")


@pytest.mark.parametrize("name", DIGITS_PAIRS)
def test_digits_pair_loads_with_reference_layout(name: str) -> None:
    ref, new = updates.load_pair(name)
    import nntm.example as example

    assert list(ref) == list(example.TENSOR_NAMES) == list(new)
    for key in ref:
        assert new[key].shape == ref[key].shape
        assert new[key].dtype == ref[key].dtype == np.float32
        assert np.all(np.isfinite(new[key]))
    # the reference is the bundled model itself, not a copy of it
    bundled = example.load_example_tensors()
    assert all(np.array_equal(ref[k], bundled[k]) for k in ref)


@pytest.mark.parametrize("name", DIGITS_PAIRS)
def test_digits_update_is_real_and_small(name: str) -> None:
    ref, new = updates.load_pair(name)
    stats = updates.pair_statistics(ref, new)
    total = stats["all"]
    assert total["params"] == sum(v.size for v in ref.values())
    assert total["changed"] > 0.5  # further training moves (nearly) every weight
    assert 0.005 < total["rel_energy"] < 0.3  # ... by a few percent of the weights' energy
    for key in ref:
        assert not np.array_equal(ref[key], new[key]), key
    diff = updates.update_of(new, ref)
    assert all(d.dtype == np.float32 for d in diff.values())


def test_digits_updates_keep_the_task_and_matter() -> None:
    ref, new = updates.load_pair("digits-continue")
    _, new_b = updates.load_pair("digits-domain")
    m = updates.fidelity("digits", new, ref)
    assert m["accuracy"] >= 97.0
    assert m["kl_mean"] > 0.0
    before = updates.fidelity("digits", ref, ref)
    after = updates.fidelity("digits", new_b, ref)
    assert after["acc_domain"] > before["acc_domain"] + 5.0  # the domain update helps there
    assert after["accuracy"] >= 97.0  # ... without losing the original task


def test_registry_and_missing_pair_message(tmp_path) -> None:
    for name, pair in updates.UPDATE_PAIRS.items():
        reference, new, adapter = pair
        assert callable(reference) and callable(new)
        from nntm.ce.models import ADAPTERS

        assert adapter in ADAPTERS
        assert name in updates.MAKE_COMMANDS
    missing = tmp_path / "nothing.safetensors"
    from nntm.ce.models import get_adapter

    if get_adapter("minilm").available()[0]:
        with pytest.raises(NntmError, match="make_update_pairs.py minilm"):
            updates.load_pair("minilm-ft", new_path=missing)
    else:  # without the CE packages the reference model itself is what is missing
        with pytest.raises(NntmError, match="not available"):
            updates.load_pair("minilm-ft", new_path=missing)
    with pytest.raises(NntmError, match="unknown update pair"):
        updates.load_pair("no-such-pair")


def test_layout_mismatch_is_an_error() -> None:
    ref, new = updates.load_pair("digits-continue")
    bad = dict(new)
    bad["fc2.bias"] = bad["fc2.bias"][:5]
    with pytest.raises(NntmError, match="fc2.bias"):
        updates.update_of(bad, ref)


def test_statistics_on_a_synthetic_update() -> None:
    ref = {
        "a.weight": np.ones((4, 8), np.float32),
        "b.bias": np.ones(8, np.float32),
        "ids": np.arange(6, dtype=np.int64),
    }
    new = {k: v.copy() for k, v in ref.items()}
    new["a.weight"][0, :4] += 0.5  # 4 of 32 changed, ||d|| = 1, ||w|| = sqrt(32)
    stats = updates.pair_statistics(ref, new)
    assert stats["linear"]["changed"] == pytest.approx(4 / 32)
    assert stats["linear"]["rel_energy"] == pytest.approx(1 / np.sqrt(32))
    assert stats["1-D"]["changed"] == 0.0 and stats["1-D"]["unchanged_tensors"] == 1
    assert stats["int"]["changed"] == 0.0
    assert stats["all"]["params"] == 40


def _nncodec_or_skip() -> None:
    from nntm.ce.nncodec_anchor import import_nncodec

    try:
        import_nncodec()
    except NntmError as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("qp", [-24, -32])
def test_nncodec_update_round_trip(qp: int) -> None:
    _nncodec_or_skip()
    from nntm.ce.nncodec_anchor import NNCodecAnchor

    ref, new = updates.load_pair("digits-continue")
    data, decoded = updates.nncodec_update(new, ref, qp)
    assert list(decoded) == list(new)
    step = 2.0 ** (qp / 4)
    for key in new:
        assert decoded[key].dtype == new[key].dtype and decoded[key].shape == new[key].shape
        # dependent quantization with RDO: within two steps (about 1.5 measured)
        assert float(np.max(np.abs(decoded[key] - new[key]))) <= 2.0 * step, key
    # the receiver side alone rebuilds the same model from the bytes and the reference
    again = updates.nncodec_update_decode(data, ref)
    assert all(np.array_equal(again[k], decoded[k]) for k in new)
    # an update costs fewer bits than the new model alone at the same QP
    alone = NNCodecAnchor().encode(new, qp, "digits").data
    assert len(data) < len(alone)
    assert updates.fidelity("digits", decoded, new)["accuracy"] >= 97.0


def test_nncodec_update_skips_unchanged_tensors_and_chains() -> None:
    _nncodec_or_skip()
    ref, new = updates.load_pair("digits-continue")
    partial = dict(ref)
    partial["fc1.weight"] = new["fc1.weight"]
    data, decoded = updates.nncodec_update(partial, ref, -32)
    for key in ref:
        if key != "fc1.weight":
            assert np.array_equal(decoded[key], ref[key]), key  # no data unit: kept exactly
    full, _ = updates.nncodec_update(new, ref, -32)
    assert len(data) < len(full)

    # a chain of two updates with temporal context adaptation: encoder and decoder states
    _, new_b = updates.load_pair("digits-domain")
    enc_state, dec_state = updates.new_update_state(), updates.new_update_state()
    d1, r1 = updates.nncodec_update(new, ref, -32, state=enc_state, tca=True)
    got1 = updates.nncodec_update_decode(d1, ref, state=dec_state)
    d2, r2 = updates.nncodec_update(new_b, r1, -32, state=enc_state, tca=True)
    got2 = updates.nncodec_update_decode(d2, got1, state=dec_state)
    assert all(np.array_equal(got2[k], r2[k]) for k in ref)
    assert max(float(np.max(np.abs(got2[k] - new_b[k]))) for k in ref) <= 2.0 * 2.0**-8
