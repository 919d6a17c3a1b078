r"""Graph layers and velocity fields."""

__all__ = ["L3NetConv", "StaticChebConv", "StaticGCNConv", "HopMeans", "GraphVelocityField", "make_conv"]

from .cheb import StaticChebConv
from .gcn import StaticGCNConv
from .hop_means import HopMeans
from .l3net import L3NetConv
from .velocity import GraphVelocityField, make_conv
