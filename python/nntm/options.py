"""The option tables of the NNTM apps.

Data only; the machinery is in :mod:`nntm.config`.

To add a key, add one :class:`~nntm.config.Option` row to the right tuple
below: cfg parsing, ``--Key=value``, validation, ``--help`` and
``Config.to_cfg_text()`` all follow from the table.  Put options that change
the bitstream in group "coding" and file names / app behaviour in group "app".
"""

from __future__ import annotations

from .config import Option

__all__ = [
    "DECODER_OPTIONS",
    "ENCODER_APP_OPTIONS",
    "ENCODER_CODING_OPTIONS",
    "ENCODER_OPTIONS",
    "THREADS",
    "VERBOSE",
]

#: Shared by the encoder and the decoder.
VERBOSE = Option(
    "Verbose",
    "int",
    1,
    "0: errors only, 1: a summary, 2: per-tensor details",
    minimum=0,
    maximum=2,
    group="app",
)

THREADS = Option(
    "Threads",
    "int",
    0,
    "threads that code (decode) at once: tensors one a thread, and a large tensor's "
    "entry-point substreams on the threads the others leave free; rate control's sampled "
    "encodes too (the bytes are the same for any number); 0: all cores",
    minimum=0,
    maximum=1024,
    group="app",
)

ENCODER_APP_OPTIONS: tuple[Option, ...] = (
    Option(
        "InputFile",
        "str",
        "",
        "model to encode (.safetensors, .npz, .npy, .pt/.pth, .onnx; a sharded checkpoint's "
        "model.safetensors.index.json or its folder); empty: the bundled example model",
        short="-i",
        group="app",
    ),
    THREADS,
    Option("BitstreamFile", "str", "", "bitstream file to write", short="-b", group="app"),
    Option(
        "ImportanceFile",
        "str",
        "",
        "importance maps (.safetensors/.npz, docs/importance.md) weighting the distortion; "
        "empty: none",
        group="app",
    ),
    Option(
        "TargetBitsPerParam",
        "float",
        0.0,
        "rate control: code the model at this many bits per float parameter (the QP is "
        "found from a sampled pre-encode; QP is the starting point); 0: off",
        minimum=0.0,
        maximum=64.0,
        group="app",
    ),
    Option(
        "TargetSize",
        "str",
        "",
        "rate control: code the model into this many bytes (K/M/G suffixes, powers of 1024); "
        "empty: off",
        group="app",
    ),
    Option(
        "TargetSNR",
        "float",
        0.0,
        "rate control: code the model at the coarsest QP whose weight SNR (dB, pooled over "
        "the float tensors) meets this; with ImportanceFile the importance-weighted SNR, the "
        "maps' estimate of the output's; 0: off",
        minimum=0.0,
        maximum=200.0,
        group="app",
    ),
    Option(
        "ReconFile",
        "str",
        "",
        "reconstructed model to write (format by extension); empty: none",
        short="-o",
        group="app",
    ),
    Option(
        "RefModel",
        "str",
        "",
        "reference model the receiver already holds (a model update is coded against it, "
        "InterPred); empty: none",
        group="app",
    ),
    VERBOSE,
)

