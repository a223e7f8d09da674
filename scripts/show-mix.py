#!/usr/bin/python3
"""Prints the daemon's traffic mix (GET /api/v1/mix) as a small table: scripts/show-mix.py [URL]."""
import json
import sys
import urllib.request

url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:9440/api/v1/mix"
with urllib.request.urlopen(url, timeout=5) as resp:
    mix = json.load(resp)
for name, u in mix["classes"].items():
    up, down = u["bytes"]
    print(f"{name:<8} up {up:>14,} B   down {down:>14,} B   flows {u['flows']:>6}")
labels = ", ".join(f"{n}={sum(u['bytes']):,} B" for n, u in mix["labels"].items())
print(f"  labels: {labels}")
