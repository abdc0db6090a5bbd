"""Command line: ``python -m lib <command>`` (demo, train, evaluate, colorize, ablate, export).

Each command lives in the module that owns the work; this file parses, checks the options
before any work, and is the one error path: an expected failure (:class:`lib.errors.UserError`:
a bad option, file, checkpoint or data folder) prints one ``error: ...`` line and exits 2;
an interrupted training run exits 130 (SIGINT) or 143 (SIGTERM); anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap

import yaml

from lib import ablation, colorize, demo, evaluate, train
from lib.checkpoint import export_generator
from lib.config import DEVICE_PATTERN, TrainConfig, flat_dict, option_help
from lib.errors import UserError


def _train_epilog() -> str:
    """Every training option with its default and its comment, from the config dataclasses."""
    defaults = flat_dict(TrainConfig().to_dict())
    lines = ["training options (in the config file, or --set KEY=VALUE; nested ones as group.key):"]
    for name, comment in option_help().items():
        lines += [f"  {name} = {defaults[name]!r}", *textwrap.wrap(comment, 84, initial_indent="      ",
                                                                   subsequent_indent="      ")]
    return "\n".join(lines + [
        "", "values: numbers, true/false, null, lists as [a,b] (e.g. --set betas=[0.9,0.99]).",
        "", "examples:",
        "  python -m lib train --config configs/seed.yaml --set epochs=5 --set image_size=64",
        "  python -m lib train --config configs/cpu_64px.yaml --set resume=auto",
        "  python -m lib train --config configs/seed.yaml --set loss.theta=0.08 --set out_dir=runs/gan",
        "  torchrun --nproc_per_node=4 -m lib train --config configs/l1_p_g.yaml",
        "", "Ctrl-C or SIGTERM: the current step finishes, last.pt is saved and the command exits (130 / 143);",
        "--set resume=auto continues from exactly there."])


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def _device(text: str) -> str:
    if not re.fullmatch(DEVICE_PATTERN, text):
        raise argparse.ArgumentTypeError(f"must be one of auto, cpu, cuda, cuda:N, mps; got {text!r}")
    return text


def _run_train(args) -> int:
    cfg = TrainConfig.load(args.config) if args.config else TrainConfig()
    cfg = cfg.with_overrides(args.overrides)
    cfg.check()  # every option, file and folder is checked here, before any data or model is touched
    if args.dry_run:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    return train.main(cfg)


def _run_evaluate(args) -> int:
    return evaluate.main(args.checkpoint, out=args.out, split=args.split, image_size=args.image_size,
                         data_root=args.data_root, max_images=args.max_images, batch_size=args.batch_size,
                         device=args.device, baselines=args.baselines, fid=args.fid, lpips=args.lpips, flip=args.flip)


def _run_export(args) -> int:
    path = export_generator(args.checkpoint, args.out, overwrite=args.overwrite)
    print(f"[export] the generator of {args.checkpoint} -> {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lib", description="Face colorization: command line.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="write the README figures to figures/ (the data tour, the U-Net)")
    p.add_argument("--data", default=None, help="CelebA-HQ folder (default: $CELEBAHQ_DIR, data/celeba_hq/, else toy faces)")
    p.add_argument("--out", default="figures", help="folder for the figures (default: figures)")
    p.set_defaults(run=lambda a: demo.main(data=a.data, out=a.out))

    p = sub.add_parser(
        "train", help="train a colorization model from a config (also under torchrun)",
        description=textwrap.fill(
            "Train the U-Net colorizer (and a PatchGAN when loss.theta > 0). Writes checkpoints, history, sample "
            "grids and the test metrics of the best checkpoint into out_dir. Under `torchrun "
            "--nproc_per_node=N -m lib train ...` it uses DistributedDataParallel.", 88),
        epilog=_train_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", default=None,
                   help="YAML or JSON file of training options (see configs/); default: the defaults below")
    p.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
                   help="override one option, repeatable: --set epochs=5 --set model.ndims=32")
    p.add_argument("--dry-run", action="store_true", help="check the options, print the resolved config, exit")
    p.set_defaults(run=_run_train)

    p = sub.add_parser(
        "evaluate", help="metrics of a checkpoint on a split, with the grey and mean-face baselines, as JSON",
        description="Evaluate a checkpoint's generator on a split (per-image means of PSNR/SSIM on RGB and Lab, "
                    "colourfulness, optionally LPIPS and FID), beside the grey (ab = 0) and mean-face baselines "
                    "computed by the same code, on the data the checkpoint was trained on unless --data-root says "
                    "otherwise. Prints JSON, or writes it with --out.")
    p.add_argument("checkpoint", metavar="CKPT", help="a checkpoint (best.pt, last.pt) or a generator export")
    p.add_argument("--split", choices=("train", "val", "test"), default="test",
                   help="which split to evaluate (default: test; val picked the checkpoint, so report test)")
    p.add_argument("--size", dest="image_size", type=_positive_int, default=None, metavar="PX",
                   help="evaluation size in pixels, a multiple of 2**depth (default: the checkpoint's training size)")
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="evaluate on this folder of face photos instead of the data the checkpoint was trained on")
    p.add_argument("--max-images", type=_positive_int, default=None, metavar="N",
                   help="at most N images of the split (and of the train split for the mean face)")
    p.add_argument("--batch-size", type=_positive_int, default=64, metavar="N", help="evaluation batch size (default: 64)")
    p.add_argument("--device", type=_device, default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
    p.add_argument("--no-baselines", dest="baselines", action="store_false", help="skip the grey and mean-face baselines")
    p.add_argument("--fid", action="store_true", help="also compute FID (Inception, 299x299; slow on CPU)")
    p.add_argument("--lpips", action="store_true", help="also compute LPIPS (AlexNet)")
    p.add_argument("--flip", action="store_true",
                   help="average each prediction with the mirrored prediction of the mirrored face (2x the time)")
    p.add_argument("--out", default=None, metavar="FILE", help="write the JSON here (default: print it)")
    p.set_defaults(run=_run_evaluate)

    p = sub.add_parser("colorize", help="colorize photos of any size with the shipped model or a checkpoint")
    colorize.add_arguments(p)
    p.set_defaults(run=colorize.run)

    p = sub.add_parser("ablate", help="train and measure a grid of runs (configs/grids/), write results/GRID-PROFILE.md")
    ablation.add_arguments(p)
    p.set_defaults(run=ablation.run)

    p = sub.add_parser("export", help="write a checkpoint's generator (its EMA weights if any) as a small fp16 file",
                       description="Write the generator of a training checkpoint as a generator-only file "
                                   "(fp16 weights, the configs, the data source, the history and test metrics), "
                                   "loadable with torch.load(weights_only=True) and lib.checkpoint.load_generator.")
    p.add_argument("checkpoint", metavar="CKPT", help="a training checkpoint, e.g. runs/x/best.pt")
    p.add_argument("out", metavar="OUT", help="the file to write, e.g. checkpoints/my_model.pt")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(run=_run_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"interrupted{': ' + str(e) if str(e) else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
