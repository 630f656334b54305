"""Tools above the compressor: training (train.py), export of a trained model into the shipped
integer form (export.py) and the benchmark report (bench.py). They import the core; the core
(container, coding, predictors, engine, api, cli's compress/decompress path) never imports them,
and the CLI loads them only when their command runs."""
