#!/usr/bin/env bash
# Wall time of the README's main job after install: `make demo` from an empty out/ (the
# install stamp must be current, so make installs nothing), both compute locks held on a shared
# machine. Writes bench/results/demo_timing.md (git SHA, machine, date) and keeps the full log.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf out/demo_scores.csv* out/demo_scatter.png out/demo_search_* out/demo_cache
log=bench/results/demo_timing.log
start=$(date +%s.%N)
make demo > "$log" 2>&1
end=$(date +%s.%N)
{
  echo "# make demo: wall time after install"
  echo
  echo "git \`$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- Makefile zcfast bench/time_demo.sh || echo -dirty)\`, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC'). Command: \`bash bench/time_demo.sh\` (out/ emptied first; install already done)."
  echo
  echo "Wall time: $(python3 -c "print(round($end - $start, 1))") s. The demo's own output: demo_timing.log."
} > bench/results/demo_timing.md
cat bench/results/demo_timing.md
