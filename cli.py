"""Thin shim: ``python cli.py ...`` is the same click app as the ``fpamm`` console script."""

from fpamm_opt.cli import main

if __name__ == "__main__":
    main()
