"""AlexNet (Krizhevsky, Sutskever and Hinton, 2012) on Tiny ImageNet.

Modules, each with one job (README lists them by task): data -- ``env``,
``download``, ``sources``, ``readers``, ``cache``, ``data``, ``synthetic``;
the network -- ``model``, ``lrn``; augmentation and scoring -- ``augment``,
``evaluate``; training -- ``config`` (settings, recipes), ``cli``,
``schedules``, ``step``, ``train``, ``stopping``, ``checkpoint``,
``run_folder``, ``summary``, ``files``; speed -- ``bench``, ``speed``,
``bench_record``, ``baseline``; the GPU plan -- ``plan``, ``runner``,
``child_process``, ``experiments``, ``warm``, ``dataset_parts``, ``archives``,
``report``, ``chapters``, ``plan_chapters``; the chapters --
``analysis``, ``confusion``, ``neighbours``, ``explore``, ``relu_tanh``,
``plots``, ``pictures``, ``diagram``, ``runtime``.
Import them explicitly: ``from alexnet_nb import data``.
"""

__version__ = "0.1.0"
