#!/usr/bin/env python3
"""Turns the JSON lines of bench/run.sh into bench/RESULTS.md (standard output)."""
import datetime
import json
import platform
import subprocess
import sys


def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()


rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
commands = [line.rstrip("\n") for line in open(sys.argv[2]) if line.strip()]
by = {}
for r in rows:
    key = r["scenario"]
    if "pairs" in r:
        key += f"-p{r['pairs']}"
    if r.get("offered_rate"):
        key += "-paced"
    if r.get("storage_fsync"):
        key += "-fsync"
    by[key] = r


def g(key, field, digits=0):
    v = by.get(key, {}).get(field)
    return "n/a" if v is None else f"{v:,.{digits}f}"


# RESULTS.md itself is being rewritten (the redirect truncates it): not a change.
dirty = sh("git status --porcelain -- src include bench CMakeLists.txt ':!bench/RESULTS.md'")
print("# Benchmark results\n")
print("Written by `bench/run.sh`; the analysis (profiles, gaps, what would move them) is in `bench/ANALYSIS.md`.\n")
print(f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}")
print(f"- commit: {sh('git rev-parse --short HEAD')}{' with uncommitted changes' if dirty else ''}")
cpu = sh("lscpu | sed -n 's/^Model name: *//p'")
mem = sh("free -g | awk '/Mem:/ {print $2}'")
print(f"- machine: {sh('nproc')} cores ({cpu}), {mem} GiB, kernel {platform.release()}")
print("- imbench (1 thread) and imserver on the same machine over loopback; imserver with its default config but "
      "ports, data dir, JWT secret, rate and admission limits; `storage.fsync = false` but in the row that says otherwise\n")
print("| scenario | measured | goal |")
print("|---|---|---|")
print(f"| W1 {by.get('w1', {}).get('logged_in', '?')} idle logged-in connections | "
      f"{g('w1', 'server_bytes_per_conn')} B server RSS per connection; kernel slab "
      f"{g('w1', 'kernel_slab_bytes_per_conn_both_ends')} B per connection, both ends | <= 512 B |")
print(f"| W2 P=1 | {g('w2-p1', 'delivered_per_s')} msg/s; p50 {g('w2-p1', 'latency_p50_ms', 2)} ms, "
      f"p99 {g('w2-p1', 'latency_p99_ms', 2)} ms, p999 {g('w2-p1', 'latency_p999_ms', 2)} ms | |")
print(f"| W2 P=100, window 100 | {g('w2-p100', 'delivered_per_s')} msg/s; p50 {g('w2-p100', 'latency_p50_ms', 2)} ms, "
      f"p99 {g('w2-p100', 'latency_p99_ms', 2)} ms; server {g('w2-p100', 'server_cores', 2)} cores, "
      f"generator {g('w2-p100', 'generator_cores', 2)} | >= 62k msg/s (stretch 74k) |")
print(f"| W2 P=100, paced at {g('w2-p100-paced', 'offered_rate')} msg/s (about half) | "
      f"{g('w2-p100-paced', 'delivered_per_s')} msg/s; p50 {g('w2-p100-paced', 'latency_p50_ms', 2)} ms, "
      f"p99 {g('w2-p100-paced', 'latency_p99_ms', 2)} ms, p999 {g('w2-p100-paced', 'latency_p999_ms', 2)} ms | "
      "p99 <= 10 ms at half rate |")
if "w2-p100-fsync" in by:
    print(f"| W2 P=100, window 100, `storage.fsync = true` | {g('w2-p100-fsync', 'delivered_per_s')} msg/s; "
          f"p50 {g('w2-p100-fsync', 'latency_p50_ms', 2)} ms, p99 {g('w2-p100-fsync', 'latency_p99_ms', 2)} ms; "
          f"server {g('w2-p100-fsync', 'server_cores', 2)} cores | >= 40,000 msg/s (group commit) |")
print(f"| W3 500 members, 1 sender, window 100 | {g('w3', 'deliveries_per_s')} deliveries/s; "
      f"p99 {g('w3', 'latency_p99_ms', 1)} ms; server {g('w3', 'server_cores', 2)} cores | >= 170k/s |")
