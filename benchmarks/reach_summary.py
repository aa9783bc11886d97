"""One line per reach run (framepack_gpu.py JSON files): plan, peak RSS, VRAM, s/step, ratio.

    python benchmarks/reach_summary.py OUT/*.json

The ratio is against the resident bf16 run of the same bucket among the files given.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(paths: list[str]) -> None:
    runs = {}
    for p in paths:
        try:
            runs[Path(p).stem] = json.loads(Path(p).read_text())
        except (OSError, ValueError):
            continue
    resident = {
        r["size"]: r["ours"]["s_per_step"]
        for r in runs.values()
        if r.get("mode") == "resident" and not r.get("profile") and r.get("ours", {}).get("s_per_step")
    }
    print("run | plan dtype/weights GPU/RAM/disk | RSS load / job GiB | alloc / reserved GiB (cap) | s/step | ratio")
    for name, r in sorted(runs.items()):
        if "size" not in r:
            continue
        o, plan = r.get("ours", {}), r.get("plan") or {}
        tiers = "/".join(str(plan.get(k, "-")) for k in ("blocks_gpu", "blocks_ram", "blocks_disk"))
        s = o.get("s_per_step")
        ratio = f"{s / resident[r['size']]:.3f}x" if s and resident.get(r["size"]) else "-"
        load = r.get("ours_load_peak_rss_gib")
        print(
            f"{name} | {plan.get('dtype', '-')}/{plan.get('weights', '-')} {tiers} | "
            f"{load if load is None else round(load, 2)} / {round(o.get('peak_rss_gib', 0), 2)} | "
            f"{round(o.get('peak_allocated_gib', 0), 3)} / {round(o.get('peak_reserved_gib', 0), 4)} "
            f"({r.get('allocator_cap_gib', '-')} under {r.get('vram_limit_gib', '-')}) | "
            f"{s if s is None else round(s, 3)} | {ratio}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
