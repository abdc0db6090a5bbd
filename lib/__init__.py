"""Face colorization from first principles: the single source of truth the notebooks import.

Modules (see DESIGN.md section 1 and the README's notebook map):
``color`` (sRGB <-> Lab), ``data`` (face folders, splits, toy faces), ``models``
(U-Net generator, PatchGAN), ``losses``, ``metrics``, ``pretrained`` (offline weights),
``train``, ``evaluate``, ``viz``. Import what you need, e.g.
``from lib.color import rgb_to_lab``; nothing heavy is imported here.
"""

__version__ = "0.1.0"
