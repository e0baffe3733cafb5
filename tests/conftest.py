"""Shared test settings.

torch runs on one thread in the tests: the suite is made of many small ops, where threads add
overhead, and on a busy 2-core machine two threads per process oversubscribe the CPU badly.
"""

import torch

torch.set_num_threads(1)
