"""The .nnc format: the byte layout (container.py, standard library only), the bounds a reader
applies before allocating anything (limits.py) and the range coding of integer tables (coding.py,
numpy and constriction). Nothing here knows about predictors beyond their identity."""
