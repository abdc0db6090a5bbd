"""Face colorization from first principles: the single source of truth the notebooks import.

Modules (docs/CONTRACTS.md lists each one's public names): ``color`` (sRGB <-> Lab),
``data`` (face folders, splits, toy faces), ``models`` (U-Net generator, PatchGAN),
``losses``, ``metrics``, ``pretrained`` (offline weights), ``config`` (``TrainConfig``),
``train`` (the D and G steps, the loop), ``checkpoint``, ``evaluate``, ``colorize``, ``viz``.
Import what you need, e.g. ``from lib.color import rgb_to_lab``; nothing heavy is imported here.
"""

__version__ = "0.1.0"
