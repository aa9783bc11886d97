#!/usr/bin/env bash
# Runs a command in a memory cgroup whose limit, page cache included, is GIB: a benchmark's stand-in
# for a machine with that much RAM (layer files the page cache cannot keep are read from disk again).
# cgroup v2 (memory.max) or v1 (memory.limit_in_bytes). Where neither can be made (no root, no
# mount), it says so and runs the command uncapped; the benchmark records the limit it saw
# (`memory_limit_gib`).
# Usage: bash benchmarks/with_memory_limit.sh GIB command...
set -u
gib=$1; shift
bytes=$((gib * 1024 * 1024 * 1024))
name=studio-bench-$$

# A real cgroup filesystem only: on a plain tmpfs mkdir and the limit file would cap nothing.
cgroup_dir() {  # $1 mount, $2 fs type, $3 limit file
  [ "$(stat -fc %T "$1" 2>/dev/null)" = "$2" ] && [ -w "$1" ] || return 1
  mkdir "$1/$name" 2>/dev/null || return 1
  if [ -f "$1/$name/$3" ] && echo $bytes >"$1/$name/$3" 2>/dev/null && echo $$ >"$1/$name/cgroup.procs" 2>/dev/null; then
    echo "$1/$name"; return 0
  fi
  rmdir "$1/$name" 2>/dev/null; return 1
}

if [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then
  grep -qw memory /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || echo +memory >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null
  group=$(cgroup_dir /sys/fs/cgroup cgroup2fs memory.max)
else
  group=$(cgroup_dir /sys/fs/cgroup/memory cgroup memory.limit_in_bytes)
fi
if [ -n "$group" ]; then
  echo "memory capped at ${gib} GiB (cgroup $group)" >&2
  # Start from a cold page cache, as a machine that just loaded would not have the files cached.
  sync; echo 1 >/proc/sys/vm/drop_caches 2>/dev/null
  "$@"; rc=$?
  echo $$ >"$(dirname "$group")/cgroup.procs" 2>/dev/null; rmdir "$group" 2>/dev/null
  exit $rc
fi
echo "could not cap memory here (no writable memory cgroup): running uncapped" >&2
exec "$@"
