"""ConvZoo's tools: the `convzoo` command, benchmarks, evaluation and sample photos.

They use the service and the model store; nothing in the service imports them.
"""
