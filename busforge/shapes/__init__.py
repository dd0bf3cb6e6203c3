"""Lesion shapes: the shape model and its masks (`lesion`), shape statistics of masks (`stats`),
priors that choose shape parameters (`priors`, shipped priors in `data/`) and fitting a prior on
real masks (`calibrate`)."""
