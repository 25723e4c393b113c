#!/usr/bin/env bash
# Download, into .whl/, wheels of the packages the GPU machine lacks (it cannot download), at exactly the versions
# installed in this checkout's .venv, for its Python 3.12 on x86-64 Linux. benchmarks/gpu_check.sh installs them.
# A package published only as a source archive (antlr4-python3-runtime 4.9.3, pure Python) is built into a
# py3-none-any wheel here instead.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV_PY=${VENV_PY:-.venv/bin/python}
# what the GPU image lacks among bench's needs (its own package list: torch, lightning, torchmetrics, sklearn, scipy,
# matplotlib, h5py, rich, pyyaml, requests, opt-einsum, tqdm are there)
PACKAGES=(torchattacks hydra-core omegaconf antlr4-python3-runtime mnist1d pyro-ppl pyro-api)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo '/.whl/' >> .git/info/exclude; }
mkdir -p .whl
platform_args=()
for p in "${PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done
for name in "${PACKAGES[@]}"; do
  version=$("$VENV_PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
  if ls .whl 2>/dev/null | grep -qi "^$(echo "$name" | tr - _)-${version}-"; then
    echo "have $name==$version"
    continue
  fi
  if ! "$VENV_PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      "${platform_args[@]}" -d .whl "$name==$version"; then
    echo "no wheel of $name==$version on the index: building one from its source archive (pure Python)"
    "$VENV_PY" -m pip wheel -q --no-deps --no-binary=:all: -w .whl "$name==$version"
  fi
done
ls -la .whl
du -sh .whl
