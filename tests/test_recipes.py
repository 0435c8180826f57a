"""Every change to the code that makes a backend's numbers is a decision: bump its `recipe_version` (its stored rows
are then recomputed, never reused) or, for a change that moves no number, record the new source as it is."""

import json
from pathlib import Path

from quant_explorer.backends import BACKENDS, recipe_source

RECORD = Path(__file__).with_name("recipe_sources.json")


def test_no_backend_code_changes_without_a_decision_on_its_recipe_version():
    recorded = json.loads(RECORD.read_text())
    now = {name: [backend.recipe_version, recipe_source(name)] for name, backend in BACKENDS.items()}
    changed = {name: value for name, value in now.items() if recorded.get(name) != value}
    assert not changed, (
        f"the code behind {', '.join(changed)} changed: if it can change a number, bump the backend's recipe_version "
        f"(its rows are recomputed); either way record {json.dumps(changed)} in {RECORD.name}")
