"""Plot accuracy against training minutes for several runs (their eval.csv), e.g. for docs/.

    python tools/plot_runs.py runs/ref-cpu-v runs/study-v-L1 --out docs
"""

import argparse
from pathlib import Path

from lab6.figures import accuracy_vs_minutes

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("runs", nargs="+", type=Path)
parser.add_argument("--out", type=Path, default=Path("docs"))
parser.add_argument("--name", default="accuracy_vs_cpu_minutes")
parser.add_argument("--splits", nargs="+", default=["test", "new_test"], help="average these splits' accuracy")
args = parser.parse_args()
accuracy_vs_minutes(args.runs, args.out, args.name, splits=args.splits)
print(f"written {args.out / args.name}.png and .pdf")
