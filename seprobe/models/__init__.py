"""The SE block (the paper's Eq. 1-4) and the architectures that carry it: the model zoo, the list of a
model's SE blocks, and checkpoint interop with timm and Cadene."""
