#!/usr/bin/env bash
# Round-trips every file of ../shared/corpora through the real CLI with the default model:
# c -v --verify, t, d, cmp; checks that -v's bits per byte equal 8 x compressed / original.
# Usage: bench/scripts/roundtrip_corpora.sh [CORPORA_DIR] [EXTRA nncompress c OPTIONS...]
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
corpora=${1:-$root/../shared/corpora}; shift || true
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
fail=0; n=0; tot_in=0; tot_out=0
printf '%-28s %10s %10s %7s %8s\n' file bytes nnc bpb status
for f in $(find "$corpora" -type f ! -name '*.md' ! -name '*.tsv' | sort); do
  n=$((n+1)); b=$(basename "$f")
  line=$(nncompress c -f -v "$@" "$f" "$work/$b.nnc" 2>&1) || { echo "$b: compress failed: $line"; fail=$((fail+1)); continue; }
  size=$(stat -c%s "$work/$b.nnc"); orig=$(stat -c%s "$f")
  bpb=$(echo "$line" | sed -n 's/.* \([0-9.]*\) bits\/byte.*/\1/p')
  want=$(python3 -c "print(f'{8*$size/$orig:.3f}' if $orig else '0.000')")
  status=ok
  [ "$bpb" = "$want" ] || status="bpb-mismatch($bpb!=$want)"
  nncompress t -q "$work/$b.nnc" || status=test-failed
  nncompress d -f -q "$work/$b.nnc" "$work/$b.out" && cmp -s "$f" "$work/$b.out" || status=roundtrip-failed
  [ "$status" = ok ] || fail=$((fail+1))
  tot_in=$((tot_in+orig)); tot_out=$((tot_out+size))
  printf '%-28s %10d %10d %7s %8s\n' "$b" "$orig" "$size" "$bpb" "$status"
  rm -f "$work/$b.out" "$work/$b.nnc"
done
echo "files: $n, failures: $fail, total $tot_in -> $tot_out bytes ($(python3 -c "print(f'{8*$tot_out/max(1,$tot_in):.3f}')") bpb)"
[ $fail -eq 0 ]
