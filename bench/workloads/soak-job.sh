#!/bin/bash
# The short jobs of the soak test (bench/soak.ts), cheap enough to start several times a second.
#   soak-job.sh ok MS          prints [HEARTBEAT] i/5 lines over about MS ms, exits 0
#   soak-job.sh fail MS CODE   the same, then exits CODE
#   soak-job.sh hang           prints one [HEARTBEAT] line, then never advances (killed as stalled)
#   soak-job.sh family MS      starts three grandchildren: one that finishes on its own, one that stays in
#                              the process group, one that escapes it with setsid (a new session); prints
#                              heartbeats for MS ms and exits 0, leaving the last two for the supervisor to stop
set -u
mode=${1:?mode: ok, fail, hang or family}
ms=${2:-100}
steps=5
step_ms=$(( ms / steps ))
step_seconds=$(printf '%d.%03d' $(( step_ms / 1000 )) $(( step_ms % 1000 )))

beats() {
  for ((i = 1; i <= steps; i++)); do
    sleep "$step_seconds"
    echo "[HEARTBEAT] $i/$steps"
  done
}

case "$mode" in
  ok)
    beats
    ;;
  fail)
    beats
    echo "soak-job: failing with exit code ${3:-1}" >&2
    exit "${3:-1}"
    ;;
  hang)
    echo "[HEARTBEAT] 1/$steps"
    exec sleep 3600
    ;;
  family)
    sleep 0.05 </dev/null >/dev/null 2>&1 &
    sleep 600 </dev/null >/dev/null 2>&1 &
    echo "family in-group $!"
    setsid sleep 600 </dev/null >/dev/null 2>&1 &
    echo "family setsid $!"
    beats
    ;;
  *)
    echo "soak-job: unknown mode '$mode' (ok, fail, hang, family)" >&2
    exit 64
    ;;
esac
