#!/bin/sh
# A fresh clone as a machine of another CPU class sees it (an AMX one, say): none of the committed native rows,
# studies or benches are of its class, so `make run` computes them all; emulated rows stay (they do not depend on the
# host's class). How `make run`'s time on another class was measured (README). Caches are empty.
# Usage: tools/another_class_clone.sh DIR, then: cd DIR && QUANT_EXPLORER_CACHE=DIR.cache \
#   TORCHINDUCTOR_CACHE_DIR=DIR.inductor make run
set -eu
[ $# -eq 1 ] || { echo "usage: $0 DIR (a new folder)"; exit 2; }
[ ! -e "$1" ] || { echo "$1 exists: name a new folder"; exit 2; }
SOURCE=$(git rev-parse --show-toplevel)
HOST=$("$SOURCE/.venv/bin/python" -c "from quant_explorer.identity import cpu_class; print(cpu_class())")
git clone -q "$SOURCE" "$1"
rm -rf "$1.cache" "$1.inductor"
cd "$1"
python3 - "$HOST" <<'PY'
import json, sys
from pathlib import Path
results = Path("artifacts/results")
for name in ("full_results.json", "calibration_size.json", "layer_sensitivity.json"):
    document = json.loads((results / name).read_text())
    identities = {key: entry.get("identity") or {} for key, entry in document["entries"].items()}
    kept = {key: document["entries"][key] for key, identity in identities.items()
            if identity.get("cpu_class") != sys.argv[1] or identity.get("emulated")}
    print(f"{name}: {len(document['entries']) - len(kept)} native {sys.argv[1]} entries removed")
    document["entries"] = kept
    (results / name).write_text(json.dumps(document, indent=1))
for bench in results.glob("bench_*.json"):
    if bench.name != "bench_profile.json":
        bench.unlink()
        print(f"{bench.name} removed")
PY
