r"""igraphflow: conditional generative modelling on graphs.

One invertible flow between node features given labels, :math:`X | Y`, and a factorized
Gaussian-mixture latent :math:`H | Y`, built from neural-ODE blocks with graph-convolution
velocity fields and trained block by block as steps of the JKO scheme.
"""

__all__ = ["ConditionalGraphFlow", "GaussianMixtureLatent", "ODEBlock", "__version__"]

__version__ = "0.1.0"

from .flow import ConditionalGraphFlow
from .latent import GaussianMixtureLatent
from .ode import ODEBlock
