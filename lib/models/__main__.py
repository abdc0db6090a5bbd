"""``python -m lib.models``: print the seed U-Net's summary and write figures/unet_architecture.png."""

from lib.models.summary import main

raise SystemExit(main())
