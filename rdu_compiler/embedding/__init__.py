"""Embedding tables for recommendation models (issue 16): Monolith's collisionless table
over raw 64-bit IDs, its admission filters and sparse optimizers, and the fixed-row hashed
table it replaces (the collision baseline)."""

from rdu_compiler.embedding.admission import CountingFilter, ProbabilisticFilter
from rdu_compiler.embedding.hashed import HashedTable
from rdu_compiler.embedding.optim import SGD, Adagrad
from rdu_compiler.embedding.table import CollisionlessTable, TableFullError

__all__ = ["CollisionlessTable", "CountingFilter", "ProbabilisticFilter", "HashedTable", "SGD", "Adagrad", "TableFullError"]
