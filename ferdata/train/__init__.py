"""The bundled trainer: ResNet-18 under the MSD-E protocol (paper, section 3).

torch is imported only inside this package, and only by the modules that need it, so importing
``ferdata`` stays cheap. The entry point is :func:`ferdata.train.loop.train_baseline`.

- :mod:`.config` the run's options (:class:`~ferdata.train.config.TrainConfig`) and their checks, no torch
- :mod:`.data`   a workspace or a published folder -> aligned faces as in-memory uint8 tensors
- :mod:`.models` ResNet-18 with a feature output, ``--init`` key mapping, checkpoints
- :mod:`.losses` the contrastive (CL) and distillation (KD) objectives
- :mod:`.loop`   the k-fold loop: Adam with two parameter groups, MultiStepLR, resumable by fold
- :mod:`.report` results.json / results.md from oof.parquet, confusion matrices, t-SNE
"""
