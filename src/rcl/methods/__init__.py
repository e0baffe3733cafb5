"""Training methods: the registry and the built-in methods.

==========  =====================  ===========================================  =====  ==========
name        class                  paper                                        trains zero_label
==========  =====================  ===========================================  =====  ==========
rcl         :class:`RCL`           Dong et al., 2022 (arXiv 2106.10070)         yes    yes
simclr      :class:`SimCLR`        Chen et al., 2020 (ICML)                     yes    no
n2v         :class:`N2V`           Krull et al., 2019 (CVPR)                    yes    yes
n2s         :class:`N2S`           Batson & Royer, 2019 (ICML)                  yes    yes
ne2ne       :class:`Ne2Ne`         Huang et al., 2021 (CVPR)                    yes    yes
none        :class:`NoPretraining` (random initialisation)                      no     no
supervised  :class:`Supervised`    (fine-tuning on labels; ``supervised``)      yes    no
==========  =====================  ===========================================  =====  ==========

Every method runs through :func:`rcl.training.fit`. A new method subclasses :class:`Method`, gives
its own ``Config`` and registers itself with :func:`register_method`; callers use the traits
(``trains``, ``zero_label``, ``supervised``) and :meth:`Method.predictor`, never the name.
"""

from .base import METHODS, Method, Predictor, get_method, register_method

# isort: off  (import order = registration order = METHODS order)
from .rcl import RCL, PretrainConfig, RCLConfig
from .simclr import SimCLR, SimCLRConfig, color_jitter
from .n2v import N2V, N2VConfig
from .n2s import N2S, N2SConfig, n2s_predict
from .ne2ne import Ne2Ne, Ne2NeConfig
from .none import NoneConfig, NoPretraining
from .supervised import FinetuneConfig, Supervised
# isort: on

PRETRAINING_METHODS: tuple[str, ...] = tuple(name for name, cls in METHODS.items() if not cls.supervised)
"""Names of the built-in methods that are not supervised (pre-training methods), in order."""

__all__ = ["FinetuneConfig", "METHODS", "Method", "N2S", "N2SConfig", "N2V", "N2VConfig", "Ne2Ne", "Ne2NeConfig",
           "NoPretraining", "NoneConfig", "PRETRAINING_METHODS", "PretrainConfig", "Predictor", "RCL", "RCLConfig",
           "SimCLR", "SimCLRConfig", "Supervised", "color_jitter", "get_method", "n2s_predict", "register_method"]
