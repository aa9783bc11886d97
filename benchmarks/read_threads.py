"""How fast disk-tier blocks come back with 1, 2, 4, 8 reader threads (the block streamer's reads).

Writes `--blocks` files of one 8-bit dual block's size (340 MB) with `write_block`, reads each
once to warm the page cache (the profile runs read from it too: their machine's RAM holds the
files), then reads all of them into one pinned buffer per block slot, in page-aligned slices, as
`BlockStreamer` does. Prints GiB/s per thread count; the median of `--repeats` passes.

    python benchmarks/read_threads.py --dir /tmp/read-bench --blocks 8
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GIB = 1024**3


def main(argv: list[str] | None = None) -> dict:
    import torch

    from backend.pipeline.framepack.block_stream import _read_range, _slices, write_block
    from backend.pipeline.framepack.pinned import pinned_empty
    from backend.pipeline.framepack.residency import DUAL_BLOCK_BYTES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/read-bench"))
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--block-bytes", type=int, default=DUAL_BLOCK_BYTES["8bit"])
    ap.add_argument("--threads", default="1,2,4,8")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    files = [
        write_block([torch.randint(0, 255, (args.block_bytes,), dtype=torch.uint8)], args.dir / f"b{i}.bin")
        for i in range(args.blocks)
    ]
    buffer = pinned_empty(files[0].nbytes, cuda)
    view = memoryview(buffer.numpy())
    for f in files:  # into the page cache
        _read_range(f.path, view, 0, f.nbytes)
    total = sum(f.nbytes for f in files)
    result = {"block_bytes": files[0].nbytes, "blocks": len(files), "pinned": cuda, "gib_per_s": {}}
    for n in (int(x) for x in args.threads.split(",")):
        with ThreadPoolExecutor(n) as pool:
            rates = []
            for _ in range(args.repeats):
                began = time.perf_counter()
                for f in files:  # one block after another, as the GPU asks for them
                    for fut in [pool.submit(_read_range, f.path, view, lo, hi) for lo, hi in _slices(f.nbytes, n)]:
                        fut.result()
                rates.append(total / GIB / (time.perf_counter() - began))
        result["gib_per_s"][n] = round(statistics.median(rates), 2)
        print(f"{n} thread(s): {result['gib_per_s'][n]} GiB/s (median of {args.repeats}, {total / GIB:.2f} GiB)")
    shutil.rmtree(args.dir, ignore_errors=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
