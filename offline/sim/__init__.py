"""The ground-truth session simulator (DESIGN section 7), apart from the builder.

A V1 population on Allen-like stimulus blocks, written in the real layouts (Allen NWB, Open Ephys
Binary on a Neuropixels 1.0 geometry, stimulus log, ground truth). Every test and benchmark
starts here; the builder reads what it writes with the same readers it uses on real data.
"""
