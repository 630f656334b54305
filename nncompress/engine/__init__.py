"""The engine: the one lockstep loop that compression and decompression both run (loop.py) and
the second process that range-codes while the predictor runs (coder_process.py)."""
from .loop import (Progress, RunStats, choose_segment_steps, choose_streams, codes_segments,
                   decode_body, encode, fit_streams, measure, segments, use_coder_process)

__all__ = ["Progress", "RunStats", "choose_segment_steps", "choose_streams", "codes_segments",
           "decode_body", "encode", "fit_streams", "measure", "segments", "use_coder_process"]
