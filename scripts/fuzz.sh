#!/usr/bin/env bash
# Runs every fuzz target (func FuzzXxx in a _test.go file) for SECONDS each, one after
# the other, and fails on the first finding. The seed corpora in each package's
# testdata/fuzz/ also run as plain tests in `go test ./...`.
#
#   bash scripts/fuzz.sh [SECONDS]          (default 10)
#   bash scripts/fuzz.sh 300 ./server       (only the targets of some packages)
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-10}"
shift || true
pkgs=("$@")
[ ${#pkgs[@]} -gt 0 ] || pkgs=(./...)

total=0
start=$(date +%s)
for dir in $(go list -f '{{.Dir}}' "${pkgs[@]}"); do
  rel="./${dir#"$PWD"/}"
  [ "$dir" = "$PWD" ] && rel="."
  targets=$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u || true)
  for t in $targets; do
    echo "fuzz: $rel $t for ${secs}s"
    if ! out=$(go test -run '^$' -fuzz "^${t}\$" -fuzztime "${secs}s" "$rel" 2>&1); then
      # The fuzzing engine can end a short run with "context deadline exceeded" while
      # its workers are still busy; that is not a finding (a finding writes its input).
      if grep -q 'Failing input written to' <<<"$out" || ! grep -q 'context deadline exceeded' <<<"$out"; then
        echo "$out" | tail -30
        echo "fuzz: $rel $t FAILED (a failing input is saved under $rel/testdata/fuzz/$t/)" >&2
        exit 1
      fi
      echo "  (the run ended on the engine's deadline while busy; no finding)"
    fi
    echo "$out" | grep -E '^fuzz: elapsed' | tail -1 | sed 's/^/  /'
    total=$((total + 1))
  done
done
echo "fuzz: $total target(s), ${secs}s each, nothing found ($(( $(date +%s) - start ))s)"
