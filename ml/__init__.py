"""SpineFM and its agents: the machine-learning half of SpineReview.

This package never imports Django. The web application reaches it through one bridge
module (``reviewer/ml_bridge.py``); training and evaluation run from ``python -m ml ...``.
"""

__version__ = "0.1.0"
