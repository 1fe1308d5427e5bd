#!/usr/bin/env bash
# Install NNCodec 2.1.3, the CE anchor (docs/ctc.md, "The anchor: NNCodec").
# Idempotent: re-running it installs nothing that is already there.
#
# NNCodec is an sdist with a C++ extension (pybind11): the first install
# compiles it (about 2 to 6 minutes on 2 cores).  Its declared requirements
# cannot all be met here (torchvision), so it is installed with --no-deps and
# the modules it really imports are installed by hand.  numpy is pinned to the
# version already installed (NNCodec 2.1.3 runs with numpy 2 on the path we
# use), so this never up- or downgrades numpy under the rest of the project.
#
# Usage: bash scripts/install_nncodec.sh      (PYTHON=python3.11 to pick another)
set -euo pipefail
PY="${PYTHON:-python3}"
cd "$(dirname "$0")/.."

pin="$(mktemp)"
trap 'rm -f "$pin"' EXIT
"$PY" - "$pin" <<'PYEOF'
import importlib.metadata as md
import sys

with open(sys.argv[1], "w") as f:
    try:
        f.write(f"numpy=={md.version('numpy')}\n")
    except md.PackageNotFoundError:
        pass
PYEOF

have() {
  "$PY" - "$1" "$2" <<'PYEOF'
import importlib.metadata as md
import sys

name, want = sys.argv[1], sys.argv[2]
try:
    got = md.version(name)
except md.PackageNotFoundError:
    sys.exit(1)
sys.exit(0 if want in ("", got) or got.startswith(want + "+") else 1)
PYEOF
}

if have nncodec 2.1.3; then
  echo "== nncodec 2.1.3 already installed"
else
  echo "== pip install --no-deps nncodec==2.1.3 (builds the C++ extension)"
  "$PY" -m pip install --no-deps "nncodec==2.1.3"
fi

# What nncodec.nn imports on the encode/decode path (torchvision is stubbed by
# nntm.ce.nncodec_anchor; ptflops, torchmetrics, wandb and tensorflow are only
# imported by code paths the CE does not use).
need=()
have torch 2.13.0 || need+=("torch==2.13.0")
for pkg in scikit-learn tqdm h5py pandas opencv-python-headless click; do
  have "$pkg" "" || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "== pip install ${need[*]}"
  "$PY" -m pip install -c "$pin" "${need[@]}"
else
  echo "== NNCodec's run-time dependencies already installed"
fi

echo "== checking that nncodec.nn imports (with the torchvision stub)"
# from outside the clone, so that the installed nntm is imported, not the unbuilt source tree
(cd / && "$PY" - <<'PYEOF'
try:
    from nntm.ce.nncodec_anchor import NNCodecAnchor
except ImportError as exc:
    raise SystemExit(f"nncodec is installed, but nntm does not import ({exc}): "
                     "run 'pip install .' in the clone, then this check again") from None

ok, why = NNCodecAnchor().available()
if not ok:
    raise SystemExit(f"NNCodec does not work: {why}")
print("NNCodec ready" + (f" ({why})" if why else ""))
PYEOF
)
