#!/usr/bin/env bash
# The public HTTP caching test suite (http-tests/cache-tests, the one behind cache-tests.fyi)
# against frontdoor's edge cache: the suite's test server runs as the app (plain HTTP on
# loopback), frontdoor serves it over HTTPS behind one `[routes.cache]` route, and the suite's
# CLI client asks frontdoor. Prints the counts as cache-tests.fyi classifies them, writes the
# raw results to $OUT (default target/cache-suite.json), and fails when a test the suite marks
# required fails (optional and "check" tests are reported, never fatal). `bash .ci/test` runs it
# after the Rust tests, on the debug binary they built.
#
#   bash tests/cache_suite.sh              # the npm release (pinned below), as CI runs it
#   bash tests/cache_suite.sh SUITE_DIR    # a checkout of the git repository (newer tests)
#   ID=test-id bash tests/cache_suite.sh   # one test, its exchange printed
#
# Without SUITE_DIR the suite is the npm package `http-cache-tests` at $version, fetched with
# `npm pack` and checked against its registry integrity, and its client's one dependency
# (node-fetch 2) is installed by `npm ci` from tests/cache_suite/package-lock.json; both are
# kept in target/cache-suite/ for the next run. The release is older than the repository
# (BENCHMARKS.md has the counts of both). A checkout (`git archive` of the repository) has its
# engine in test-engine/ and runs on Node's own fetch after an `npm install` in it.
# Needs node (>= 18) and npm (.ci/setup installs Debian's) and the openssl CLI.
# FRONTDOOR_BIN: the binary (default the debug one, built if missing; the suite times
# nothing, so a debug build answers as a release one does).
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/common.sh
out=${OUT:-target/cache-suite.json}
mkdir -p "$(dirname "$out")"

version=0.4.5
integrity=sha512-DjuwN9nUZXLTW+wav1LRESCZNVxl8SshwOy4z1pxuWbWt5/ay6sM9QQ1lebBaDO6P1IMBoK6mdf+PuVP/QNL8A==
# Tests this release requires that the suite has since reversed or dropped: reported, never
# fatal, and only for the release (a checkout is held to every test it requires).
reversed=(
  # 0.4.5: an invalid, negative, fractional or repeated `Age` makes a response stale. RFC 9111
  # §5.1 and the suite since: a cache ignores an invalid `Age` and uses the first of several.
  age-parse-nonnumeric age-parse-negative age-parse-float age-parse-prefix-twoline
  age-parse-dup-0 age-parse-dup-0-twoline age-parse-dup-old age-parse-parameter
  age-parse-numeric-parameter
  # `Surrogate-Control` (a 2001 W3C Note), dropped from the suite for RFC 9213's
  # `CDN-Cache-Control`, which frontdoor reads instead.
  surrogate-no-store-cc-fresh surrogate-fresh-cc-nostore
)

suite=${1:-}
if [ -n "$suite" ]; then
  reversed=()
fi
if [ -z "$suite" ]; then
  cache=target/cache-suite
  suite="$cache/http-cache-tests-$version"
  mkdir -p "$cache"
  if ! cmp -s tests/cache_suite/package-lock.json "$cache/package-lock.json" || [ ! -d "$cache/node_modules" ]; then
    cp tests/cache_suite/package.json tests/cache_suite/package-lock.json "$cache/"
    (cd "$cache" && npm ci --silent --ignore-scripts --no-audit --no-fund)
  fi
  if [ ! -f "$suite/package.json" ]; then
    tarball=$(cd "$cache" && npm pack --silent "http-cache-tests@$version")
    got="sha512-$(openssl dgst -sha512 -binary "$cache/$tarball" | base64 -w0)"
    if [ "$got" != "$integrity" ]; then
      echo "cache_suite: $tarball is $got, not the pinned $integrity" >&2
      rm -f "$cache/$tarball"
      exit 1
    fi
    mkdir -p "$suite"
    tar xzf "$cache/$tarball" -C "$suite" --strip-components=1
    rm -f "$cache/$tarball"
  fi
else
  if [ ! -d "$suite/node_modules" ]; then
    (cd "$suite" && npm install --silent --no-audit --no-fund >/dev/null)
  fi
fi
suite=$(cd "$suite" && pwd)
# The checkout keeps its engine in test-engine/, the npm release at the top.
engine="$suite/test-engine"
[ -d "$engine" ] || engine="$suite"

bin=${FRONTDOOR_BIN:-${CARGO_TARGET_DIR:-target}/debug/frontdoor}
[ -x "$bin" ] || cargo build --locked --quiet --bin frontdoor
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
(cd "$suite" && node --no-warnings "$engine/cli.mjs") >"$out" 2>"$tmp/client.err" || {
  cat "$tmp/client.err" >&2
  exit 1
}

# Counted as cache-tests.fyi shows them (a test whose dependency failed is not run). The
# checkout has the rules in lib/results.mjs, the release in lib/display.mjs; the release's
# CLI also runs the Surrogate-Control tests, which its index leaves out.
cat >"$tmp/count.mjs" <<'EOF'
import fs from 'fs'
const [suite, engine, file, ...reversed] = process.argv.slice(2)
const { default: tests } = await import(`${suite}/tests/index.mjs`)
const surrogate = `${suite}/tests/surrogate-control.mjs`
if (fs.existsSync(surrogate)) {
  const { default: extra } = await import(surrogate)
  if (!tests.some(s => s.id === extra.id)) tests.push(extra)
}
const rules = fs.existsSync(`${engine}/lib/results.mjs`) ? 'results' : 'display'
const { determineTestResult } = await import(`${engine}/lib/${rules}.mjs`)
const results = JSON.parse(fs.readFileSync(file, 'utf8'))
const counts = {}
const failed = []
const excused = []
for (const suite of tests) {
  for (const t of suite.tests) {
    if (t.browser_only) continue
    // resultTypes' first column (a Font Awesome glyph) names the result in both layouts.
    const kind = {
      '\uf058': 'pass',
      '\uf057': 'fail',
      '\uf05a': 'optional_fail',
      '\uf055': 'yes',
      '\uf056': 'no',
      '\uf059': 'setup_fail',
      '\uf06a': 'harness_fail',
      '\uf192': 'dependency_fail',
      '\uf01e': 'retry',
      '-': 'untested'
    }[determineTestResult(tests, t.id, results)[0]]
    const line = `${t.id}: ${JSON.stringify(results[t.id])}`
    const excuse = kind === 'fail' && reversed.includes(t.id)
    if (excuse) excused.push(line)
    else if (kind === 'fail') failed.push(line)
    const key = excuse ? 'fail_reversed_since' : kind
    counts[key] = (counts[key] || 0) + 1
  }
}
const total = Object.values(counts).reduce((a, b) => a + b, 0)
console.log(`cache_suite: ${total} tests: ${JSON.stringify(counts)}`)
for (const f of excused) console.log(`cache_suite: required by this release, reversed since: ${f}`)
for (const f of failed) console.log(`cache_suite: REQUIRED FAILURE ${f}`)
console.log(`cache_suite: ${counts.pass || 0} passed, ${failed.length} required failures` +
  (excused.length ? ` (and ${excused.length} the suite has reversed since)` : ''))
process.exit(failed.length ? 1 : 0)
EOF
node "$tmp/count.mjs" "$suite" "$engine" "$PWD/$out" "${reversed[@]}"
