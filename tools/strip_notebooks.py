#!/usr/bin/env python3
"""Strip outputs, execution counts and run-time metadata from Jupyter notebooks, so commits hold only sources.

    python tools/strip_notebooks.py                   # every notebooks/*.ipynb, in place
    python tools/strip_notebooks.py a.ipynb b.ipynb   # the given notebooks
    python tools/strip_notebooks.py --check           # change nothing; exit 1 and name the notebooks to strip

Exit status 1 when a notebook was (or, with --check, would be) changed: the convention of pre-commit hooks.
As a hook of the pre-commit framework (.pre-commit-config.yaml):

    repos:
      - repo: local
        hooks:
          - id: strip-notebooks
            name: strip notebook outputs
            entry: python tools/strip_notebooks.py
            language: system
            files: \\.ipynb$

or as a plain git hook: ``printf '#!/bin/sh\\nexec python3 tools/strip_notebooks.py --check\\n' >
.git/hooks/pre-commit && chmod +x .git/hooks/pre-commit`` (refuses the commit until you run the script).
Only the standard library is used (a notebook is JSON), so the hook runs outside the project's environment.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Notebook-level metadata written by a run or a front end, not by the author.
VOLATILE_METADATA = ("widgets", "varInspector", "toc", "execution", "vscode", "colab")
VOLATILE_CELL_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime", "jupyter", "tags_cache")


def strip(notebook: dict) -> dict:
    """The notebook without outputs, execution counts and volatile metadata (cell ids and sources kept)."""
    for key in VOLATILE_METADATA:
        notebook.get("metadata", {}).pop(key, None)
    language = notebook.get("metadata", {}).get("language_info")
    if isinstance(language, dict):  # keep the language name, drop the version details of the last kernel
        notebook["metadata"]["language_info"] = {"name": language.get("name", "python")}
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        for key in VOLATILE_CELL_METADATA:
            cell.get("metadata", {}).pop(key, None)
    return notebook


def dumps(notebook: dict) -> str:
    """Jupyter's own on-disk layout (one-space indent, sorted keys, trailing newline)."""
    return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def process(path: Path, check: bool) -> bool:
    """Strip one notebook; returns whether it changed (or would change)."""
    text = path.read_text(encoding="utf-8")
    stripped = dumps(strip(json.loads(text)))
    if stripped == text:
        return False
    if not check:
        path.write_text(stripped, encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--check", action="store_true", help="report only; exit 1 if a notebook needs stripping")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    changed = [p for p in paths if process(p, args.check)]
    for path in changed:
        print(f"{'needs stripping' if args.check else 'stripped'}: {path}")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
