#!/bin/sh
# Build the aarch64 environment ARM CPU classes are emulated in (`make arm`; quant_explorer/aarch64.py):
#   DIR/root  an arm64 Python 3.11: Debian bookworm's arm64 packages, unpacked (nothing installed on this system)
#   DIR/site  numpy and onnxruntime, their aarch64 wheels, at the versions PYTHON (this venv) has
#   DIR/torch torch's aarch64 CPU build for the eager engine on ARM (qnnpack): 2.9.1, the newest whose aarch64 wheel on
#             PyPI is a CPU build (2.10 and later ask for CUDA libraries); its pure-Python needs beside it
#   DIR/qemu  qemu-aarch64 10 from bookworm-backports, unpacked, unless the system's is 10 or newer (7.2's crashes
#             in `import onnxruntime`); the system's qemu-user package is left as it is
# apt runs with a configuration of its own under DIR/apt (no change to this system's sources or packages).
# Usage: tools/aarch64_env.sh DIR PYTHON
set -eu
DIR=$(realpath -m "$1"); PY=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")  # absolute, unresolved (a venv link)
MIRROR=http://deb.debian.org/debian
TORCH=2.9.1
TORCH_NEEDS="filelock typing-extensions>=4.10.0 sympy>=1.13.3 mpmath networkx jinja2 markupsafe fsspec"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
# python3.11-minimal, libpython3.11-stdlib and what they need, as bookworm's arm64 packages name it
PACKAGES="python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libc6 libgcc-s1 libstdc++6 gcc-12-base
  zlib1g libexpat1 libffi8 libssl3 libbz2-1.0 liblzma5 libzstd1 libsqlite3-0 libncursesw6 libtinfo6 libreadline8
  libuuid1 libcrypt1 libdb5.3 libnsl2 libtirpc3 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2
  libkeyutils1 libselinux1 libpcre2-8-0 libacl1 libmd0"

command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null && [ -f "$KEYRING" ] || {
  echo "make arm needs Debian's apt-get, dpkg-deb and $KEYRING (a Debian or Ubuntu machine with debian-archive-keyring)"
  exit 1; }
mkdir -p "$DIR/apt/lists/partial" "$DIR/apt/archives/partial" "$DIR/debs" "$DIR/root"
cat > "$DIR/apt/sources.list" <<EOF
deb [arch=arm64 signed-by=$KEYRING] $MIRROR bookworm main
deb [arch=arm64 signed-by=$KEYRING] $MIRROR bookworm-updates main
deb [arch=arm64 signed-by=$KEYRING] http://deb.debian.org/debian-security bookworm-security main
deb [arch=amd64 signed-by=$KEYRING] $MIRROR bookworm-backports main
EOF
: > "$DIR/apt/status"
APT="-o Dir::Etc::SourceList=$DIR/apt/sources.list -o Dir::Etc::SourceParts=/nonexistent -o Dir::State=$DIR/apt
  -o Dir::State::status=$DIR/apt/status -o Dir::Cache=$DIR/apt -o APT::Architectures::=amd64
  -o APT::Architectures::=arm64 -o Debug::NoLocking=1 -o APT::Sandbox::User=root -qq"
echo "arm: package lists (bookworm arm64, bookworm-backports amd64)"
# shellcheck disable=SC2086
apt-get $APT update
cd "$DIR/debs"
echo "arm: $(echo $PACKAGES | wc -w) arm64 packages"
# shellcheck disable=SC2086
apt-get $APT download $(for p in $PACKAGES; do printf '%s:arm64 ' "$p"; done)
for deb in ./*_arm64.deb; do dpkg-deb -x "$deb" "$DIR/root"; done

SYSTEM=$(command -v qemu-aarch64 || true)
if [ -n "$SYSTEM" ] && [ "$("$SYSTEM" --version | sed -n 's/.*version \([0-9]*\).*/\1/p')" -ge 10 ]; then
  echo "arm: the system's qemu-aarch64 ($SYSTEM) is 10 or newer: used as it is"
else
  echo "arm: qemu-user 10 from bookworm-backports (unpacked: qemu-aarch64 only)"
  # shellcheck disable=SC2086
  apt-get $APT download qemu-user:amd64/bookworm-backports
  rm -rf "$DIR/qemu.tmp" && dpkg-deb -x qemu-user_*_amd64.deb "$DIR/qemu.tmp"
  mkdir -p "$DIR/qemu" && mv "$DIR/qemu.tmp/usr/bin/qemu-aarch64" "$DIR/qemu/qemu-aarch64" && rm -rf "$DIR/qemu.tmp"
fi

VERSIONS=$("$PY" -c "from importlib.metadata import version as v; print(f'numpy=={v(\"numpy\")} onnxruntime=={v(\"onnxruntime\")}')")
echo "arm: aarch64 wheels of $VERSIONS"
rm -rf "$DIR/site"
# shellcheck disable=SC2086
"$PY" -m pip install -q --target "$DIR/site" --only-binary=:all: --python-version 3.11 --implementation cp \
  --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 $VERSIONS
echo "arm: torch $TORCH (aarch64 CPU build) for the eager engine"
rm -rf "$DIR/torch"
# shellcheck disable=SC2086
"$PY" -m pip install -q --target "$DIR/torch" --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
  --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 torch==$TORCH $TORCH_NEEDS
rm -rf "$DIR/debs" "$DIR/apt"
QEMU=$( [ -x "$DIR/qemu/qemu-aarch64" ] && echo "$DIR/qemu/qemu-aarch64" || echo "$SYSTEM")
PYTHONPATH="$DIR/site:$DIR/torch" "$QEMU" -L "$DIR/root" -cpu neoverse-n1 "$DIR/root/usr/bin/python3.11" -c \
  "import numpy, onnxruntime, torch; print('arm: numpy', numpy.__version__, 'onnxruntime', onnxruntime.__version__, \
   'and torch', torch.__version__, 'import in the arm64 Python under', '$QEMU')" 2>&1 | grep -v "TCG doesn't support"
echo "arm: built in $DIR ($(du -sh "$DIR" | cut -f1))"
