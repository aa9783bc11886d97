"""FramePack's memory machinery: the residency plan, block streaming from RAM
or disk, 8-bit weight storage, compute dtypes and the section sampling loop. Imports torch;
only the engine (`engine.py`: `loading.py` reads and places the parts, `sampling.py` makes a
transition) and benchmarks use it."""
