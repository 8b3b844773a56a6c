"""Ship a few-step distilled first stage inside the shipped model's folder (``lab6/assets/model/few-step``).

    python tools/ship_few_step.py --model runs/few-step [--bench bench-sampling.json]

The run is ``lab6 distill --model lab6/assets/model --to-steps N``'s. What is written is its first stage alone (the
refiner it draws with is the shipped model's own, ``lab6.loading.save_first_stage``: no second copy in git), its
weights as fp16 (half the bytes; they load back as fp32), its DDIM scheduler, its record without this machine's
paths, and a short model card; ``--bench`` (``bench.bench_sampling --json``) puts the measured table on the card.
The label picker then opens on it (``lab6.loading.few_step_model``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from lab6.loading import FEW_STEP, load_pipeline, save_first_stage
from lab6.run_files import SHIPPED_MODEL

sys.path.insert(0, str(Path(__file__).parent))  # its sibling, also when loaded by path (the tests)
from ship_model import without_machine_paths  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="the distilled model (or run) to ship")
    parser.add_argument("--bench", type=Path, default=None, help="bench_sampling --json output for the card")
    parser.add_argument("--into", type=Path, default=SHIPPED_MODEL, help=argparse.SUPPRESS)  # tests write elsewhere
    args = parser.parse_args(argv)
    return ship(args.model, args.into, json.loads(args.bench.read_text()) if args.bench else None)


def ship(model: Path, into: Path, bench: dict | None = None) -> Path:
    """Write ``model``'s first stage into ``into/few-step``, refusing one whose refiner is not ``into``'s."""
    source, pair = load_pipeline(model), load_pipeline(into)
    theirs, ours = source.refiner.state_dict(), pair.refiner.state_dict()
    if theirs.keys() != ours.keys() or not all(torch.equal(theirs[k], ours[k]) for k in ours):
        raise SystemExit(f"{model}'s refiner is not {into}'s: distil from {into} (lab6 distill --model {into})")
    if (source.metadata.get("distilled") or {}).get("kind") != "progressive":
        raise SystemExit(f"{model} is not a few-step model (lab6 distill --to-steps N writes one)")
    source.unet.to(torch.float16).register_to_config(_name_or_path=f"lab6/assets/model/{FEW_STEP}/unet")
    target = save_first_stage(source, into / FEW_STEP, without_machine_paths(source.metadata), stages_of=into)
    (target / "README.md").write_text(card(load_pipeline(target), bench))
    return target


def card(pipe, bench: dict | None) -> str:
    """The few-step folder's model card: what it is, how it draws, how it was made, and what was measured."""
    distilled, stages = pipe.metadata["distilled"], []
    record = pipe.metadata
    while record:
        if record.get("distilled"):
            stages.append(f"- {record['distilled']['kind']} distillation: {record.get('train_step', '?')} steps, "
                          f"{record.get('train_minutes', '?')} minutes on {record.get('processes', 1)} process(es)")
        record = record.get("parent")
    lines = ["# lab6 few-step first stage", "",
             f"The shipped model's first stage distilled to **{distilled['steps']} DDIM steps, one network call "
             f"each** (guidance w = {pipe.guidance_scale:g}: learnt, not computed), drawn with the shipped model's "
             "refiner (`first_stage_of: ..` in `lab6.json`). `lab6.loading.load_pipeline` reads it as a whole "
             "two-stage model; the label picker opens on it.", "",
             "Made by `lab6 distill --model lab6/assets/model --to-steps "
             f"{distilled['steps']}` (`lab6.progressive`), newest run first:", "", *stages, "",
             "Measured: [docs/samplers.md](../../../../docs/samplers.md#few-step-distillation)."]
    if bench:  # bench_sampling's table and the person-scale test's controls, as printed, with no machine's paths
        table = "\n".join(bench["table"])
        for row in bench.get("rows", []):
            if "/" in str(row.get("model")):
                path = Path(row["model"])
                table = table.replace(str(path), path.parent.name if path.name == "model" else path.name)
        lines += ["", f"`python -m bench.bench_sampling` ({bench['seeds']} seeds, {bench['threads']} thread):", "",
                  table, "", *bench.get("controls", [])]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    main()
