"""Training of SpineFM stages: ``python -m ml train {pretrain,gram,align,synthesizer} CONFIG k=v ...``."""
