"""The ``hf-unlearn`` command line: :mod:`~hf_unlearn.cli.main` dispatches to one module per command."""
