#!/usr/bin/env python3
"""Per-cell table of a `comir experiment` study: success, effective ranks (dimensional collapse)
and modality-gap ratios, from each cell's cell.json and analysis CSVs.

  python3 docs/study-2023/summarize.py STUDY_DIR [SEED] > cells.md
"""
import csv
import json
import os
import sys

base = sys.argv[1] if len(sys.argv) > 1 else "study-2023"
seed = sys.argv[2] if len(sys.argv) > 2 else "0"
print("| dataset | variant | critic | steps | comir+aamd success | eff. rank repr. A / B "
      "| eff. rank bottleneck A / B | eff. rank pooled A / B | gap ratio repr. | gap ratio bottleneck |")
print("|---|---|---|---|---|---|---|---|---|---|")
for ds in ["histology", "mni152"]:
    for v in ["off", "flat", "pooled", "projection"]:
        for c in ["mse", "cosine", "l1"]:
            cell = os.path.join(base, ds, f"{v}-{c}-seed{seed}")
            if not os.path.isfile(os.path.join(cell, "cell.json")):
                continue
            r = json.load(open(os.path.join(cell, "cell.json")))[0]
            s = {(x["layer"], x["modality"]): float(x["effective_rank"])
                 for x in csv.DictReader(open(os.path.join(cell, "analysis", "spectrum-summary.csv")))}
            g = {x["layer"]: float(x["ratio"])
                 for x in csv.DictReader(open(os.path.join(cell, "analysis", "modality-gap.csv")))}

            def ranks(layer):
                return f"{s[(layer, 'A')]:.1f} / {s[(layer, 'B')]:.1f}"
            print(f"| {ds} | {v} | {c} | {r['steps']} | {r['successes']}/{r['cases']} "
                  f"({100 * r['rate']:.1f} %) | {ranks('representation')} | {ranks('bottleneck')} "
                  f"| {ranks('bottleneck-pooled')} | {g['representation']:.2f} | {g['bottleneck']:.2f} |")
