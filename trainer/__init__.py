"""Concept Trainer engine: teach a linear head on CLIP embeddings a concept in a few rounds of labelling.

Nothing here imports Gradio; the app (app.py) only lays out and wires.
"""
