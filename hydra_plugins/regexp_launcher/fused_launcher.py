"""Registers the fused launchers. Their code is ``regexp.launcher``.

- ``hydra/launcher=fused`` (the default for ``regexp run -m``): groups train here;
- ``fused_submitit_local``, ``fused_submitit_slurm``: one submitit job per group, with
  every setting of hydra-submitit-launcher (the ``cluster`` extra);
- ``fused_ray``: one Ray task per group, with hydra-ray-launcher's ``ray`` settings
  (the ``ray`` extra).

Hydra only instantiates plugins whose classes are defined inside the ``hydra_plugins``
namespace package, so the classes are declared here. A launcher whose library is not
installed is not registered.
"""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from regexp.launcher import FusedLauncherBase, FusedLauncherConf, RayDispatch, SubmititDispatch

HERE = "hydra_plugins.regexp_launcher.fused_launcher"


class FusedLauncher(FusedLauncherBase):
    """Trains a multirun's jobs as fused groups, in this process; see ``regexp.launcher``."""


class FusedSubmititLocalLauncher(SubmititDispatch):
    """One local submitit process per fused group."""

    cluster = "local"


class FusedSubmititSlurmLauncher(SubmititDispatch):
    """One Slurm job per fused group."""

    cluster = "slurm"


class FusedRayLauncher(RayDispatch):
    """One Ray task per fused group."""


store = ConfigStore.instance()
store.store(group="hydra/launcher", name="fused", node=FusedLauncherConf, provider="regexp")

try:  # the cluster extra
    from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf
except ImportError:
    pass
else:

    @dataclass
    class FusedSubmititLocalConf(LocalQueueConf):
        _target_: str = f"{HERE}.FusedSubmititLocalLauncher"
        max_members: int = 100  # the largest group trained as one model (one job)

    @dataclass
    class FusedSubmititSlurmConf(SlurmQueueConf):
        _target_: str = f"{HERE}.FusedSubmititSlurmLauncher"
        max_members: int = 100

    for name, node in (
        ("fused_submitit_local", FusedSubmititLocalConf),
        ("fused_submitit_slurm", FusedSubmititSlurmConf),
    ):
        store.store(group="hydra/launcher", name=name, node=node, provider="regexp")

try:  # the ray extra
    from hydra_plugins.hydra_ray_launcher._config import RayLauncherConf
except ImportError:
    pass
else:

    @dataclass
    class FusedRayConf(RayLauncherConf):
        _target_: str = f"{HERE}.FusedRayLauncher"
        max_members: int = 100

    store.store(group="hydra/launcher", name="fused_ray", node=FusedRayConf, provider="regexp")
