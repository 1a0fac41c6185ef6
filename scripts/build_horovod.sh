#!/usr/bin/env bash
# Build and install horovod 0.28.1 (TensorFlow + Gloo, CPU) into the current Python environment.
#
# horovod 0.28.1 is the last release and builds unpatched only against TF <= 2.18. Against TF 2.21 the only
# failing translation unit is horovod/tensorflow/xla_mpi_ops.cc (its XLA headers moved), and everything in it
# is GPU-only. We therefore patch the sdist so that file's `#if TENSORFLOW_VERSION >= 2006000000` block also
# requires HAVE_GPU; CPU builds then compile it to nothing.
#
# Usage:  scripts/build_horovod.sh            (uses $PYTHON, else .venv/bin/python, else python3)
# Idempotent: exits 0 immediately when `import horovod.tensorflow` already works.
set -euo pipefail

HOROVOD_VERSION="${HOROVOD_VERSION:-0.28.1}"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

if "$PYTHON" -c "import horovod.tensorflow" >/dev/null 2>&1; then
  echo "horovod.tensorflow already importable in $PYTHON; nothing to do."
  exit 0
fi

for tool in cmake g++ make; do
  command -v "$tool" >/dev/null || { echo "build_horovod.sh: '$tool' is required" >&2; exit 1; }
done
"$PYTHON" -c "import tensorflow" || { echo "build_horovod.sh: install tensorflow first" >&2; exit 1; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

"$PYTHON" -m pip download --no-binary :all: --no-deps -d "$WORK" "horovod==${HOROVOD_VERSION}"
tar -xzf "$WORK"/horovod-"${HOROVOD_VERSION}".tar.gz -C "$WORK"
SRC="$WORK/horovod-${HOROVOD_VERSION}"

# The one-line patch: guard the GPU-only XLA block. Fail loudly if the sdist does not look as expected.
XLA_CC="$SRC/horovod/tensorflow/xla_mpi_ops.cc"
GUARD='#if TENSORFLOW_VERSION >= 2006000000'
grep -qxF "$GUARD" "$XLA_CC" || { echo "build_horovod.sh: expected '$GUARD' in $XLA_CC" >&2; exit 1; }
sed -i "s|^${GUARD}\$|${GUARD} \&\& HAVE_GPU|" "$XLA_CC"
grep -qxF "${GUARD} && HAVE_GPU" "$XLA_CC"

export HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1
export HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1
export MAKEFLAGS="-j${HOROVOD_BUILD_JOBS:-$(nproc)}"
"$PYTHON" -m pip install --no-build-isolation --no-cache-dir "$SRC"

"$PYTHON" -c "import horovod.tensorflow as hvd; print('horovod', hvd.__version__ if hasattr(hvd, '__version__') else '', 'gloo built:', hvd.gloo_built())"
