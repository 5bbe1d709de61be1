"""Transfer learning: a new classifier head trained on a stored backbone's features.

`python -m model_store finetune NAME --backbone MODEL --data DIR` embeds an image folder
through the backbone's stored graph (its `features` output, with the backbone's served
preprocessing), trains a linear head on a stratified split, optionally with augmented views
(`--augment K`) and with the backbone's last stages trained too (`--unfreeze N`), measures the
held-out split, and stores backbone plus head as one ONNX graph: a user model, served like any
registry model. The seed's workflow (shared/seeds/004, "Transfer Learning"): freeze the
pretrained layers, precompute their activations once, and train only what follows.

Modules: `images` (decoding), `dataset` (the folder, its digest and split), `augment` (training
views), `embedding` (batched ONNX Runtime passes), `head` (the linear head), `network` (backbone
plus head as one module), `stages` (what --unfreeze counts), `unfreeze` (training the last
stages), `user_models` (user models in the store), `pipeline` (the command), `digits_folder`
(scikit-learn's digits as an image folder, for the measured example).
"""
