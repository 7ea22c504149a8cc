"""The names of the optimization methods and HRP linkages.

Importable without scipy or scikit-learn: the params model validates `optimization.method`
and `optimization.linkage` against them, and `optimize.py` maps each name to its optimizer.
"""

OPTIMIZATION_METHODS = ("equal_weight", "inverse_vol", "min_variance", "max_sharpe", "risk_parity", "hrp", "cluster_two_layer")
LINKAGE_METHODS = ("single", "complete", "average", "weighted", "ward")
