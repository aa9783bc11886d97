"""FramePack's memory machinery: the residency plan, block streaming from RAM
or disk, 8-bit weight storage, compute dtypes and the section sampling loop. Imports torch;
only `backend.pipeline.framepack.generator` and benchmarks use it."""
