"""Clustering-based quantization (tensor coding mode CLUSTERED, format 1.2).

Round trips of every point type, subspaces, outliers and residuals; exact
reconstruction (the decoder's integer arithmetic, checked against an
independent numpy model); corrupt and truncated payloads; determinism; the RD
mode decision; the format version rules.
"""

from __future__ import annotations

import nntm
import numpy as np
import pytest
from nntm import cluster, codec, core, hls
from nntm.errors import BitstreamError, ConfigError

ANCHOR = "cfg/encoder_anchor.cfg"


def _cfg(**over: object) -> nntm.Config:
    base = {"QP": -20, "Cluster": 2, "IntegrityHash": 0}  # format 1.2, not 1.6
    base.update(over)
    return nntm.Config.from_files([ANCHOR], overrides=base)


def _model(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    fc = rng.laplace(0, 0.05, (48, 96)).astype(np.float32)
    fc[3, 5], fc[40, 7] = 1.5, -2.0  # outliers
    return {
        "fc.weight": fc,
        "conv.weight": rng.normal(0, 0.1, (12, 6, 3, 3)).astype(np.float32),
        "fc.bias": rng.normal(0, 0.1, (48,)).astype(np.float32),
    }


def _round_trip(tensors: dict[str, np.ndarray], cfg: nntm.Config) -> codec.EncodeResult:
    res = codec.encode_with_recon(tensors, cfg)
    dec = nntm.decode(res.data)
    for name, rec in res.recon.items():
        assert dec[name].dtype == rec.dtype
        assert dec[name].tobytes() == rec.tobytes(), name
    return res


def _modes(res: codec.EncodeResult) -> dict[str, str]:
    return {s.name: s.mode for s in res.stats}


# ------------------------------------------------------------------ layout


@pytest.mark.parametrize("point", list(cluster.PointType))
@pytest.mark.parametrize("axis,parts", [(0, 1), (1, 3), (2, 2)])
def test_layout_is_a_permutation(point: cluster.PointType, axis: int, parts: int) -> None:
    shape = (6, 4, 3, 3)
    geo = cluster.layout(shape, point, axis, parts)
    assert sorted(geo.perm.tolist()) == list(range(int(np.prod(shape))))
    assert sum(n * d for n, d in zip(geo.num_points, geo.dims, strict=True)) == geo.perm.size
    assert len(geo.num_points) == parts


def test_layout_points() -> None:
    x = np.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2)
    kern = cluster.layout(x.shape, cluster.PointType.KERNEL, 0, 1)
    assert kern.dims == (4,) and kern.num_points == (6,)
    assert x.reshape(-1)[kern.perm].reshape(6, 4)[4].tolist() == x[1, 1].reshape(-1).tolist()
    inch = cluster.layout(x.shape, cluster.PointType.INCHANNEL, 0, 1)
    assert inch.dims == (8,) and inch.num_points == (3,)
    assert x.reshape(-1)[inch.perm].reshape(3, 8)[2].tolist() == x[:, 2].reshape(-1).tolist()
    filt = cluster.layout(x.shape, cluster.PointType.FILTER, 2, 3)  # input-channel subspaces
    assert filt.dims == (4, 4, 4) and filt.num_points == (2, 2, 2)
    with pytest.raises(ValueError):
        cluster.layout((5, 7), cluster.PointType.KERNEL, 0, 1)
    with pytest.raises(ValueError):
        cluster.layout((5, 7), cluster.PointType.SCALAR, 1, 6)


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize("over", [
    {},
    {"ClusterOutliers": 1},
    {"ClusterOutliers": 1, "OutlierPositions": "runs"},
    {"ClusterOutliers": 1, "OutlierMode": "fraction", "OutlierThreshold": 0.01},
    {"ClusterResidual": 1, "ClusterResidualQPOffset": 2},
    {"ClusterPoint": "kernel", "ClusterSizes": "8 32"},
    {"ClusterPoint": "filter", "ClusterSizes": "4"},
    {"ClusterPoint": "inchannel", "ClusterSizes": "3"},
    {"ClusterSubspaceAxis": "out", "ClusterSubspaces": 4, "ClusterOutliers": 1},
    {"ClusterSubspaceAxis": "in", "ClusterSubspaces": 3, "ClusterPoint": "kernel"},
    {"ClusterSizes": "1", "ClusterOutliers": 1, "OutlierMode": "fraction",
     "OutlierThreshold": 0.2},
])
def test_round_trip(over: dict[str, object]) -> None:
    res = _round_trip(_model(), _cfg(**over))
    modes = _modes(res)
    assert modes["fc.weight"] == "clustered" and modes["conv.weight"] == "clustered"
    assert modes["fc.bias"] == "quantized"  # 1-D tensors are never clustered
    units = hls.split_units(res.data)
    mps = hls.parse_model_parameter_set(units[0])
    assert (mps.version_minor, mps.tool_flags & hls.TOOL_CLUSTER) == (2, hls.TOOL_CLUSTER)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_round_trip_dtypes(dtype: str) -> None:
    t = {k: v.astype(hls.DTYPES[[d.name for d in hls.DTYPES].index(dtype)])
         for k, v in _model(1).items()}
    res = _round_trip(t, _cfg(ClusterOutliers=1, ClusterResidual=1))
    assert _modes(res)["fc.weight"] == "clustered"


