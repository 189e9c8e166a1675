#!/usr/bin/env bash
# The whole test suite: the README's test command, and what .ci/run calls.
# Needs: the Rust toolchain, python3 with pip (Segment's client library, standardwebhooks, websockets and
# schemathesis are installed here if absent), node and Chromium (the browser test of the
# console), Redis on 127.0.0.1:6379 (the Redis backend tests). Tests whose outside tool is
# absent skip loudly; with MERIDIAN_REQUIRE_BACKENDS=1 (set by CI) every such skip is a
# failure instead.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c "import segment.analytics" 2>/dev/null; then
  echo "installing Segment's Python client (segment-analytics-python) for the compatibility test"
  python3 -m pip install --quiet --disable-pip-version-check segment-analytics-python \
    || echo "WARNING: could not install segment-analytics-python; its test will skip (or fail in CI)"
fi

# A published WebSocket client drives the long-lived connection's protocol (crates/meridian/tests/it/connect.rs).
python3 -c "import websockets.sync.client" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check "websockets>=13" || echo "WARNING: could not install websockets; the WebSocket client test will skip (or fail in CI)"

python3 -c "import standardwebhooks" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check standardwebhooks || echo "WARNING: could not install standardwebhooks; the webhook signature test will skip (or fail in CI)"

# schemathesis fuzzes the served OpenAPI document (crates/meridian/tests/it/schemathesis.rs).
schemathesis_version=4.32.5
if ! schemathesis --version 2>/dev/null | grep -q "$schemathesis_version"; then
  echo "installing schemathesis $schemathesis_version for the API fuzzing test"
  python3 -m pip install --quiet --disable-pip-version-check "schemathesis==$schemathesis_version" \
    || echo "WARNING: could not install schemathesis; the API fuzzing test will skip (or fail in CI)"
fi

console_tests=crates/meridian/tests/console
if { [ ! -d "$console_tests/node_modules/playwright-core" ] || [ ! -d "$console_tests/node_modules/axe-core" ]; } && command -v npm >/dev/null; then
  echo "installing playwright-core and axe-core for the browser test of the console"
  (cd "$console_tests" && npm ci --silent --no-audit --no-fund) \
    || echo "WARNING: could not install playwright-core and axe-core; the console test will skip (or fail in CI)"
fi

bash scripts/check-architecture.sh
cargo test --workspace --locked --no-fail-fast
