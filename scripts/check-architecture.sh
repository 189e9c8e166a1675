#!/usr/bin/env bash
# Architecture invariants that a reviewer would otherwise have to remember:
#  1. Domain crates know nothing of HTTP or of backend client crates.
#  2. Every Rust source file starts with a `//!` line saying what it is for.
set -euo pipefail
cd "$(dirname "$0")/.."

domain_crates=(meridian-event meridian-log meridian-state meridian-runtime meridian-pipeline meridian-collector
  meridian-config meridian-api meridian-catalog meridian-tenancy meridian-counters meridian-history meridian-actions meridian-sources meridian-alerts meridian-listing)
forbidden='^(axum|hyper|reqwest|tower-http|redis|rdkafka|sqlx|tokio-postgres|async-nats|lapin) v'
status=0
for crate in "${domain_crates[@]}"; do
  if ! tree=$(cargo tree --locked -p "$crate" -e normal --prefix none); then
    echo "cannot list the dependencies of $crate"
    status=1
    continue
  fi
  hits=$(grep -E "$forbidden" <<<"$tree" | sort -u || true)
  if [ -n "$hits" ]; then
    echo "architecture invariant broken: $crate depends on $(echo "$hits" | tr '\n' ' ')"
    status=1
  fi
done

while IFS= read -r file; do
  if ! head -n 1 "$file" | grep -q '^//!'; then
    echo "missing //! header line: $file"
    status=1
  fi
done < <(find crates -name '*.rs' -not -path '*/target/*')

[ "$status" -eq 0 ] && echo "architecture invariants hold (${#domain_crates[@]} domain crates checked)"
exit "$status"
