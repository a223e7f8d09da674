#!/usr/bin/env python3
"""Checks that every query of the Grafana dashboards here parses as PromQL.

Grafana's variables are replaced by values of the same type ($gateway by a regex,
$__rate_interval by a duration), each query becomes a recording rule of a temporary rules
file, and `promtool check rules` parses them. Exit 1 on the first file that fails.
"""
import glob
import json
import os
import subprocess
import sys
import tempfile

SUBST = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "$gateway": ".*"}


def exprs(dashboard):
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield panel.get("title", "?"), target["expr"]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    failed = 0
    for path in sorted(glob.glob(os.path.join(here, "*.json"))):
        dashboard = json.load(open(path, encoding="utf-8"))
        rules = []
        for i, (title, expr) in enumerate(exprs(dashboard)):
            for k, v in SUBST.items():
                expr = expr.replace(k, v)
            rules.append({"record": f"check:query_{i}", "expr": expr})
        if not rules:
            print(f"{path}: no queries")
            failed += 1
            continue
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
            json.dump({"groups": [{"name": "grafana", "rules": rules}]}, f)
        out = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
        os.unlink(f.name)
        if out.returncode != 0:
            print(f"{path}: a query does not parse\n{out.stdout}{out.stderr}")
            failed += 1
        else:
            print(f"{os.path.basename(path)}: {len(rules)} queries parse")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
