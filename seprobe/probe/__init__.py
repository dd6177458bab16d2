"""Probes of trained SE networks: passes over labelled images (top-1 / top-5), hooks on the gates, streaming gate
statistics class by class, the class-specific activation analysis (Sec. 7.2), and what each SE block is worth when
it is replaced (ablation: calibration means, the prefix computed once, paired bootstrap intervals)."""
