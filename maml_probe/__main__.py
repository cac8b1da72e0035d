"""``python -m maml_probe``: the same command line as ``maml-probe`` (:mod:`maml_probe.cli`)."""
import sys

from .cli import main

sys.exit(main())
