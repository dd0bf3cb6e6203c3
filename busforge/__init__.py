"""busforge: synthetic breast-ultrasound datasets from declarative recipes."""

__version__ = "0.1.0"
