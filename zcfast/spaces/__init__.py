"""Search spaces. ``nb201``: NAS-Bench-201 (15,625 cells)."""