def _tensor_params(res: codec.EncodeResult) -> list[hls.TensorParameterSet]:
    units = hls.split_units(res.data)
    mps = hls.parse_model_parameter_set(units[0])
    return [hls.parse_tensor_parameter_set(u, mps) for u in units
            if u.unit_type == hls.UnitType.TENSOR_PARAMETER_SET]


def test_reconstruction_is_the_integer_formula() -> None:
    """Decoded values = codebook integer * codebook step (+ residual), outliers = level *
    outlier step, rounded once to float32: checked against float64 arithmetic."""
    x = _model(2)["fc.weight"]
    st = cluster.settings(_cfg(ClusterOutliers=1, OutlierThreshold=3.0), "fc.weight",
                          "linear", x.shape)
    res = cluster.encode_tensor(x, None, st, -20, 2, 4, 0.1, 16, "fc")
    cb_step = core.step_size(-20 - st.codebook_qp_offset, 2)
    out_step = core.step_size(-20 - st.outlier_qp_offset, 2)
    geo = cluster.layout(x.shape, cluster.PointType.SCALAR, 0, 1)
    flat = np.empty(x.size)
    inl = res.labels >= 0
    assert (~inl).sum() >= 2  # the two planted outliers at least
    flat[inl] = res.info.codebooks[0][res.labels[inl], 0] * cb_step
    # outliers: the nearest level of the fine quantizer (exact in float64 here)
    vals = x.reshape(-1)[geo.perm].astype(np.float64)
    flat[~inl] = np.floor(np.abs(vals[~inl]) / out_step + 0.5) * np.sign(vals[~inl]) * out_step
    expect = np.empty(x.size, np.float32)
    expect[geo.perm] = flat.astype(np.float32)
    assert res.recon.reshape(-1).tobytes() == expect.tobytes()
    assert np.all(np.abs(res.recon.reshape(-1)[geo.perm][~inl] - vals[~inl]) <= out_step / 2)


def test_codebooks_are_in_the_parameter_set() -> None:
    res = _round_trip(_model(), _cfg(ClusterSizes="8"))
    tps = {t.name: t for t in _tensor_params(res)}
    c = tps["fc.weight"].cluster
    assert tps["fc.weight"].coding_mode == hls.CodingMode.CLUSTERED and c is not None
    assert c.codebooks[0].shape[1] == 1 and 1 <= c.codebooks[0].shape[0] <= 8
    assert list(c.codebooks[0][:, 0]) == sorted(c.codebooks[0][:, 0])  # scalar: ascending
    assert tps["fc.bias"].coding_mode == hls.CodingMode.QUANTIZED


def test_deterministic() -> None:
    for over in ({"ClusterOutliers": 1}, {"ClusterPoint": "kernel", "ClusterSizes": "16"}):
        a = codec.encode(_model(3), _cfg(**over))
        b = codec.encode(_model(3), _cfg(**over))
        assert a == b


def test_outliers_are_coded_finely() -> None:
    t = _model(4)
    res_off = codec.encode_with_recon(t, _cfg(ClusterSizes="4"))
    res_on = codec.encode_with_recon(t, _cfg(ClusterSizes="4", ClusterOutliers=1))
    err_off = abs(float(res_off.recon["fc.weight"][40, 7]) + 2.0)
    err_on = abs(float(res_on.recon["fc.weight"][40, 7]) + 2.0)
    assert err_on <= core.step_size(-24, 2) / 2 < err_off


# ------------------------------------------------------------------ mode decision


def test_rd_picks_scalar_when_clustering_does_not_pay() -> None:
    """A tiny codebook cannot compete with scalar coding at a fine QP: Cluster 1
    keeps scalar coding (and the 1.0 stream of the anchor), Cluster 2 forces it."""
    t = _model(5)
    cfg1 = _cfg(QP=-36, Cluster=1, ClusterSizes="2")
    res = codec.encode_with_recon(t, cfg1)
    assert set(_modes(res).values()) == {"quantized"}
    assert res.data == codec.encode(t, _cfg(QP=-36, Cluster=0))
    assert hls.parse_model_parameter_set(hls.split_units(res.data)[0]).version_minor == 0
    forced = codec.encode_with_recon(t, _cfg(QP=-36, Cluster=2, ClusterSizes="2"))
    assert _modes(forced)["fc.weight"] == "clustered"
    assert len(forced.data) < len(res.data)


