r"""igraphflow: conditional generative modelling on graphs."""

__version__ = "0.1.0"