ENCODER_CODING_OPTIONS: tuple[Option, ...] = (
    Option(
        "QP",
        "int",
        -28,
        "quantization parameter: the step size doubles every 2**QPDensity steps",
        minimum=-128,
        maximum=127,
    ),
    Option(
        "QPDensity",
        "int",
        2,
        "2**QPDensity QP steps per doubling of the step size",
        minimum=0,
        maximum=6,
    ),
    Option(
        "QPOffset1D",
        "int",
        -8,
        "added to QP for 1-D tensors (biases, norms)",
        minimum=-64,
        maximum=64,
    ),
    Option(
        "QP1DMode",
        "choice",
        "offset",
        "QP of 1-D tensors: offset (QP + QPOffset1D), fixed (QP1D, whatever QP is), or stats "
        "(QP1D for BatchNorm statistics, found by nntm.roles from the graph, the state-dict "
        "structure or the values: roles bn-mean, bn-var, bn-param; offset for the others), or "
        "relative (step relative to each tensor's rms: QP1DRelStats for the BatchNorm "
        "statistics, QP + QP1DRelOffset for the others; nntm.precision)",
        choices=("offset", "fixed", "stats", "relative"),
    ),
    Option(
        "QP1DRelStats",
        "int",
        -28,
        "QP1DMode relative: BatchNorm statistics at step scale * 2^(q / 2^QPDensity), q = "
        "min(QP1DRelStats, QP + QP1DRelStatsOffset): never coarser than QP1DRelStats",
        minimum=-128,
        maximum=127,
    ),
    Option(
        "QP1DRelStatsOffset",
        "int",
        0,
        "QP1DMode relative: BatchNorm statistics at q = min(QP1DRelStats, QP + "
        "QP1DRelStatsOffset) (finer with QP at high rates)",
        minimum=-128,
        maximum=127,
    ),
    Option(
        "QP1DRelVarQuantile",
        "float",
        0.1,
        "QP1DMode relative: a variance's scale is this quantile of its values (each value "
        "needs the same relative precision); 0: its rms like the other 1-D tensors",
        minimum=0.0,
        maximum=1.0,
    ),
    Option(
        "QP1DRelFloor",
        "float",
        1e-3,
        "QP1DMode relative: a 1-D tensor's scale is at least this times the median scale of "
        "the model's 1-D tensors (dead channels' statistics); 0: no floor",
        minimum=0.0,
        maximum=1.0,
    ),
    Option(
        "QP1DRelOffset",
        "int",
        4,
        "QP1DMode relative: other 1-D tensors at step rms * 2^((QP + QP1DRelOffset) / "
        "2^QPDensity)",
        minimum=-128,
        maximum=127,
    ),
    Option(
        "QP1D",
        "int",
        -64,
        "QP of every 1-D tensor when QP1DMode is fixed (-64: step 2^-16)",
        minimum=-128,
        maximum=127,
    ),
    Option("RDOQ", "bool", True, "rate-distortion optimised quantization"),
    Option(
        "ImportanceQPScale",
        "float",
        0.0,
        "with an importance map: move each tensor's QP by its mean importance (0 = off, 1 = full)",
        minimum=0.0,
        maximum=4.0,
    ),
    Option(
        "ImportanceQPMaxOffset",
        "int",
        0,
        "with ImportanceQPScale: largest |QP offset| a tensor's map may give it "
        "(0 = four step doublings)",
        minimum=0,
        maximum=64,
    ),
    Option(
        "ImportanceFloor",
        "float",
        0.0,
        "with an importance map: raise each weight's importance to at least this times its "
        "tensor's mean before the RD decisions (0 = off)",
        minimum=0.0,
        maximum=1.0,
    ),
    Option(
        "ImportanceMaxStep",
        "float",
        0.0,
        "with ImportanceQPScale: a demoted tensor's step may not exceed this times the RMS "
        "of its weights, though never below the base QP (rate-aware cap; 0 = off)",
        minimum=0.0,
        maximum=16.0,
    ),
    Option(
        "DepQuant",
        "bool",
        False,
        "dependent quantization: two quantizers, a 4-state machine, a trellis in the encoder",
    ),
    Option(
        "DQStates",
        "choice",
        "4",
        "states of dependent quantization: 4, 8 [format 1.4] or 32 [format 1.5] (finer "
        "trellises: 8 states about 0.25 % fewer bits at equal weight SNR than 4, 32 about "
        "0.3 % fewer than 8; the encoder's trellis 1.3x and about 2x slower)",
        choices=("4", "8", "32"),
    ),
    Option(
        "ProbWindow",
        "int",
        0,
        "context probability estimator [format 1.4]: 0 = dual-rate (rates 4 and 7, formats "
        "1.0-1.3); 1..12 = counting estimator that settles at adaptation rate 2^-ProbWindow "
        "(10 codes trained weights 1-2 % smaller)",
        minimum=0,
        maximum=12,
    ),
    Option(
        "SuffixCtx",
        "bool",
        False,
        "context-code the two most significant suffix bins of abs_remainder's Exp-Golomb code "
        "[format 1.5] (large levels, i.e. high rates: about 0.5 % fewer bits at 6-7 bit/param)",
    ),
    Option(
        "RowPred",
        "int",
        0,
        "row prediction [format 1.5]: each row of a raster-coded kernel tensor may be coded "
        "as its difference to an earlier row, decided per row by D + lambda R. 0 = off; "
        "1 = the row above (position embeddings); 2 = also the closest earlier row (a "
        "search over all earlier rows: rows that resemble other rows, as in word "
        "embeddings). Tensors with a coding tree use intra prediction instead",
        minimum=0,
        maximum=2,
    ),
    Option(
        "EntryPointElements",
        "int",
        0,
        "entry points [format 1.8]: a raster-coded kernel tensor of more than this many "
        "elements is coded as substreams of about this many elements (whole rows), each "
        "parsed on its own, so that one tensor decodes on several threads; 0 = off "
        "(one substream a tensor)",
        minimum=0,
        maximum=(1 << 31) - 1,
    ),
    Option(
        "IntegrityHash",
        "bool",
        True,
        "integrity hashes [format 1.6]: each hash unit also carries the MD5 of its tensor's "
        "parameter set (name, dtype, shape, coding parameters) and end_of_stream the MD5 of "
        "every unit before it, so no corrupted bit passes the decoder's checks unnoticed "
        "(16 bytes a tensor and 16 a stream). 0: tensor data MD5s only, as format 1.5",
    ),
    Option(
        "LambdaScale",
        "float",
        0.1,
        "factor on lambda (lambda follows step**2)",
        minimum=0.0,
        maximum=100.0,
    ),
    Option(
        "LambdaGainFloor",
        "float",
        0.0,
        "largest shrink toward zero the rate term may leave in a quantized tensor of two or "
        "more dimensions: where its reconstruction's gain <r,w>/<w,w> falls below "
        "1 - LambdaGainFloor, the tensor is coded again with half the lambda (after four "
        "halvings with none); encoder-only, nothing signalled. 0: off",
        minimum=0.0,
        maximum=1.0,
    ),
    Option(
        "ScaleQPExponent",
        "float",
        0.0,
        "a quantized tensor of two or more dimensions takes a step proportional to its RMS "
        "to this power: QP offset round(e * 2^QPDensity * log2(rms / ref)), ref the "
        "element-weighted geometric mean RMS of those tensors (so the mean log step stays); "
        "0: one step for all, 1: the same relative precision for all; encoder-only, each "
        "tensor's QP is signalled as always",
        minimum=0.0,
        maximum=1.0,
    ),
    Option(
        "ScaleQPMode",
        "choice",
        "both",
        "with ScaleQPExponent: both = offsets either way from the element-weighted geometric "
        "mean RMS (the mean log step stays); finer = only tensors below the element-weighted "
        "median RMS move, to finer steps (a floor on a tensor's relative precision)",
        choices=("both", "finer"),
    ),
    Option(
        "ScaleQPSlack",
        "float",
        0.0,
        "with ScaleQPMode finer: step doublings of relative precision a tensor may lie below "
        "the median before it moves (only tensors more than 2^slack below the median RMS)",
        minimum=0.0,
        maximum=8.0,
    ),
    Option(
        "ScaleQPMaxOffset",
        "int",
        16,
        "with ScaleQPExponent: largest |QP offset| a tensor's scale may give it",
        minimum=0,
        maximum=64,
    ),
    Option(
        "GainCompensation",
        "int",
        0,
        "passes of shrink compensation in a quantized tensor of two or more dimensions: "
        "where the rate term leaves its reconstruction's gain g = <r,w>/<w,w> below 1, the "
        "tensor is coded again from w / g (its reconstruction then keeps the tensor's scale "
        "instead of shrinking it toward zero); encoder-only, nothing signalled. 0: off",
        minimum=0,
        maximum=4,
    ),
    Option(
        "NumGtFlags",
        "int",
        4,
        "number of greater-than flags before the remainder",
        minimum=1,
        maximum=15,
    ),
    Option(
        "LosslessMaxElements",
        "int",
        1,
        "tensors with at most this many elements are carried losslessly",
        minimum=0,
        maximum=1 << 20,
    ),
    Option(
        "LosslessRoles",
        "str",
        "structural",
        "tensor roles (nntm.roles, space separated) carried exactly: structural = the shapes, "
        "scales, exponents and bounds a graph consumes (ONNX Reshape/Resize/Pad/Clip/Pow ... "
        "inputs), which a 1e-7 change would break; empty: none. Roles: conv, dw-conv, pw-conv, "
        "linear, embedding, bias, norm-scale, norm-shift, bn-mean, bn-var, bn-param, rnn-input, "
        "rnn-recurrent, rnn-state, rnn-peephole, structural, counter, integer, 1-D, scalar, "
        "other",
    ),
    Option(
        "NonFiniteWeights",
        "choice",
        "error",
        "what to do with a float tensor holding NaN or Inf: fail, or carry it losslessly",
        choices=("error", "lossless"),
    ),
    # ---- prediction (nntm.predict; docs/bitstream.md, "Prediction") ----
    Option(
        "InterPred",
        "bool",
        True,
        "with RefModel: predict each tensor from its namesake in the reference model when that "
        "leaves less residual energy",
    ),
    Option("PredScale", "bool", True, "fit a least-squares scale to each prediction (1/4096)"),
    Option(
        "PredLambdaScale",
        "float",
        0.0,
        "LambdaScale of predicted tensors (sparse residuals of model updates); 0: LambdaScale",
        minimum=0.0,
        maximum=100.0,
    ),
    Option(
        "PredQP1DMode",
        "choice",
        "offset",
        "QP of a predicted 1-D tensor: offset (QP + QPOffset1D, whatever QP1DMode says) or "
        "same (as other 1-D tensors)",
        choices=("offset", "same"),
    ),
    Option(
        "EarlierTensorPred",
        "bool",
        False,
        "a tensor may predict from the reconstruction of an earlier tensor of the same shape",
    ),
    # ---- tensor classes and the coding tree (nntm.classes; docs/bitstream.md) ----
    Option(
        "TreeType",
        "choice",
        "none",
        "tree partition type of every tensor that no ClassRules rule covers",
        choices=("none", "qt", "qtbt", "qtmtt"),
    ),
    Option("CTUSize", "int", 64, "CTU size (a power of two)", minimum=2, maximum=128),
    Option("MinQTSize", "int", 8, "smallest node a quad split may produce", minimum=1, maximum=128),
    Option("MaxMTTDepth", "int", 2, "binary/ternary splits below a QT leaf", minimum=0, maximum=4),
    Option("MinCUSize", "int", 2, "smallest CU side", minimum=1, maximum=128),
    Option("SkipCU", "bool", True, "all-zero (skip) CUs, with the tree"),
    Option("CUQPDelta", "bool", False, "a QP delta per coded CU, with the tree"),
    Option(
        "QPDeltaSearch",
        "intlist",
        (-2, 0, 2),
        "CU QP deltas the encoder tries when CUQPDelta is on (at most 8)",
        minimum=-64,
        maximum=64,
    ),
    Option(
        "IntraPred",
        "bool",
        False,
        "intra prediction of each coded CU's levels from earlier levels of the tensor (row mean, "
        "column mean, block copy), with the tree; not with DepQuant",
    ),
    Option(
        "IntraCopyRange",
        "int",
        4,
        "block vectors the encoder tries for intra block copy: |bv_x|, |bv_y| <= this",
        minimum=0,
        maximum=64,
    ),
    Option(
        "Preset",
        "choice",
        "medium",
        "encoder search effort for the tree: fast (depth 1), medium (3), slow (4, no early stop)",
        choices=("fast", "medium", "slow"),
    ),
    Option(
        "Arrangement",
        "choice",
        "rows",
        "kernel tensor of a k x k conv: rows (O x I*k*k) or tiles ((O*k) x (I*k))",
        choices=("rows", "tiles"),
    ),
    Option("LayerRules", "str", "", "glob=layer type; ... overriding the layer type by name"),
    Option("SignalRules", "str", "", "glob=signal type; ... naming input signal types"),
    Option(
        "ClassRules",
        "str",
        "",
        "layer[/signal]: tree=..,ctu=..,minqt=..,mtt=..,mincu=..,arrangement=..; ...",
    ),
    # ---- clustering-based quantization (nntm.cluster; docs/ce/CE2_clustering.md) ----
    Option(
        "Cluster",
        "int",
        0,
        "clustered coding of tensors with >= 2 dimensions: 0 off, 1 when it wins by RD cost "
        "against scalar coding, 2 always (where it applies)",
        minimum=0,
        maximum=2,
    ),
    Option(
        "ClusterPoint",
        "choice",
        "scalar",
        "what a point is: one weight, a kh*kw kernel, a whole filter, or the kernels across "
        "one input channel (scalar where the type does not apply)",
        choices=("scalar", "kernel", "filter", "inchannel"),
    ),
    Option("ClusterPointRules", "str", "",
           "glob or layer label=point type; ... (first match) over ClusterPoint"),
    Option(
        "ClusterSizes",
        "intlist",
        (4, 16, 64),
        "codebook sizes the encoder tries (chosen by RD cost; unused entries are dropped)",
        minimum=1,
        maximum=256,
    ),
    Option(
        "ClusterSubspaceAxis",
        "choice",
        "none",
        "split the tensor into subspaces along its output (out) or input (in) channels",
        choices=("none", "out", "in"),
    ),
    Option("ClusterSubspaces", "int", 1, "number of subspaces, each with its own codebook",
           minimum=1, maximum=64),
    Option("ClusterCodebookQPOffset", "int", 16,
           "codebook entries are integers at the step of QP - offset", minimum=0, maximum=64),
    Option("ClusterOutliers", "bool", False,
           "separate outliers and code them with a fine scalar quantizer"),
    Option(
        "OutlierMode",
        "choice",
        "spread",
        "outlier: RMS distance > OutlierThreshold x the cluster's RMS spread (spread), or the "
        "OutlierThreshold fraction of the points farthest from their cluster (fraction)",
        choices=("spread", "fraction"),
    ),
    Option("OutlierThreshold", "float", 4.0, "spread multiple or fraction (see OutlierMode)",
           minimum=0.0, maximum=1000.0),
    Option("OutlierQPOffset", "int", 4, "outliers are coded at the step of QP - offset",
           minimum=-64, maximum=64),
    Option(
        "OutlierPositions",
        "choice",
        "flags",
        "outlier positions: a context-coded flag per point, or run lengths between outliers",
        choices=("flags", "runs"),
    ),
    Option("ClusterResidual", "bool", False,
           "code a residual level per inlier value (step of QP + ClusterResidualQPOffset)"),
    Option("ClusterResidualQPOffset", "int", 0, "residual step: QP + offset",
           minimum=-64, maximum=64),
    Option("ClusterIterations", "int", 20, "k-means (Lloyd) iterations at most",
           minimum=1, maximum=1000),
    Option("ClusterMinElements", "int", 256, "smaller tensors are never clustered",
           minimum=1, maximum=1 << 30),
)

