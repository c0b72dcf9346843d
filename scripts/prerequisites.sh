#!/usr/bin/env bash
# The machine tools scripts/setup.sh needs: Java 17+ (runs DynamoDB Local), Node.js 18+ with npm (installs
# DynamoDB Local and the OpenAPI TypeScript check's tools) and Chromium with its chromedriver (the report pages'
# real-browser tests, tests/browser, through testkit/browser.py). When one is missing and this runs as root where
# apt-get exists (Debian/Ubuntu, CI images), it installs it; otherwise it says what to install and fails.
# When all are present it only looks (no apt-get at all), so re-runs stay quick.
set -euo pipefail

fail() { echo "setup: $*" >&2; exit 1; }

java_major() {  # "17" for 17.0.15, "8" for 1.8; nothing without java
  command -v java >/dev/null || return 0
  local v
  v=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
  v=${v#1.}
  echo "${v%%.*}"
}

node_major() {
  command -v node >/dev/null || return 0
  local v
  v=$(node --version 2>/dev/null || true)
  v=${v#v}
  echo "${v%%.*}"
}

can_install() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

updated=no
apt_install() {
  local out
  echo "setup: installing $* (apt-get)"
  if out=$(DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" 2>&1); then
    return 0
  fi
  # A fresh image has no package lists, an old one may name versions the mirror no longer has: update once.
  if [ "$updated" = no ]; then
    echo "setup: apt-get update"
    out=$(DEBIAN_FRONTEND=noninteractive apt-get update 2>&1) && updated=yes \
      && out=$(DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" 2>&1) && return 0
  fi
  echo "$out" | tail -n 20 >&2
  return 1
}

at_least() { [ -n "$1" ] && [ "$1" -ge "$2" ] 2>/dev/null; }

# Java 17+
jv=$(java_major)
if ! at_least "$jv" 17; then
  can_install || fail "Java 17+ is required to run DynamoDB Local; found ${jv:-none}. Install it" \
    "(Debian/Ubuntu: apt-get install -y openjdk-17-jre-headless), or run make setup as root to have it installed."
  apt_install openjdk-17-jre-headless || fail "could not install openjdk-17-jre-headless (apt-get output above)."
  jv=$(java_major)
  at_least "$jv" 17 || fail "openjdk-17-jre-headless is installed but \`java\` is ${jv:-missing}:" \
    "select Java 17 with update-alternatives --config java."
fi

# Node.js 18+ and npm
missing=()
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  can_install || fail "Node.js 18+ and npm are required (DynamoDB Local comes from npm; so do the TypeScript" \
    "tools of the OpenAPI check). Install them (Debian/Ubuntu: apt-get install -y nodejs npm), or run make setup as root."
  apt_install "${missing[@]}" || fail "could not install ${missing[*]} (apt-get output above)."
fi
nv=$(node_major)
at_least "$nv" 18 || fail "Node.js 18+ is required; found $(node --version 2>/dev/null || echo none)." \
  "Install a newer Node.js (https://nodejs.org or your distribution's backports)."
command -v npm >/dev/null || fail "npm is required next to Node.js; install it (Debian/Ubuntu: apt-get install -y npm)."

# Chromium and chromedriver (Debian's packages keep the two versions in step, which selenium needs)
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
# A CJK font (5 MB): without one the screenshots show member names and segment names (一般价值...) as boxes
fc-list :lang=zh 2>/dev/null | grep -q . || missing+=(fonts-wqy-microhei)
if [ ${#missing[@]} -gt 0 ]; then
  can_install || fail "Chromium and chromedriver are required by the report pages' browser tests (tests/browser)." \
    "Install them (Debian/Ubuntu: apt-get install -y chromium chromium-driver fonts-wqy-microhei), or run make setup as root."
  apt_install "${missing[@]}" || fail "could not install ${missing[*]} (apt-get output above)."
fi
