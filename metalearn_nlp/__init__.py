"""metalearn-nlp: meta-learning for NLP, from derivations to few-shot NER.

The package behind the book. Every module is importable on its own; heavy
dependencies (transformers, datasets) are imported lazily by the modules
that need them, so ``import metalearn_nlp`` stays fast.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
