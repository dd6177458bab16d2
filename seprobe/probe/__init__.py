"""Probes of trained SE networks: labelled images, ImageNet class names, loading seprobe / timm / torchvision
models, finding their gates, streaming gate statistics and the class-specific activation analysis (Sec. 7.2)."""
