"""The Wan first-last-frame engine, Wan 2.1 FLF2V or Wan 2.2 I2V A14B (diffusers' `WanImageToVideoPipeline(image=…, last_image=…)`).

`wan_spec.py` holds the model's facts and the slider mapping (no torch), `wan_loading.py` reads and
places the pipeline, `distill_lora.py` the fast mode's distillation LoRA, `wan_sampling.py` one
transition, and `wan_engine.py` joins them behind the studio's engine interface.
"""
