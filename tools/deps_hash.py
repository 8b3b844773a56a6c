"""Print a short hash of pyproject.toml's dependency lists: the key of the cached environment."""

import hashlib
import json
from pathlib import Path

import tomllib

project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
key = [project["requires-python"], project["dependencies"], project["optional-dependencies"]]
print(hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12])
