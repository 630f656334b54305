"""The FS-LSTM predictor: the float model for training (model.py, torch) and the exact integer
model the coder runs (exact.py, backward.py, dyneval.py, predictor.py: numpy only).

The names below come from model.py and are imported on first use, so that the coder's modules
load without torch."""
__all__ = ["CONFIGS", "FORMAT", "VERSION", "FSConfig", "FSRNN", "LNLSTMCell", "bits_per_byte",
           "count_parameters", "get_config"]


def __getattr__(name):
    if name in __all__:
        from . import model
        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
