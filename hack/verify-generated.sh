#!/usr/bin/env bash
# Fails when regenerating (make manifests generate) changes a file, so generated code and
# manifests never drift from the markers they come from. Compares the tree before and after,
# so it also works in a working copy with uncommitted edits.
set -euo pipefail
paths=(api config charts)
snapshot() { { git status --porcelain --untracked-files=all -- "${paths[@]}"; git diff -- "${paths[@]}"; } | sha256sum; }
before=$(snapshot)
make -s manifests generate "$@"
after=$(snapshot)
if [[ "$before" != "$after" ]]; then
  echo "generated files were stale and have been regenerated; review and commit them:" >&2
  git status --porcelain -- "${paths[@]}" >&2
  exit 1
fi
