"""DyadGen: two voices of a conversation in, a video of both people talking and listening out.

Importing the package is cheap: it builds no model and imports no torch. Heavy parts load where
they are used (``dyadgen.models``, ``dyadgen.inference.pipeline``, ``dyadgen.encoders``).
"""

__version__ = "0.1.0"
