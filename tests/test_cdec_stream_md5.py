"""nntm-dec checks the stream MD5 [1.6] once, whatever the thread count.

The worker streams of nntm-dec (one a thread after the first) are opened without the stream
MD5 (nntm_stream_settings.skip_stream_md5): the first stream checks it.  A stream whose only change
is its stored stream MD5 must still be refused with any --threads, and an intact one pass.
Skipped when build/nntm-dec is not built.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NNTM_DEC = Path(os.environ.get("NNTM_DEC", ROOT / "build" / "nntm-dec"))

pytestmark = pytest.mark.skipif(not NNTM_DEC.is_file(),
                                reason=f"{NNTM_DEC} not built (cmake --build build)")


def _run(bitstream: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(NNTM_DEC), "-b", str(bitstream), "-v", *extra],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("threads", ["1", "2", "3"])
def test_stream_md5_checked_with_any_threads(tmp_path: Path, threads: str) -> None:
    bit = ROOT / "bitstreams" / "INTEGRITY_A_1.bit"  # 17 tensors, a stream MD5
    good = _run(bit, "--threads", threads)
    assert good.returncode == 0, good.stderr
    assert "stream MD5" in good.stdout and "MISMATCH" not in good.stdout
    data = bytearray(bit.read_bytes())
    data[-1] ^= 0x01  # the last byte of end_of_stream's stream_md5: nothing else changes
    bad = tmp_path / "bad.bit"
    bad.write_bytes(bytes(data))
    out = tmp_path / "out.safetensors"
    proc = _run(bad, "--threads", threads, "-o", str(out))
    assert proc.returncode == 1
    assert "stream MD5 mismatch" in proc.stderr
    assert not out.exists()
