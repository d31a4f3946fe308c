"""AlexNet (Krizhevsky, Sutskever and Hinton, 2012) on Tiny ImageNet.

Modules, each with one job: ``env`` (where things live, quick mode),
``download`` (fetching the official archive), ``data`` (decoding, caching,
holdout), ``synthetic`` (a small generated dataset in the official layout),
``model`` (the network), ``augment`` (batched on-device augmentation),
``train`` (the training loop and its CLI), ``evaluate`` (accuracy),
``analysis`` and ``plots`` (what the results notebook draws), ``bench``
(throughput benchmarks). Import them explicitly: ``from alexnet_nb import data``.
"""

__version__ = "0.1.0"
