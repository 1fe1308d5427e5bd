"""Tests of nntm.config (cfg machinery) and nntm.options (the option tables)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nntm.config import Config, Option, format_help, parse_app_args
from nntm.errors import ConfigError, NntmError
from nntm.options import DECODER_OPTIONS, ENCODER_OPTIONS

TABLE = (
    Option("InputFile", "str", "", "input", short="-i", group="app"),
    Option("Verbose", "int", 1, "verbosity", minimum=0, maximum=2, group="app"),
    Option("QP", "int", -28, "qp", minimum=-128, maximum=127),
    Option("RDOQ", "bool", True, "rdoq"),
    Option("LambdaScale", "float", 1.0, "lambda", minimum=0.0, maximum=100.0),
    Option("Mode", "choice", "fast", "mode", choices=("fast", "slow")),
    Option("Sizes", "intlist", (4, 8), "sizes", minimum=1, maximum=64),
)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def problems_of(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    lines = str(exc.value).splitlines()
    return [line.strip() for line in (lines[1:] if len(lines) > 1 else lines)]


# -- defaults and layering --------------------------------------------------------


def test_defaults_are_typed() -> None:
    cfg = Config.defaults(TABLE)
    assert dict(cfg) == {
        "InputFile": "",
        "Verbose": 1,
        "QP": -28,
        "RDOQ": True,
        "LambdaScale": 1.0,
        "Mode": "fast",
        "Sizes": (4, 8),
    }
    assert type(cfg["QP"]) is int
    assert type(cfg["RDOQ"]) is bool
    assert type(cfg["LambdaScale"]) is float
    assert cfg.source("QP") == "default"


def test_layering_defaults_files_command_line(tmp_path: Path) -> None:
    a = write(tmp_path, "a.cfg", "QP : -10\nVerbose : 2\nMode : slow\n")
    b = write(tmp_path, "b.cfg", "QP : -20   # later file wins\nRDOQ : 0\n")
    cfg = Config.from_files([a, b], {"RDOQ": "yes", "LambdaScale": 2}, table=TABLE)
    assert cfg["QP"] == -20  # b over a
    assert cfg["Verbose"] == 2  # a over default
    assert cfg["Mode"] == "slow"
    assert cfg["RDOQ"] is True  # command line over b
    assert cfg["LambdaScale"] == 2.0
    assert cfg["Sizes"] == (4, 8)  # default
    assert cfg.source("QP") == f"{b}:1"
    assert cfg.source("RDOQ") == "command line"
    # the other file order gives the other answer
    assert Config.from_files([b, a], table=TABLE)["QP"] == -10


def test_default_table_is_encoder() -> None:
    cfg = Config.from_files()
    assert list(cfg) == [o.key for o in ENCODER_OPTIONS]
    assert cfg["QP"] == -28
    assert cfg["NonFiniteWeights"] == "error"


def test_cfg_syntax(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "s.cfg",
        "# a comment\n\n   \n  QP:5#tight\n"
        "InputFile :    C:/models/x.npz  # value with a colon\n"
        "Sizes : 1, 2 3,4\n"
        "Mode : SLOW\n",
    )
    cfg = Config.from_files([path], table=TABLE)
    assert cfg["QP"] == 5
    assert cfg["InputFile"] == "C:/models/x.npz"
    assert cfg["Sizes"] == (1, 2, 3, 4)
    assert cfg["Mode"] == "slow"  # case-insensitive, canonical spelling


def test_empty_str_value(tmp_path: Path) -> None:
    path = write(tmp_path, "e.cfg", "InputFile :\n")
    cfg = Config.from_files([path], {"Sizes": ""}, table=TABLE)
    assert cfg["InputFile"] == ""
    assert cfg["Sizes"] == ()


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", True),
        ("0", False),
        ("true", True),
        ("FALSE", False),
        ("Yes", True),
        ("no", False),
        ("ON", True),
        ("off", False),
    ],
)
def test_bool_parsing(text: str, value: bool) -> None:
    assert Config.from_files((), {"RDOQ": text}, table=TABLE)["RDOQ"] is value


@pytest.mark.parametrize("text", ["2", "maybe", "", "tru"])
def test_bad_bool(text: str) -> None:
    with pytest.raises(ConfigError, match="RDOQ"):
        Config.from_files((), {"RDOQ": text}, table=TABLE)


def test_typed_overrides() -> None:
    cfg = Config.from_files(
        (), {"QP": 3, "RDOQ": False, "LambdaScale": 3, "Sizes": [2, 16]}, table=TABLE
    )
    assert cfg["QP"] == 3
    assert cfg["RDOQ"] is False
    assert cfg["LambdaScale"] == 3.0 and type(cfg["LambdaScale"]) is float
    assert cfg["Sizes"] == (2, 16)
    with pytest.raises(ConfigError, match="expected an integer"):
        Config.from_files((), {"QP": 2.5}, table=TABLE)
    with pytest.raises(ConfigError, match="expected an integer"):
        Config.from_files((), {"QP": True}, table=TABLE)
    with pytest.raises(ConfigError, match="expected a string"):
        Config.from_files((), {"InputFile": 3}, table=TABLE)
    with pytest.raises(ConfigError, match="finite"):
        Config.from_files((), {"LambdaScale": "nan"}, table=TABLE)


# -- validation -----------------------------------------------------------------------


def test_unknown_key_suggests_nearest(tmp_path: Path) -> None:
    path = write(tmp_path, "foo.cfg", "# header\nQP : 1\nQp : 3\n")
    with pytest.raises(ConfigError) as exc:
        Config.from_files([path], table=TABLE)
    assert str(exc.value) == f"unknown key 'Qp' in {path}:3 (did you mean 'QP'?)"
    with pytest.raises(ConfigError, match=r"'LambdaScael'.*did you mean 'LambdaScale'"):
        Config.from_files((), {"LambdaScael": 1}, table=TABLE)
    with pytest.raises(ConfigError) as exc:
        Config.from_files((), {"Zzzzzz": 1}, table=TABLE)
    assert "did you mean" not in str(exc.value)


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    good = write(tmp_path, "good.cfg", "QP : 1\n")
    bad = write(
        tmp_path,
        "bad.cfg",
        "Qp : 3\nVerbose : 7\nQP : abc\nno colon here\nMode : turbo\nSizes : 4 0\n",
    )
    missing = str(tmp_path / "missing.cfg")
    with pytest.raises(ConfigError) as exc:
        Config.from_files([good, bad, missing], {"LambdaScale": "-1", "Rdoq": "1"}, table=TABLE)
    text = str(exc.value)
    assert text.startswith("9 configuration problems:")
    probs = problems_of(exc)
    assert len(probs) == 9
    assert probs[0] == f"unknown key 'Qp' in {bad}:1 (did you mean 'QP'?)"
    assert probs[1] == f"Verbose in {bad}:2: 7 is out of range 0..2"
    assert probs[2] == f"bad value 'abc' for QP in {bad}:3: expected an integer"
    assert probs[3].startswith(f"{bad}:4: expected 'Key : value'")
    assert probs[4] == (f"bad value 'turbo' for Mode in {bad}:5: expected one of fast, slow")
    assert probs[5] == f"Sizes in {bad}:6: 0 is out of range 1..64"
    assert probs[6] == f"cannot read cfg file '{missing}': no such file"
    # overrides come after the files
    assert "LambdaScale on the command line: -1.0 is out of range" in text
    assert "unknown key 'Rdoq' on the command line (did you mean 'RDOQ'?)" in text


def test_config_error_is_nntm_error() -> None:
    assert issubclass(ConfigError, NntmError)


def test_option_parse() -> None:
    qp = TABLE[2]
    assert qp.parse("-5") == -5
    assert qp.parse(np.int16(7)) == 7 and type(qp.parse(np.int16(7))) is int
    assert TABLE[3].parse(np.True_) is True
    assert TABLE[6].parse(np.array([2, 3])) == (2, 3)
    assert qp.parse("0x10") == 16
    with pytest.raises(ConfigError, match=r"^QP in x.cfg:1: 300 is out of range -128..127$"):
        qp.parse("300", "in x.cfg:1")


def test_bad_default_fails_at_definition() -> None:
    with pytest.raises(ConfigError, match="default"):
        Option("X", "int", 300, "x", minimum=0, maximum=255)
    with pytest.raises(ConfigError, match="kind"):
        Option("X", "integer", 3, "x")
    with pytest.raises(ConfigError, match="choice"):
        Option("X", "choice", "a", "x")
    with pytest.raises(ConfigError, match="twice"):
        Config.defaults((Option("X", "int", 1, "x"), Option("X", "int", 2, "y")))


# -- Config object --------------------------------------------------------------------


def test_replace_equality_and_hash() -> None:
    cfg = Config.defaults(TABLE)
    other = cfg.replace(QP=4, Mode="slow")
    assert other["QP"] == 4 and other["Mode"] == "slow"
    assert cfg["QP"] == -28  # unchanged
    assert other != cfg
    assert other == Config.from_files((), {"QP": "4", "Mode": "slow"}, table=TABLE)
    assert hash(other) == hash(cfg.replace(QP=4, Mode="slow"))
    assert other.source("QP") == "replace()"
    with pytest.raises(ConfigError) as exc:
        cfg.replace(QP=500, Qpp=1)
    assert len(problems_of(exc)) == 2
    assert "did you mean 'QP'" in str(exc.value)


def test_mapping_interface() -> None:
    cfg = Config.defaults(TABLE)
    assert cfg.get("QP") == -28
    assert cfg.get("Nope") is None
    assert "QP" in cfg and "Nope" not in cfg
    assert list(cfg.items())[0] == ("InputFile", "")
    assert len(cfg) == len(TABLE)
    with pytest.raises(KeyError, match="did you mean 'QP'"):
        cfg["Qp"]
    with pytest.raises(TypeError):
        Config()


def test_coding_items() -> None:
    cfg = Config.defaults(TABLE)
    assert [k for k, _ in cfg.coding_items()] == [
        "QP",
        "RDOQ",
        "LambdaScale",
        "Mode",
        "Sizes",
    ]
    enc = Config.defaults(ENCODER_OPTIONS)
    keys = [k for k, _ in enc.coding_items()]
    assert "QP" in keys and "InputFile" not in keys and "Verbose" not in keys


def test_to_cfg_text_round_trip(tmp_path: Path) -> None:
    cfg = Config.defaults(TABLE).replace(
        QP=-3, RDOQ=False, LambdaScale=0.1, Sizes=(1, 64), InputFile="a b.npz"
    )
    text = cfg.to_cfg_text()
    for opt in TABLE:
        assert opt.key in text
    path = write(tmp_path, "out.cfg", text)
    assert Config.from_files([path], table=TABLE) == cfg
    with pytest.raises(ConfigError, match="cannot be written"):
        cfg.replace(InputFile="x#y").to_cfg_text()


@given(
    qp=st.integers(-128, 127),
    rdoq=st.booleans(),
    lam=st.floats(0.0, 100.0, allow_nan=False),
    sizes=st.lists(st.integers(1, 64), max_size=5),
    name=st.text(
        st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="#"),
        max_size=20,
    ).map(str.strip),
)
def test_to_cfg_text_round_trip_property(
    qp: int, rdoq: bool, lam: float, sizes: list[int], name: str
) -> None:
    cfg = Config.defaults(TABLE).replace(
        QP=qp, RDOQ=rdoq, LambdaScale=lam, Sizes=sizes, InputFile=name
    )
    assert Config.from_text(cfg.to_cfg_text(), table=TABLE) == cfg


def test_from_text() -> None:
    cfg = Config.from_text("QP : 9\n", "x.cfg", {"Verbose": 0}, table=TABLE)
    assert cfg["QP"] == 9 and cfg["Verbose"] == 0
    assert cfg.source("QP") == "x.cfg:1"
    with pytest.raises(ConfigError, match=r"^unknown key 'Q' in x.cfg:2"):
        Config.from_text("\nQ : 1", "x.cfg", table=TABLE)


# -- command line ---------------------------------------------------------------------


def test_parse_app_args_layering(tmp_path: Path) -> None:
    a = write(tmp_path, "a.cfg", "QP : -10\nVerbose : 2\nMode : slow\n")
    b = write(tmp_path, "b.cfg", "QP : -20\nRDOQ : 0\n")
    cfg, files = parse_app_args(
        ["-c", a, f"--config={b}", "--QP=7", "-i", "in.npz", "--RDOQ", "1", "--Mode", "fast"],
        TABLE,
        "prog",
        "desc",
    )
    assert files == [a, b]
    assert cfg["QP"] == 7  # --Key=value wins over both files
    assert cfg["Verbose"] == 2
    assert cfg["RDOQ"] is True
    assert cfg["Mode"] == "fast"
    assert cfg["InputFile"] == "in.npz"


def test_parse_app_args_values() -> None:
    cfg, files = parse_app_args(
        ["--QP", "-30", "--RDOQ", "--Sizes=2,4", "-i=x.npz", "--QP=-31"], TABLE, "p", "d"
    )
    assert files == []
    assert cfg["QP"] == -31  # later on the command line wins
    assert cfg["RDOQ"] is True  # bare bool
    assert cfg["Sizes"] == (2, 4)
    assert cfg["InputFile"] == "x.npz"
    cfg, _ = parse_app_args(["--RDOQ", "off", "--Verbose", "0"], TABLE, "p", "d")
    assert cfg["RDOQ"] is False and cfg["Verbose"] == 0


def test_parse_app_args_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_app_args(["--Qp=3", "positional", "--Nope", "5", "-x", "--QP"], TABLE, "p", "d")
    probs = problems_of(exc)
    assert probs[0] == "unknown key '--Qp' on the command line (did you mean '--QP'?)"
    assert probs[1].startswith("unexpected argument 'positional'")
    assert probs[2].startswith("unknown key '--Nope'")
    assert probs[3].startswith("unknown option '-x'")
    assert probs[4] == "option --QP on the command line needs a value"
    assert len(probs) == 5
    with pytest.raises(ConfigError, match="no such file"):
        parse_app_args(["-c", str(tmp_path / "none.cfg")], TABLE, "p", "d")


def test_help_lists_every_key(capsys: pytest.CaptureFixture[str]) -> None:
    for table in (ENCODER_OPTIONS, DECODER_OPTIONS, TABLE):
        with pytest.raises(SystemExit) as exc:
            parse_app_args(["--QP=1", "-h"], table, "nntm-x", "Does things.")
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert out == format_help(table, "nntm-x", "Does things.")
        assert out.startswith("usage: nntm-x")
        assert "Does things." in out
        for opt in table:
            assert f"--{opt.key}=" in out
            if opt.short:
                assert f"{opt.short}, --{opt.key}" in out
    text = format_help(ENCODER_OPTIONS, "p", "d")
    assert "range -128..127; default -28" in text
    assert "--NonFiniteWeights=error|lossless" in text
    assert "-c FILE" in text
    with pytest.raises(SystemExit):
        parse_app_args(["--help"], TABLE, "p", "d")
    capsys.readouterr()


def test_option_tables() -> None:
    enc = Config.defaults(ENCODER_OPTIONS)
    assert enc["QP"] == -28 and enc["QPDensity"] == 2 and enc["QPOffset1D"] == -8
    assert enc["RDOQ"] is True and enc["LambdaScale"] == 0.1 and enc["NumGtFlags"] == 4
    assert enc["LosslessMaxElements"] == 1 and enc["InputFile"] == ""
    dec = Config.defaults(DECODER_OPTIONS)
    assert dec["OutputFormat"] == "auto" and dec["OutputFile"] == ""
    groups = {o.key: o.group for o in ENCODER_OPTIONS}
    assert groups["InputFile"] == "app" and groups["QP"] == "coding"
    with pytest.raises(ConfigError, match="range -128..127|out of range"):
        enc.replace(QP=128)
    with pytest.raises(ConfigError, match="error, lossless"):
        enc.replace(NonFiniteWeights="warn")
    with pytest.raises(ConfigError, match="auto, safetensors, npz"):
        dec.replace(OutputFormat="pt")
