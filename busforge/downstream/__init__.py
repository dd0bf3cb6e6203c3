"""Downstream use of busforge datasets: training and testing segmenters and classifiers on them,
and exporting them for other frameworks (nnU-Net)."""
