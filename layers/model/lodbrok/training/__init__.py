"""Training and fine-tuning with Keras: the only folder that may import TensorFlow, and only lazily.

Everything outside this folder runs without TensorFlow installed (the predict function's layer has none).
"""
