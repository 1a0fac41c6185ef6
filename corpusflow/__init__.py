"""corpusflow: raw Chinese text -> ALBERT/NEZHA/BERT pretraining data.

The core logic lives here and imports no Beam; ``pipelines/`` composes it.
"""

__version__ = "0.1.0"
