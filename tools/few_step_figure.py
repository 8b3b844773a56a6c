"""The figure docs/few_step_distillation.png: the shipped model at DPM-Solver++ 20 above its first stage distilled to
4, 2 and 1 DDIM steps, from the same starting noise (seed 0).

    python tools/few_step_figure.py lab6/assets/model/few-step RUN/steps-2/model RUN/steps-1/model docs
"""

import sys

from lab6.figures.lessons import image_rows
from lab6.loading import load_pipeline
from lab6.sampling import Sampling, generate

CONDITIONS = [["red sphere", "cyan cylinder", "cyan cube"], ["gray cube"], ["blue sphere", "yellow cylinder"],
              ["green cube", "purple sphere"], ["brown cylinder", "red cube", "gray sphere"], ["cyan sphere"],
              ["yellow cube", "blue cylinder"], ["purple cylinder", "green sphere", "brown cube"]]


def main(four: str, two: str, one: str, out: str) -> None:
    rows = {}
    for label, path in [("DPM-Solver++ 20\nw = 3: 44 calls", None), ("distilled\nDDIM 4: 5 calls", four),
                        ("distilled\nDDIM 2: 3 calls", two), ("distilled\nDDIM 1: 2 calls", one)]:
        rows[label] = generate(load_pipeline(path), CONDITIONS, Sampling(seed=0), progress=False).images
    image_rows(rows, out, "few_step_distillation", titles=["\n".join(c) for c in CONDITIONS])


if __name__ == "__main__":
    main(*sys.argv[1:5])
