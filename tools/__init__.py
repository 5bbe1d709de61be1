"""ConvZoo's tools: benchmarks, evaluation, sample photos and the `convzoo` entry point.

They use the service and the model store; nothing in the service imports them.
"""
