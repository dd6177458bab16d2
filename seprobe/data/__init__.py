"""Data on disk: labelled images in the layouts ImageNet and CIFAR users have, and ImageNet's class list."""
