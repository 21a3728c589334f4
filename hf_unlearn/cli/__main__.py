"""``python -m hf_unlearn.cli``: the ``hf-unlearn`` console script."""

import sys

from hf_unlearn.cli.main import main

sys.exit(main())
