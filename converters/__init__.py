"""Workstation half of edgesr: define, train, distil, quantize, compile and evaluate SR models (TensorFlow)."""
