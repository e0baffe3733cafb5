"""The evaluation tasks under their old names.

# transitional: remove when benchmark/cli use rcl.tasks / rcl.methods / fit

The tasks are defined once, in :mod:`rcl.tasks`; these subclasses only add the old name
``prepare`` of :meth:`rcl.tasks.Task.degrade`.
"""

from __future__ import annotations

from ..tasks import DenoiseTask as _DenoiseTask
from ..tasks import JDDTask as _JDDTask
from ..tasks import SRTask as _SRTask
from ..tasks import task_from_metadata


class DenoiseTask(_DenoiseTask):
    prepare = _DenoiseTask.degrade


class SRTask(_SRTask):
    prepare = _SRTask.degrade


class JDDTask(_JDDTask):
    prepare = _JDDTask.degrade


__all__ = ["DenoiseTask", "JDDTask", "SRTask", "task_from_metadata"]
