"""ConvZoo's wire contract, shared by the server (`service`) and the SDK (`clients`).

Neither of them imports the other; both import this package, which imports neither. It holds
the Open Inference Protocol's .proto and generated stubs (`contract._proto`), the names the
OIP adapters and the SDK agree on (inputs, outputs, datatypes, pseudo-models, parameters and
how Python values travel as parameters: `contract.oip`), and the error codes and metadata
keys every transport carries (`contract.errors`).
"""
