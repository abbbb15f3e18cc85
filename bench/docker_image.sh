#!/usr/bin/env bash
# Build the production image and measure it: layer sizes, release command, first /health, stop.
#
#   sudo bench/docker_image.sh            # needs dockerd, BuildKit and a DATABASE_URL reachable from the host
#
# Where the registry cannot be reached (as on the machine the figures in docs/BENCHMARKS.md come from),
# STANDIN_BASE=1 first builds a local stand-in tagged python:3.12-slim: Debian bookworm (debootstrap,
# minbase) with Debian's Python 3.11 and pip. Sizes of GAD's own layers are then exact; the base's is not
# that of the real python:3.12-slim.
set -euo pipefail
cd "$(dirname "$0")/.."
DOCKER=${DOCKER:-docker}
: "${DATABASE_URL:?set DATABASE_URL to a PostgreSQL the container can reach (it runs with --network host)}"
PORT=${PORT:-18480}

if [[ "${STANDIN_BASE:-0}" == 1 ]]; then
  rootfs=$(mktemp -d)
  debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
  rm -f "$rootfs"/usr/lib/python3.*/EXTERNALLY-MANAGED
  ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
  ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/pip"
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"  # the host's trust, proxies included
  [[ -f /etc/pip.conf ]] && cp /etc/pip.conf "$rootfs/etc/pip.conf"
  tar -C "$rootfs" -c . | $DOCKER import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' - python:3.12-slim >/dev/null
  rm -rf "$rootfs"
fi

# The syntax line would fetch the Dockerfile frontend from the registry; the daemon's built-in one suffices.
sed '/^# syntax=/d' Dockerfile > "${TMPDIR:-/tmp}/Dockerfile.gad"
DOCKER_BUILDKIT=1 $DOCKER build -q -f "${TMPDIR:-/tmp}/Dockerfile.gad" -t gad:bench . >/dev/null
echo "== layers (newest first)"
$DOCKER history gad:bench --format '{{.Size}}\t{{.CreatedBy}}' | cut -c1-110
$DOCKER images gad:bench --format 'image size: {{.Size}}'

secret=$(python3 -c 'import secrets; print(secrets.token_urlsafe(40))')
run=(--network host -e "DATABASE_URL=$DATABASE_URL" -e "SECRET_KEY=$secret" -e "PORT=$PORT" -e WEB_CONCURRENCY=1)
echo "== release command"
$DOCKER run --rm "${run[@]}" gad:bench flask db upgrade >/dev/null 2>&1 && echo "flask db upgrade: exit 0"
echo "== docker run -> first 200 on /health (5 runs)"
for i in 1 2 3 4 5; do
  start=$(date +%s%N)
  $DOCKER run -d --name "gad-bench-$i" "${run[@]}" gad:bench >/dev/null
  until curl -sf -o /dev/null "http://127.0.0.1:$PORT/health"; do sleep 0.01; done
  echo "run $i: $(( ($(date +%s%N) - start) / 1000000 )) ms, user $($DOCKER exec "gad-bench-$i" id -un)"
  $DOCKER stop -t 30 "gad-bench-$i" >/dev/null
  echo "       stopped with exit code $($DOCKER inspect "gad-bench-$i" --format '{{.State.ExitCode}}')"
  $DOCKER rm "gad-bench-$i" >/dev/null
done
