"""The FS-LSTM predictor: float model for training (model.py)."""
from .model import (CONFIGS, FORMAT, VERSION, FSConfig, FSRNN, LNLSTMCell, bits_per_byte,
                    count_parameters, get_config)

__all__ = ["CONFIGS", "FORMAT", "VERSION", "FSConfig", "FSRNN", "LNLSTMCell", "bits_per_byte",
           "count_parameters", "get_config"]
