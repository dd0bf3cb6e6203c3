"""The shared vocabulary: names of pathologies, attributes and sources (a leaf: imports nothing).

Every module that names a pathology, an attribute value or a data source takes it from here.
"""

PATHOLOGIES = ("benign", "malignant")  # lesion pathologies: what a recipe plans and a prior shapes
PATHOLOGY_NAMES = ["normal", "benign", "malignant"]  # the `pathology` ClassLabel, in label order
NORMAL = "normal"  # the class without a lesion (real data only)
ECHOGENICITIES = ("homogeneous", "heterogeneous")
BOUNDARIES = ("clear", "unclear")
SOURCE_NAMES = ["real", "synthetic"]  # the `source` ClassLabel, in label order
# The default recipe's tumour size bins (lesion size ranges); imported rows are binned at their edges.
DEFAULT_SIZE_BINS = {"small": (0.08, 0.18), "medium": (0.18, 0.30), "large": (0.30, 0.50)}
