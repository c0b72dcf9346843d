"""/kb: the knowledge base (versioned articles, searched through a bigram index)."""
from __future__ import annotations
