"""ConvZoo against the serving systems its users would pick instead, on the photos users send.

The product's bar: on real photos (camera JPEGs of 3-12 MP), ConvZoo serves clearly more than
TorchServe, Triton (PyTriton), LitServe or plain BentoML serving the same ONNX model. This
package measures that:

- every system serves the same file, efficientnet_lite0's stored `model.onnx`, on ONNX
  Runtime's CPU provider; each peer through its own documented API (servers/), all with one
  handler (servers/classifier.py): Pillow's full decode, resize, centre crop, normalisation
  with the model's mean/std, softmax top-5;
- each peer in its own virtual environment (venvs.py), laid out for this machine's cores
  (one model copy per core, one ONNX Runtime thread each, by default) with the dynamic
  batching it offers, at ConvZoo's default largest batch and wait;
- ConvZoo as `make serve` runs it, on its default configuration;
- before any load, each system's top-1 label for each photo, checked against ConvZoo's;
- one aiohttp load generator for all (tools/load.py), N concurrent clients for a fixed time per
  round, rounds alternating between systems (this machine's speed drifts), medians and
  spread reported, with ConvZoo's throughput over each peer's (report.py).
"""
