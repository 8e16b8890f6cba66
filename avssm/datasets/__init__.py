"""Datasets: procedural road scenes (roads.py) and COCO-format files (coco.py)."""