ENCODER_OPTIONS: tuple[Option, ...] = ENCODER_APP_OPTIONS + ENCODER_CODING_OPTIONS

DECODER_OPTIONS: tuple[Option, ...] = (
    Option("BitstreamFile", "str", "", "bitstream file to decode", short="-b", group="app"),
    Option(
        "OutputFile",
        "str",
        "",
        "decoded model to write; empty: decode and check hashes only",
        short="-o",
        group="app",
    ),
    Option(
        "OutputFormat",
        "choice",
        "auto",
        "auto: the input model's format recorded in the stream, else by the -o extension",
        choices=("auto", "safetensors", "npz", "onnx"),
        group="app",
    ),
    Option(
        "RefModel",
        "str",
        "",
        "reference model of a stream with predicted tensors (the model it was coded against)",
        group="app",
    ),
    Option(
        "MaxMemory",
        "str",
        "auto",
        "refuse a stream whose decode would need more memory than this, estimated from its "
        "parameter sets before anything is allocated: bytes, or with a K/M/G/T suffix "
        "(powers of 1024); auto: half of this machine's memory",
        group="app",
    ),
    Option(
        "MaxExpansion",
        "int",
        1 << 20,
        "refuse a stream whose tensors (those not predicted from --RefModel) decode to more "
        "than this many bytes per stream byte: a few bytes of skipped coding units can "
        "announce gigabytes of zeros (a decompression bomb); real models stay far below",
        minimum=1,
        maximum=1 << 40,
        group="app",
    ),
    Option(
        "MaxTensorElements",
        "int",
        1 << 28,
        "refuse tensors larger than this (a guard against tiny streams announcing huge tensors)",
        minimum=1,
        maximum=(1 << 31) - 1,
        group="app",
    ),
    Option(
        "Decoder",
        "choice",
        "c",
        "c: the C library's stream reader parses the units, decodes the tensors and checks "
        "every MD5 (nntm_stream.h, as nntm-dec); python: the Python reader (nntm.streaming, "
        "the independent reference path); c falls back to python, saying why, for a stream "
        "the C reader cannot take (a format newer than 1.8, a container without zlib)",
        choices=("c", "python"),
        group="app",
    ),
    THREADS,
    VERBOSE,
)