print(f"| W3 paced at {g('w3-paced', 'offered_rate')} msg/s | {g('w3-paced', 'deliveries_per_s')} deliveries/s; "
      f"p50 {g('w3-paced', 'latency_p50_ms', 1)} ms, p99 {g('w3-paced', 'latency_p99_ms', 1)} ms | "
      "p99 <= 50 ms (at 170k deliveries/s) |")
print(f"| W4 pull 100,000 | {g('w4', 'messages_per_s')} msg/s; last after {g('w4', 'time_to_last_ms')} ms | "
      ">= 1,000,000 msg/s |")
if "w7" in by:
    print(f"| W7 a {g('w7', 'members')}-member large group, {g('w7', 'online')} online, 1 sender, window 100 | "
          f"{g('w7', 'messages_per_s')} msg/s, {g('w7', 'deliveries_per_s')} deliveries/s; "
          f"p99 {g('w7', 'latency_p99_ms', 1)} ms; server {g('w7', 'server_cores', 2)} cores, generator "
          f"{g('w7', 'generator_cores', 2)}; members added in {g('w7', 'build_s', 2)} s "
          "| >= 1,000 msg/s; 100,000 added in <= 10 s |")
if "w7-paced" in by:
    print(f"| W7 paced at {g('w7-paced', 'offered_rate')} msg/s | {g('w7-paced', 'deliveries_per_s')} deliveries/s; "
          f"p50 {g('w7-paced', 'latency_p50_ms', 1)} ms, p99 {g('w7-paced', 'latency_p99_ms', 1)} ms; "
          f"server {g('w7-paced', 'server_cores', 2)} cores | |")
if "w8" in by:
    print(f"| W8 resync of {by['w8'].get('messages', '?')} messages over {g('w8', 'link_delay_ms')} ms each way, "
          f"{g('w8', 'link_down_bytes_per_s')} B/s down | plain {g('w8', 'plain_time_to_last_ms')} ms, "
          f"{g('w8', 'plain_bytes_down')} B; zstd {g('w8', 'zstd_time_to_last_ms')} ms, {g('w8', 'zstd_bytes_down')} B "
          "| <= 3 s with zstd |")
print(f"| W5 {by.get('w5', {}).get('connections', '?')} logins, 1,000 in flight | {g('w5', 'logins_per_s')} logins/s; "
      f"p99 {g('w5', 'login_p99_ms', 1)} ms; errors {by.get('w5', {}).get('errors', '?')} | >= 18k logins/s |")
print(f"| W6 {by.get('w6', {}).get('stored_messages', 0):,} stored messages | ready "
      f"{g('w6', 'ready_after_kill9_s', 2)} s after kill -9 (fill took {g('w6', 'fill_s')} s); "
      f"{g('w6', 'ready_replaying_fill_wal_s', 2)} s replaying the fill's {g('w6', 'wal_mb_after_fill')} MB WAL | <= 3 s |")
if "conv" in by:
    print(f"| conv: CONV_LIST of {by['conv'].get('conversations', '?')} conversations | first page of 100: "
          f"p50 {g('conv', 'list_page100_p50_ms', 2)} ms, p99 {g('conv', 'list_page100_p99_ms', 2)} ms "
          f"(the first, loading the user's state: {g('conv', 'list_first_ms', 1)} ms); all in pages of 500: "
          f"{g('conv', 'list_all_pages500_ms', 1)} ms; CONV_READ {g('conv', 'conv_read_per_s')}/s, "
          f"p99 {g('conv', 'conv_read_p99_ms', 1)} ms | (issue 12: measured, no goal) |")
print()
try:
    print(open(__file__.rsplit("/", 1)[0] + "/before_after.md").read())
except OSError:
    pass
print("## Raw results\n\n```")
for r in rows:
    print(json.dumps(r))
print("```\n\n## Commands\n\n`bench/run.sh` ran, for each scenario, a fresh imserver (own data dir) and:\n\n```")
for c in commands:
    print(c)
print("```")
