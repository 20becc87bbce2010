#!/usr/bin/env bash
# Compiles every datapath/bpf/*.bpf.c and datapath/tests/bpf/*.bpf.c into a .o beside it.
#
# The objects are committed, so the project builds and tests without clang; run this
# after changing any BPF source and commit the objects with it. Output is byte-identical
# across checkout paths: clang runs from the repository root on relative paths, and the
# debug info's directories are mapped to ".". datapath/tests/programs.rs rebuilds into a
# temporary directory and fails if a committed object differs.
#
# Usage: tools/build-bpf.sh [OUTDIR]   (OUTDIR: write objects there instead, same names
#                                       relative to the repository root)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-}"
clang="${CLANG:-clang}"

if ! command -v "$clang" >/dev/null 2>&1; then
	echo "build-bpf: $clang not found; install: apt-get install -y --no-install-recommends clang libelf-dev libbpf-dev" >&2
	exit 1
fi
echo "build-bpf: $("$clang" --version | head -n1)"

multiarch="$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"
cd "$root"
shopt -s nullglob
for src in datapath/bpf/*.bpf.c datapath/tests/bpf/*.bpf.c; do
	obj="${src%.c}.o"
	if [[ -n "$out" ]]; then
		mkdir -p "$out/$(dirname "$obj")"
		obj="$out/$obj"
	fi
	# -mcpu=v3: rbpf mis-runs v4's signed ops. -g: libbpf needs BTF for .maps.
	"$clang" -O2 -g -target bpf -mcpu=v3 -Wall -Werror \
		-I"/usr/include/$multiarch" -Idatapath/bpf \
		-fdebug-prefix-map="$root"=. -fdebug-compilation-dir=. \
		-c "$src" -o "$obj"
	echo "build-bpf: $src -> $obj"
done
