"""Command line: ``python -m lib <command>`` (demo, train, evaluate, colorize); ``python -m lib --help`` lists the commands.

Each command lives in the module that owns the work; this file only dispatches and
checks the options first, so a wrong option or value fails before any work starts.
"""

from __future__ import annotations

import argparse
import sys
import textwrap


def _train_epilog() -> str:
    """Every training option, its default and its comment, from ``lib.train.TrainConfig``."""
    import dataclasses

    from lib.train import TrainConfig, config_help

    helps = config_help()
    defaults = TrainConfig().to_dict()
    lines = ["training options (set in the config file or with --set KEY=VALUE):"]
    for f in dataclasses.fields(TrainConfig):
        lines.append(f"  {f.name} = {defaults[f.name]!r}")
        lines.append(f"      {helps.get(f.name, '')}")
    lines += [
        "",
        "nested model options: --set model.KEY=VALUE (UNetConfig fields, e.g. model.ndims=32,",
        "model.depth=4, model.num_blocks=1, model.attention_gates=false), discriminator.KEY=VALUE",
        "(n_layers, norm).",
        "",
        "examples:",
        "  python -m lib train --config configs/seed.yaml --set epochs=5 --set image_size=64",
        "  python -m lib train --config configs/cpu_64px.yaml --set resume=auto",
        "  torchrun --nproc_per_node=4 -m lib train --config configs/l1_p_g.yaml",
        "",
        "Ctrl-C or SIGTERM: the current step finishes, last.pt is saved, the command exits;",
        "continue with --set resume=auto.",
    ]
    return "\n".join(lines)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _device(text: str) -> str:
    import re

    from lib.train import DEVICE_PATTERN

    if not re.fullmatch(DEVICE_PATTERN, text):
        raise argparse.ArgumentTypeError(f"must be one of auto, cpu, cuda, cuda:N, mps; got {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lib", description="Face colorization: command line.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="run the end-to-end demo and write the README figures to figures/")
    p.add_argument("--data", default=None, help="CelebA-HQ folder (default: $CELEBAHQ_DIR, data/celeba_hq/, else toy faces)")
    p.add_argument("--out", default="figures", help="folder for the figures (default: figures)")

    p = sub.add_parser(
        "train", help="train a colorization model from a config (also under torchrun)",
        description=textwrap.fill(
            "Train the U-Net colorizer (and a PatchGAN when theta > 0). Writes checkpoints, history, sample "
            "grids and the test metrics of the best checkpoint into out_dir. Under `torchrun "
            "--nproc_per_node=N -m lib train ...` it uses DistributedDataParallel.", 88),
        epilog=_train_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", default=None,
                   help="YAML or JSON file of training options (see configs/); default: the built-in "
                        "laptop-sized defaults listed below")
    p.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
                   help="override one option of the config, repeatable: --set epochs=5 --set model.ndims=32")
    p.add_argument("--dry-run", action="store_true",
                   help="check the options, print the resolved config as YAML and exit without training")

    p = sub.add_parser(
        "evaluate", help="metrics of a checkpoint on a split, with the grey and mean-face baselines, as JSON",
        description="Evaluate a checkpoint's generator on a split (per-image means of PSNR/SSIM on RGB and Lab, "
                    "colourfulness, optionally LPIPS and FID), beside the grey (ab = 0) and mean-face "
                    "baselines computed by the same code. Prints JSON, or writes it with --out.")
    p.add_argument("checkpoint", metavar="CKPT", help="a checkpoint written by `python -m lib train` (best.pt, last.pt)")
    p.add_argument("--split", choices=("train", "val", "test"), default="test",
                   help="which split to evaluate (default: test; val picked the checkpoint, so report test)")
    p.add_argument("--size", dest="image_size", type=_positive_int, default=None, metavar="PX",
                   help="evaluation size in pixels, divisible by 2**depth (default: the checkpoint's training size)")
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="folder of face photos to evaluate on (default: the data the checkpoint was trained on)")
    p.add_argument("--max-images", type=_positive_int, default=None, metavar="N",
                   help="at most N images of the split (and of the train split for the mean face)")
    p.add_argument("--batch-size", type=_positive_int, default=64, metavar="N", help="evaluation batch size (default: 64)")
    p.add_argument("--device", type=_device, default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
    p.add_argument("--no-baselines", dest="baselines", action="store_false",
                   help="skip the grey and mean-face baselines (faster)")
    p.add_argument("--fid", action="store_true", help="also compute FID (Inception, 299x299; slow on CPU)")
    p.add_argument("--lpips", action="store_true", help="also compute LPIPS (AlexNet)")
    p.add_argument("--out", default=None, metavar="FILE", help="write the JSON here (default: print it)")

    p = sub.add_parser(
        "colorize", help="colorize photos of any size with a checkpoint's generator",
        description="Colorize each IMAGE (any size, colour or grey): the model runs at its training size on the "
                    "resized lightness, its colours are upsampled and merged with the full-resolution lightness. "
                    "Writes DIR/<name>_color.png.")
    p.add_argument("checkpoint", metavar="CKPT", help="a checkpoint written by `python -m lib train` (best.pt, last.pt)")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files (jpg, png, webp)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the colorized PNGs")
    p.add_argument("--size", type=_positive_int, default=None, metavar="PX",
                   help="short side the model sees, divisible by 2**depth (default: the checkpoint's training size)")
    p.add_argument("--batch-size", type=_positive_int, default=8, metavar="N", help="images per model call (default: 8)")
    p.add_argument("--device", type=_device, default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from lib.demo import main as demo_main

        return demo_main(data=args.data, out=args.out)

    if args.command == "train":
        from lib.train import ConfigError, TrainConfig
        from lib.train import main as train_main

        try:  # every option is checked here, before any data or model is touched
            cfg = TrainConfig.load(args.config) if args.config else TrainConfig()
            cfg = cfg.with_overrides(args.overrides)
            cfg.check_paths()
        except ConfigError as e:
            parser.exit(2, f"python -m lib train: error: {e}\n")
        if args.dry_run:
            import yaml

            print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
            return 0
        try:
            return train_main(cfg)
        except (ConfigError, FileNotFoundError) as e:
            parser.exit(2, f"python -m lib train: error: {e}\n")

    if args.command == "evaluate":
        from pathlib import Path

        from lib.evaluate import main as evaluate_main
        from lib.train import ConfigError

        if not Path(args.checkpoint).is_file():
            parser.exit(2, f"python -m lib evaluate: error: checkpoint {args.checkpoint!r} does not exist\n")
        try:
            return evaluate_main(args.checkpoint, split=args.split, image_size=args.image_size,
                                 data_root=args.data_root, max_images=args.max_images, batch_size=args.batch_size,
                                 device=args.device, baselines=args.baselines, fid=args.fid, lpips=args.lpips,
                                 out=args.out)
        except (ConfigError, FileNotFoundError, ValueError) as e:
            parser.exit(2, f"python -m lib evaluate: error: {e}\n")
    if args.command == "colorize":
        from pathlib import Path

        from lib.colorize import main as colorize_main
        from lib.train import ConfigError

        missing = [p for p in [args.checkpoint, *args.images] if not Path(p).is_file()]
        if missing:
            parser.exit(2, f"python -m lib colorize: error: {', '.join(map(repr, missing))} does not exist\n")
        try:
            return colorize_main(args.checkpoint, args.images, args.out, size=args.size, device=args.device,
                                 batch_size=args.batch_size)
        except (ConfigError, ValueError) as e:
            parser.exit(2, f"python -m lib colorize: error: {e}\n")
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
