"""Graph-to-graph passes run on a function's outputs before scheduling.

Most simplification happens as nodes are built (each op's `canon` rules, and hash-consing
for common subexpressions), so every graph is already canonical; a pass here is for
rewrites that need to see the whole graph, such as how often a node is used.
"""

from .matchain import reorder_matrix_chains
from .rebuild import rebuild

__all__ = ["rebuild", "reorder_matrix_chains"]
