"""``make demo``: run what exists end to end and write the README's figures.

For now: the data tour (``figures/data_samples.png``: faces and their L, a, b
channels) and the U-Net architecture drawn from its config
(``figures/unet_architecture.png``). Later notebooks extend it.
"""

from __future__ import annotations

import time
from pathlib import Path


def main(data: str | None = None, out: str = "figures") -> int:
    """Write the demo figures into ``out`` and print where they are."""
    from lib.data import resolve_data_root
    from lib.models import UNetConfig, model_summary, save_architecture_figure, UNet
    from lib.viz import save_data_samples

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    root = resolve_data_root(data)
    path = save_data_samples(out_dir / "data_samples.png", root=root)
    print(f"[demo] data tour       -> {path}")

    config = UNetConfig()
    path = save_architecture_figure(config, out_dir / "unet_architecture.png")
    print(f"[demo] architecture    -> {path}")
    print(model_summary(UNet(config), image_size=128))

    print(f"[demo] done in {time.perf_counter() - t0:.1f} s")
    return 0
