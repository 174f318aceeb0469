"""Registers ``hydra/sweeper=regexp``, the default of ``regexp run -m``: Hydra's basic
sweeper (the same jobs, ``max_batch_size`` and ``params``), less one composition per job.

Before launching a batch, Hydra's ``BasicSweeper`` composes every job of it to find the
jobs that do not compose (``validate_batch_is_legal``), and the launcher then composes
every job again. regexp's fused launchers (``regexp.launcher``) compose, validate and
claim every job themselves before training any, and report a job that does not compose
as one line (``regexp: error: job #N: ...``, exit 2), so under them the sweeper does not
compose the batch first. Under any other launcher it validates as ``BasicSweeper`` does.

Hydra only instantiates plugins whose classes are defined inside the ``hydra_plugins``
namespace package, so the class is declared here.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore

from regexp.launcher import FusedLauncherBase


class RegexpSweeper(BasicSweeper):
    """Hydra's ``BasicSweeper``; a batch for a fused launcher is not composed twice."""

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        if isinstance(self.launcher, FusedLauncherBase):
            return  # the fused launcher composes and checks every job before training any
        super().validate_batch_is_legal(batch)


@dataclass
class RegexpSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.regexp_launcher.sweeper.RegexpSweeper"


ConfigStore.instance().store(
    group="hydra/sweeper", name="regexp", node=RegexpSweeperConf, provider="regexp"
)
