#!/usr/bin/env bash
# The README's test command: formatting, lints and every test of the workspace.
#
# Run as root on a fresh machine, it first installs what the image lacks, with apt-get: clang
# to rebuild and check the committed BPF objects, libelf-dev and libbpf-dev for the kernel
# backend, tshark to check written packet captures, xmllint, jq and chromium to check reports. Without
# root it runs with what is there, and the tests that need a missing tool say so loudly.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v clang >/dev/null 2>&1 || need+=(clang)
[ -e /usr/include/libelf.h ] || need+=(libelf-dev)
[ -e /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
# tshark checks that written pcapng files show verdict comments (tests/pcap.rs).
command -v tshark >/dev/null 2>&1 || need+=(tshark)
# xmllint validates the JUnit reports against tests/data/junit.xsd (tests/cli.rs); jq reads
# `--flows json` output as users do (tests/cli.rs).
command -v xmllint >/dev/null 2>&1 || need+=(libxml2-utils)
command -v jq >/dev/null 2>&1 || need+=(jq)
# Headless Chromium renders the HTML report (tests/report.rs).
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "tools/test.sh: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "tools/test.sh: WARNING: missing ${need[*]} and not root: tests that need them will report SKIP"
  fi
fi

# The kernel backend links libelf; build it whenever libelf-dev is there. Whether it can run
# (root, CAP_BPF) is decided by the tests themselves: a loud SKIP line, or a failure when
# VERDICT_REQUIRE_KERNEL=1 (as .ci/run sets it).
features=()
if [ -e /usr/include/libelf.h ]; then
  features=(--features kernel)
else
  echo "tools/test.sh: WARNING: libelf-dev missing: building without the kernel backend (its tests are not compiled)"
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets "${features[@]}" -- -D warnings
cargo test --workspace "${features[@]}"