def test_rd_cost_decides() -> None:
    x = _model(6)["fc.weight"]
    cfg = _cfg(Cluster=1, ClusterSizes="2 64")
    st = cluster.settings(cfg, "fc.weight", "linear", x.shape)
    tps = hls.TensorParameterSet(0, "fc.weight", x.dtype, x.shape, hls.CodingMode.QUANTIZED,
                                 rows=48, cols=96, qp=-20, qp_density=2, num_gt_flags=4)
    scalar = core.encode_kernel(x, core.KernelParams(48, 96, -20, 2, 4), x.dtype, True, 0.1, "x")
    bits = 8 * (len(hls.tensor_parameter_set(tps)) + len(hls.tensor_data_unit(0, scalar.payload)))
    d = cluster.choose(x, None, st, tps, 0, bits, scalar.recon, 0.1, "x")
    assert set(d.cluster_costs) == {2, 64}
    assert d.cluster_costs[2] > d.scalar_cost  # two entries lose
    best = min(d.cluster_costs.values())
    assert (d.clustered is not None) == (best < d.scalar_cost)
    # importance-weighted distortion enters the decision
    imp = np.ones_like(x)
    imp[:, :10] = 50.0
    d2 = cluster.choose(x, imp, st, tps, 0, bits, scalar.recon, 0.1, "x")
    assert d2.scalar_cost > d.scalar_cost


def test_importance_changes_the_clustering() -> None:
    x = _model(7)["fc.weight"]
    st = cluster.settings(_cfg(), "fc.weight", "linear", x.shape)
    a = cluster.encode_tensor(x, None, st, -16, 2, 4, 0.1, 8, "x")
    imp = np.ones_like(x)
    imp[x > 0.05] = 100.0
    b = cluster.encode_tensor(x, imp, st, -16, 2, 4, 0.1, 8, "x")
    assert not np.array_equal(a.info.codebooks[0], b.info.codebooks[0])
    ea = np.sum((x - a.recon)[x > 0.05] ** 2)
    eb = np.sum((x - b.recon)[x > 0.05] ** 2)
    assert eb < ea


# ------------------------------------------------------------------ errors


def _clustered_payload() -> tuple[hls.TensorParameterSet, bytes]:
    x = _model(8)["fc.weight"]
    st = cluster.settings(_cfg(ClusterOutliers=1), "fc.weight", "linear", x.shape)
    res = cluster.encode_tensor(x, None, st, -20, 2, 4, 0.1, 16, "x")
    tps = hls.TensorParameterSet(0, "fc.weight", x.dtype, x.shape, hls.CodingMode.CLUSTERED,
                                 qp=-20, qp_density=2, num_gt_flags=4, cluster=res.info)
    return tps, res.payload


