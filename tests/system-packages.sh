#!/bin/sh
# The Debian packages the tests start real servers from (README "Development"): git for the fleet repositories,
# prometheus (server and promtool), kubectl to check the emulated Kubernetes API, docker-registry (an OCI registry),
# gnupg and ssh-keygen for signed commits, chromium and its driver for the web view. Installs only what is missing,
# with sudo when not root; does nothing where all of it is there.
set -eu
need=""
command -v git >/dev/null || need="$need git"
command -v prometheus >/dev/null || need="$need prometheus"
command -v kubectl >/dev/null || need="$need kubernetes-client"
command -v docker-registry >/dev/null || need="$need docker-registry"
command -v gpg >/dev/null || need="$need gnupg"
command -v ssh-keygen >/dev/null || need="$need openssh-client"
command -v chromedriver >/dev/null || need="$need chromium chromium-driver"
[ -z "$need" ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "tests/system-packages.sh: install these Debian packages (or their equivalents):$need" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086  # one word per package
$sudo apt-get install -y -qq --no-install-recommends $need >/dev/null
# The tests start prometheus themselves when they need it; the package's service only holds the port.
$sudo systemctl stop prometheus >/dev/null 2>&1 || true
