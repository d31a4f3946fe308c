"""Run every notebook in quick mode under ``pytest --nbval-lax notebooks``.

The kernels nbval starts inherit this process's environment, so setting the
variables here switches the notebooks to the small generated dataset and a
scratch folder for runs, without editing any notebook.
"""

import os
import shutil
import tempfile

_scratch = tempfile.mkdtemp(prefix="alexnet_nb_quick_")
os.environ["ALEXNET_NB_QUICK"] = "1"
os.environ["ALEXNET_NB_DATA"] = os.path.join(_scratch, "data")
os.environ["ALEXNET_NB_RUNS"] = os.path.join(_scratch, "runs")


def pytest_unconfigure(config):
    # The notebooks' runs hold full-size checkpoints (hundreds of MB); a suite
    # run many times must not fill the disk with them.
    shutil.rmtree(_scratch, ignore_errors=True)
