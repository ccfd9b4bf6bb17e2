#!/usr/bin/env bash
# Dependency audit of the lock file: every locked package (all groups) checked
# with pip-audit against PyPI's vulnerability data. Fails when a known
# vulnerability has a fixed version, and when packages could not be audited at
# all (a mirror without per-version data, no network): an audit that saw
# nothing must not look like a pass.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
uv export --frozen --format requirements-txt --all-groups --no-emit-project --no-hashes -q \
  > "$work/requirements.txt"
uv tool run pip-audit==2.10.1 -r "$work/requirements.txt" --disable-pip --no-deps \
  --format json -o "$work/audit.json" --progress-spinner off 2> >(grep -v '^WARNING' >&2) || true
python3 - "$work/audit.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))["dependencies"]
skipped = [d["name"] for d in report if "skip_reason" in d]
fixable = [(d["name"], d["version"], v["id"], v["fix_versions"])
           for d in report for v in d.get("vulns", []) if v["fix_versions"]]
for name, version, vuln, fixes in fixable:
    print(f"VULNERABLE {name} {version}: {vuln}, fixed in {', '.join(fixes)}")
print(f"audited {len(report) - len(skipped)} of {len(report)} locked packages; "
      f"{len(fixable)} fixable vulnerabilities")
if skipped:
    print(f"could not audit {len(skipped)}: {', '.join(skipped[:8])}"
          f"{' …' if len(skipped) > 8 else ''} (does the index serve /pypi/NAME/VERSION/json?)")
sys.exit(1 if fixable or skipped else 0)
PY
