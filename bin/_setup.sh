# Sourced by bin/demo and bin/test: create .venv and install what fer3d needs.
# Works on a fresh machine with only Python 3.10+; installs system packages with
# apt-get when run as root. Re-running is cheap: a stamp skips work already done.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
EXTRAS="${FER3D_EXTRAS:-train,dlib,test,fast,cam,ray,tensorboard,onnx}"
say() { printf '[fer3d setup] %s\n' "$*" >&2; }

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3.10 python3 python; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
      PY="$cand"; break
    fi
  done
fi
[ -n "$PY" ] || { say "need Python >= 3.10 on PATH"; exit 1; }

# open3d's wheel links libusb-1.0 at import time.
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing system package libusb-1.0-0 (needed by open3d)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0 >/dev/null
  else
    say "warning: libusb-1.0 not found and not root: install it (e.g. apt-get install libusb-1.0-0) or open3d will not import"
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"

stamp="$VENV/.fer3d-setup"
want="$(cat "$ROOT/pyproject.toml" "$ROOT/bin/_setup.sh" | "$VPY" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')-$EXTRAS"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$VPY" -m pip install -q --upgrade pip >/dev/null
  if [[ ",$EXTRAS," == *",train,"* ]] && ! "$VPY" -c 'import torch, torchvision' 2>/dev/null; then
    # Pinned pair known to import together; override for your own CUDA build.
    case "$(uname -m)" in
      aarch64|arm64) TORCH_SPEC_DEFAULT="torch==2.9.1 torchvision==0.24.1" ;;
      *) TORCH_SPEC_DEFAULT="torch==2.14.1 torchvision==0.29.1" ;;
    esac
    say "installing ${FER3D_TORCH_SPEC:-$TORCH_SPEC_DEFAULT} (a few minutes the first time)"
    # shellcheck disable=SC2086
    "$VPY" -m pip install -q ${FER3D_TORCH_SPEC:-$TORCH_SPEC_DEFAULT}
  fi
  say "installing fer3d[$EXTRAS] (editable)"
  "$VPY" -m pip install -q -e "$ROOT[$EXTRAS]"
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