def test_truncated_and_corrupt_payloads_fail_cleanly() -> None:
    tps, payload = _clustered_payload()
    assert cluster.decode_tensor(tps, payload, "t").shape == (48, 96)
    with pytest.raises(BitstreamError, match="truncated|corrupt"):
        cluster.decode_tensor(tps, payload[: len(payload) // 2], "t")
    with pytest.raises(BitstreamError, match="corrupt"):
        cluster.decode_tensor(tps, payload + b"\0", "t")
    rng = np.random.default_rng(0)
    failures = 0
    for _ in range(200):
        b = bytearray(payload)
        b[int(rng.integers(len(b)))] ^= 1 << int(rng.integers(8))
        try:
            cluster.decode_tensor(tps, bytes(b), "t")
        except BitstreamError:
            failures += 1
    assert failures > 0  # most flips decode to other values; some must be caught


def test_codebook_index_out_of_range_is_corrupt() -> None:
    """A scalar codebook index beyond the codebook (signed delta) is refused."""
    tps, payload = _clustered_payload()
    assert tps.cluster is not None
    small = hls.ClusterInfo(**{**tps.cluster.__dict__, "codebooks": [tps.cluster.codebooks[0][:2]]})
    tps2 = cluster.cluster_tps(tps, small)
    with pytest.raises(BitstreamError, match="corrupt|truncated"):
        cluster.decode_tensor(tps2, payload, "t")


def test_stream_rules() -> None:
    data = codec.encode(_model(), _cfg())
    b = bytearray(data)
    b[10] = 1  # version_minor 1: CLUSTERED not allowed
    with pytest.raises(BitstreamError, match="need format 1.2"):
        nntm.decode(bytes(b))
    b = bytearray(data)
    b[5 + 4 + 3 + 3] &= ~hls.TOOL_CLUSTER & 0xFF  # tool flag cleared
    with pytest.raises(BitstreamError, match="CLUSTERED needs TOOL_CLUSTER"):
        nntm.decode(bytes(b))


def test_bad_cfg() -> None:
    with pytest.raises(ConfigError):
        codec.encode(_model(), _cfg(ClusterSubspaces=2))
    with pytest.raises(ConfigError):
        codec.encode(_model(), _cfg(ClusterPointRules="conv=blob"))
    with pytest.raises(ConfigError):
        codec.encode(_model(), _cfg(OutlierMode="fraction", OutlierThreshold=0.9))


def test_c_argument_checks() -> None:
    from nntm._nntm_c import ffi, lib

    p = ffi.new("nntm_cluster_params *")
    out = ffi.new("float[4]")
    book = ffi.new("int32_t[1]")
    assert lib.nntm_decode_cluster(p, book, ffi.NULL, 0, 0, out, ffi.NULL) == lib.NNTM_ERR_ARG
    p.num_subspaces, p.num_gt_flags, p.num_points[0], p.dims[0] = 1, 4, 4, 1
    p.codebook_size[0], p.row_points[0] = 1, 4
    assert lib.nntm_decode_cluster(p, book, ffi.NULL, 0, 0, out, ffi.NULL) != lib.NNTM_OK
    p.codebook_size[0] = 300
    assert lib.nntm_decode_cluster(p, book, ffi.NULL, 0, 0, out, ffi.NULL) == lib.NNTM_ERR_ARG


def test_the_suite_covers_every_cluster_tool() -> None:
    """The CLUSTER_* conformance streams (their features are checked on the decoded
    streams by tests/test_conformance.py) cover every clustered-mode syntax value."""
    from nntm import conformance

    suite = conformance.load_suite("conformance/suite.json")
    features = {f for s in suite.streams if s.name.startswith("CLUSTER_") for f in s.features}
    wanted = {
        "TOOL_CLUSTER", *(f"point_type {i} ({n})" for i, n in
                          enumerate(("scalar", "kernel", "filter", "inchannel"))),
        "subspace_axis 1 (output channels)", "subspace_axis 2 (input channels)",
        "outlier_pos_mode 0 (flags)", "outlier_pos_mode 1 (runs)", "outlier points",
        "vector outliers", "residual_enabled 1", "scalar codebook", "vector codebook",
        *(f"CLUSTERED {d}" for d in ("float32", "float16", "bfloat16", "float64")),
    }
    assert wanted <= features, sorted(wanted - features)


@pytest.mark.parametrize("point", list(cluster.PointType))
@pytest.mark.parametrize("axis,parts", [(0, 1), (1, 3), (2, 2)])
def test_geometry_matches_layout(point: cluster.PointType, axis: int, parts: int) -> None:
    shape = (6, 4, 3, 2)
    geo = cluster.layout(shape, point, axis, parts)
    assert cluster.geometry(shape, point, axis, parts) == (geo.num_points, geo.dims,
                                                          geo.row_points)


def test_huge_announced_tensor_is_refused_before_allocation() -> None:
    """A parameter set announcing a 2^31-element clustered tensor costs nothing to parse:
    the decoder's element limit refuses it before anything is allocated."""
    t = _model(9)
    data = codec.encode({"fc.weight": t["fc.weight"]}, _cfg(ClusterSizes="2"))
    units = hls.split_units(data)
    mps = hls.parse_model_parameter_set(units[0])
    tps = hls.parse_tensor_parameter_set(units[1], mps)
    assert tps.cluster is not None
    big = cluster.cluster_tps(tps, tps.cluster)
    big.shape = (1 << 15, (1 << 16) - 1)
    blob = hls.tensor_parameter_set(big, mps.tool_flags)
    forged = data[:units[1].offset] + blob + data[units[1].offset + 5 + len(units[1].payload):]
    with pytest.raises(BitstreamError, match="limit"):
        nntm.decode(forged)


def test_encoder_app_reports_clustered_tensors(tmp_path: object,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    from nntm.apps import decoder, encoder

    bit = Path(str(tmp_path)) / "m.bit"
    assert encoder.main(["-c", ANCHOR, "--QP=-8", "--Cluster=2", "-b", str(bit),
                         "--Verbose=2"]) == 0
    out = capsys.readouterr().out
    line = [ln for ln in out.splitlines() if ln.startswith("conv2.weight")][0]
    assert line.split()[3] == "C"
    assert decoder.main(["-b", str(bit)]) == 0
    assert "all 8 MD5s OK" in capsys.readouterr().out
