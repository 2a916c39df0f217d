"""Peer programs run as scripts under another interpreter (``--peers-python``); never imported
by dlhpc itself, because the peers (TensorFlow, fastText) live in their own environment."""
