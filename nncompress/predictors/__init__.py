"""Predictors: models that give, for each of S streams, integer weights for the next byte."""
