"""``python -m maml_probe.data {download,prepare,info} ...``"""
import sys

from .cli import main

sys.exit(main())
