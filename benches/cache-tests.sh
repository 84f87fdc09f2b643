#!/usr/bin/env bash
# The public HTTP caching test suite (http-tests/cache-tests, the one behind cache-tests.fyi)
# against frontdoor's edge cache: the suite's test server runs as the app (plain HTTP on
# loopback), frontdoor (release build) serves it over HTTPS behind one `[routes.cache]` route,
# and the suite's CLI client (Node's fetch) asks frontdoor. Prints the counts as
# cache-tests.fyi classifies them and writes the raw results to $OUT (default
# target/cache-tests.json).
#
#   bash benches/cache-tests.sh [SUITE_DIR]
#
# SUITE_DIR: a checkout of the suite (the git repository's current tests; BENCHMARKS.md
# names the commit measured). Without it the script installs the suite from the npm registry
# (`npm pack http-cache-tests`), which is an older release (334 tests, not 370) and runs on
# Node's own fetch only from the checkout's engine: the npm release needs node-fetch 2.
# Needs node >= 20, npm and the openssl CLI. Set ID=test-id to run one test with its exchange printed.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/common.sh
out=${OUT:-target/cache-tests.json}

suite=${1:-}
if [ -z "$suite" ]; then
  suite="$tmp/suite"
  mkdir -p "$suite"
  (cd "$tmp" && npm pack --silent http-cache-tests >/dev/null && tar xzf http-cache-tests-*.tgz -C "$suite" --strip-components=1)
fi
suite=$(cd "$suite" && pwd)
if [ ! -d "$suite/node_modules" ]; then
  (cd "$suite" && npm install --silent --no-audit --no-fund >/dev/null)
fi
# The checkout keeps its engine in test-engine/, the npm release at the top.
engine="$suite/test-engine"
[ -d "$engine" ] || engine="$suite"

# FRONTDOOR_BIN: another build (the debug one answers the same; the suite times nothing).
bin=${FRONTDOOR_BIN:-target/release/frontdoor}
[ -x "$bin" ] || cargo build --locked --release --bin frontdoor
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

app_port=$(free_port)
https_port=$(free_port)
admin_port=$(free_port)
http_port=$(free_port)

# The suite's server: the app.
export npm_config_port=$app_port npm_config_protocol=http npm_config_pidfile="$tmp/server.pid"
(cd "$suite" && exec node "$engine/server/server.mjs") >"$tmp/server.err" 2>&1 &
pids+=($!)

# A certificate for localhost that Node trusts through NODE_EXTRA_CA_CERTS.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -keyout "$tmp/localhost.key" -out "$tmp/localhost.pem" 2>/dev/null

cat >"$tmp/frontdoor.toml" <<EOF
[server]
threads = 2
grace-period = "0s"
graceful-shutdown-timeout = "1s"

[listen]
https = "127.0.0.1:$https_port"
http = "127.0.0.1:$http_port"
admin = "127.0.0.1:$admin_port"

[[tls.certificates]]
cert = "localhost.pem"
key = "localhost.key"

[pools.suite]
backends = ["127.0.0.1:$app_port"]
read-timeout = "30s"

# The suite's own state exchange (test configs, server state): never cached.
[[routes]]
name = "suite-config"
path = "/config/{rest*}"
pool = "suite"

[[routes]]
name = "suite-state"
path = "/state/{rest*}"
pool = "suite"

# What is tested: the edge cache, as a CDN in front of its own app would be set. Cookies and
# credentials may use it (the app's rules then decide what is shared).
[[routes]]
name = "suite"
path = "/{rest*}"
pool = "suite"
[routes.cache]
allow-cookies = true
allow-authorization = true
EOF
(cd "$tmp" && exec "$bin" run frontdoor.toml) >"$tmp/frontdoor.err" 2>&1 &
pids+=($!)
wait_port "$app_port"
wait_port "$https_port"

export NODE_EXTRA_CA_CERTS="$tmp/localhost.pem"
export npm_config_base="https://localhost:$https_port" npm_config_id="${ID:-}" npm_package_config_id=""
if [ -n "${ID:-}" ]; then
  (cd "$suite" && node --no-warnings "$engine/cli.mjs")
  exit 0
fi
(cd "$suite" && node --no-warnings "$engine/cli.mjs") >"$out"

# Counted as cache-tests.fyi shows them (a test whose dependency failed is not run).
cat >"$tmp/count.mjs" <<'EOF'
import fs from 'fs'
const [suite, engine, file] = process.argv.slice(2)
const { default: tests } = await import(`${suite}/tests/index.mjs`)
const { determineTestResult, resultTypes } = await import(`${engine}/lib/results.mjs`)
const results = JSON.parse(fs.readFileSync(file, 'utf8'))
const names = Object.fromEntries(Object.entries(resultTypes).map(([k, v]) => [v[2], k]))
const counts = {}
const failed = []
for (const suite of tests) {
  for (const t of suite.tests) {
    if (t.browser_only) continue
    const kind = names[determineTestResult(tests, t.id, results)[2]]
    counts[kind] = (counts[kind] || 0) + 1
    if (kind === 'fail') failed.push(t.id)
  }
}
console.log(JSON.stringify(counts))
console.log(`required failures: ${failed.length ? failed.join(' ') : 'none'}`)
console.log(`${counts.pass || 0} passed, ${failed.length} failed`)
EOF
node "$tmp/count.mjs" "$suite" "$engine" "$PWD/$out"
