"""Tensor classes: layer type, input signal type, arrangement and tree partition.

Every tensor gets a layer type (from its shape and name, or a ``LayerRules``
glob), an input signal type (``SignalRules`` globs on the tensor name; else
"default"), and from the pair a tree partition type, partition limits and an
arrangement (``ClassRules``).  All of it is signalled in the tensor parameter
set.  The rule syntax, in a cfg file::

    LayerRules  : *embed*=embedding; conv1.weight=conv
    SignalRules : *attention*=attention; *intermediate*=mlp
    ClassRules  : conv: tree=qtmtt, arrangement=tiles; linear/attention: tree=qtbt, ctu=32;
                  1-D: tree=none, window=6   (one line in a real cfg file)

A ClassRules selector is a layer type label, ``layer/signal``, ``*/signal`` or
``*``; the first rule whose selector matches wins, and its settings override
the global keys (TreeType, CTUSize, MinQTSize, MaxMTTDepth, MinCUSize,
Arrangement, ProbWindow: keys tree, ctu, minqt, mtt, mincu, arrangement, window).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, replace

from .arrange import Arrangement, LayerType, classify
from .config import Config
from .core import SearchParams, TreeParams
from .errors import ConfigError
from .hls import MAX_PROB_WINDOW, TREE_SPLIT_MASK

LAYER_BY_LABEL = {t.label: t for t in LayerType}

TREE_TYPES = {"none": 0, "qt": 1, "qtbt": 2, "qtmtt": 3}
ARRANGEMENTS = {"rows": Arrangement.ROWS, "tiles": Arrangement.KERNEL_TILES}
_RULE_KEYS = {"tree", "ctu", "minqt", "mtt", "mincu", "arrangement", "window"}


def _log2(value: int, key: str, problems: list[str]) -> int:
    if value < 1 or value & (value - 1):
        problems.append(f"{key} = {value} is not a power of two")
        return 0
    return value.bit_length() - 1


# Encoder search bounds of each speed preset: (deepest tree level tried,
# stop at a node whose best leaf is skip).
PRESETS = {"fast": (1, True), "medium": (3, True), "slow": (4, False)}


def search_params(cfg: Config) -> SearchParams:
    depth, skip_no_split = PRESETS[str(cfg["Preset"])]
    deltas = tuple(cfg["QPDeltaSearch"]) if cfg["CUQPDelta"] else (0,)
    if not deltas:
        deltas = (0,)
    if len(deltas) > 8:
        raise ConfigError("QPDeltaSearch: at most 8 CU QP deltas")
    return SearchParams(max_depth=depth, skip_no_split=skip_no_split, qp_deltas=deltas,
                        intra_copy_range=int(cfg["IntraCopyRange"]))


def intra_problem(cfg: Config) -> str:
    """Why IntraPred cannot be used with these settings, or ""."""
    if cfg["IntraPred"] and cfg["DepQuant"]:
        return ("IntraPred needs DepQuant 0: intra prediction predicts the levels of scalar "
                "quantization (docs/bitstream.md, \"Intra prediction\")")
    return ""


@dataclass(frozen=True)
class TensorClass:
    layer: LayerType
    signal: str
    arrangement: Arrangement
    tree_type: int        # TREE_TYPES value
    tree: TreeParams
    prob_window: int = 0  # [1.4] context estimator (ProbWindow, rule key window)


def _parse_globs(text: str, key: str, problems: list[str]) -> list[tuple[str, str]]:
    rules = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        if "=" not in part:
            problems.append(f"{key}: rule '{part}' is not 'glob=value'")
            continue
        pattern, value = (x.strip() for x in part.split("=", 1))
        if not pattern or not value:
            problems.append(f"{key}: rule '{part}' has an empty side")
            continue
        rules.append((pattern, value))
    return rules


def _parse_class_rules(text: str, problems: list[str]) -> list[tuple[str, str, dict[str, str]]]:
    rules = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        if ":" not in part:
            problems.append(f"ClassRules: rule '{part}' is not 'selector: key=value, ...'")
            continue
        selector, body = (x.strip() for x in part.split(":", 1))
        layer, _, signal = selector.partition("/")
        layer, signal = layer.strip() or "*", signal.strip() or "*"
        if layer != "*" and layer not in LAYER_BY_LABEL:
            problems.append(f"ClassRules: unknown layer type '{layer}' "
                            f"(one of {', '.join(LAYER_BY_LABEL)})")
        settings: dict[str, str] = {}
        for item in filter(None, (x.strip() for x in body.split(","))):
            k, eq, v = item.partition("=")
            k, v = k.strip(), v.strip()
            if not eq or k not in _RULE_KEYS:
                problems.append(f"ClassRules: '{item}' in '{selector}' is not one of "
                                f"{', '.join(sorted(_RULE_KEYS))} = value")
                continue
            settings[k] = v
        rules.append((layer, signal, settings))
    return rules


class Classifier:
    """Resolves each tensor's class from a Config; validates every rule up front."""

    @classmethod
    def problems(cls, cfg: Config) -> list[str]:
        """Every problem of the class rules and the global tree keys (empty if none)."""
        found: list[str] = []
        cls(cfg, found)
        return found

    def __init__(self, cfg: Config, problems_out: list[str] | None = None) -> None:
        """Raises ConfigError on any problem, or appends them to ``problems_out``."""
        problems: list[str] = []
        self.layer_rules = _parse_globs(str(cfg["LayerRules"]), "LayerRules", problems)
        for _, value in self.layer_rules:
            if value not in LAYER_BY_LABEL:
                problems.append(f"LayerRules: unknown layer type '{value}'")
        self.signal_rules = _parse_globs(str(cfg["SignalRules"]), "SignalRules", problems)
        self.class_rules = _parse_class_rules(str(cfg["ClassRules"]), problems)
        self.base = self._settings(cfg, {}, problems, "global keys")
        for layer, signal, settings in self.class_rules:
            self._settings(cfg, settings, problems, f"ClassRules '{layer}/{signal}'")
        if problems_out is not None:
            problems_out.extend(problems)
        elif problems:
            raise ConfigError("invalid tensor class rules:\n  " + "\n  ".join(problems))
        self.cfg = cfg
        self.signals: list[str] = ["default"]
        for _, value in self.signal_rules:
            if value not in self.signals:
                self.signals.append(value)

    @staticmethod
    def _settings(cfg: Config, over: dict[str, str], problems: list[str],
                  where: str) -> tuple[Arrangement, int, TreeParams, int]:
        def num(key: str, cfg_key: str) -> int:
            if key not in over:
                return int(cfg[cfg_key])
            try:
                return int(over[key])
            except ValueError:
                problems.append(f"{where}: {key}={over[key]} is not an integer")
                return int(cfg[cfg_key])

        tree_name = over.get("tree", str(cfg["TreeType"]))
        if tree_name not in TREE_TYPES:
            problems.append(f"{where}: tree={tree_name} is not one of {', '.join(TREE_TYPES)}")
            tree_name = "none"
        arr_name = over.get("arrangement", str(cfg["Arrangement"]))
        if arr_name not in ARRANGEMENTS:
            problems.append(f"{where}: arrangement={arr_name} is not one of "
                            f"{', '.join(ARRANGEMENTS)}")
            arr_name = "rows"
        glob = where == "global keys"
        before = len(problems)

        def size(key: str, cfg_key: str) -> int:
            # a global key is reported by its cfg name, once: a rule that inherits a bad
            # global value does not report it again
            found: list[str] = []
            value = _log2(num(key, cfg_key), cfg_key if glob else f"{where}: {key}", found)
            if found and (glob or key in over):
                problems.extend(found)
            return value

        ctu = size("ctu", "CTUSize")
        minqt = size("minqt", "MinQTSize")
        mincu = size("mincu", "MinCUSize")
        sizes_ok = len(problems) == before
        mtt = num("mtt", "MaxMTTDepth")
        window = num("window", "ProbWindow")
        if not 0 <= window <= MAX_PROB_WINDOW:
            problems.append(f"{where}: window must be 0..{MAX_PROB_WINDOW}")
            window = 0
        tree_type = TREE_TYPES[tree_name]
        if tree_type and sizes_ok:  # no follow-on problems of a size that is already bad
            if not 1 <= ctu <= 7:
                problems.append(f"{where}: CTU size must be 2..128")
            if not mincu <= minqt <= ctu:
                problems.append(f"{where}: need MinCUSize <= MinQTSize <= CTUSize")
            if not 0 <= mtt <= 4:
                problems.append(f"{where}: MaxMTTDepth must be 0..4")
        tree = TreeParams(
            enabled=tree_type != 0,
            log2_ctu_size=ctu,
            log2_min_qt_size=minqt,
            max_mtt_depth=mtt if tree_type >= 2 else 0,
            log2_min_cu_size=mincu,
            split_mask=TREE_SPLIT_MASK[tree_type],
            skip_enabled=bool(cfg["SkipCU"]),
            cu_qp_delta_enabled=bool(cfg["CUQPDelta"]),
            intra_pred_enabled=bool(cfg["IntraPred"]) and tree_type != 0,
        )
        return ARRANGEMENTS[arr_name], tree_type, tree, window

    def classify(self, name: str, shape: tuple[int, ...]) -> TensorClass:
        layer = classify(name, shape)
        for pattern, value in self.layer_rules:
            if fnmatch.fnmatchcase(name, pattern):
                layer = LAYER_BY_LABEL[value]
                break
        signal = "default"
        for pattern, value in self.signal_rules:
            if fnmatch.fnmatchcase(name, pattern):
                signal = value
                break
        arrangement, tree_type, tree, window = self.base
        for rule_layer, rule_signal, settings in self.class_rules:
            if rule_layer in ("*", layer.label) and rule_signal in ("*", signal):
                arrangement, tree_type, tree, window = self._settings(self.cfg, settings, [], "")
                break
        if arrangement == Arrangement.KERNEL_TILES and (
                len(shape) != 4 or shape[2] * shape[3] <= 1):
            arrangement = Arrangement.ROWS  # tiles only for k x k kernels
        if not tree.enabled:
            tree = replace(TreeParams(), log2_ctu_size=0, log2_min_qt_size=0, log2_min_cu_size=0)
        return TensorClass(layer, signal, arrangement, tree_type, tree, window)
