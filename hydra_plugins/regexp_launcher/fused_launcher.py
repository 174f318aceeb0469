"""Registers ``hydra/launcher=fused``. The launcher's code is ``regexp.launcher``.

Hydra only instantiates plugins whose classes are defined inside the ``hydra_plugins``
namespace package, so the class is declared here.
"""

from hydra.core.config_store import ConfigStore

from regexp.launcher import FusedLauncherBase, FusedLauncherConf


class FusedLauncher(FusedLauncherBase):
    """Trains a multirun's jobs as fused groups; see ``regexp.launcher``."""


ConfigStore.instance().store(
    group="hydra/launcher", name="fused", node=FusedLauncherConf, provider="regexp"
)
