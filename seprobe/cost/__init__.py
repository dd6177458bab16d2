"""What SE costs: SE-aware multiply-add counting (fvcore), parameters against the network without SE, and
forward / forward+backward timing (the paper's Sec. 4)."""
