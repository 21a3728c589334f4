"""Accelerate-launchable unlearning: the same arguments as ``hf-unlearn unlearn``.

    python scripts/unlearn.py npo --model runs/demo/full --forget synthetic:forget --retain synthetic:retain \
        --output_dir runs/npo
    accelerate launch --config_file scripts/accelerate_configs/single.yaml scripts/unlearn.py \
        --config scripts/configs/npo.yaml
    # two CPU processes (DDP over gloo); on GPUs drop --use_cpu
    accelerate launch --config_file scripts/accelerate_configs/ddp.yaml scripts/unlearn.py \
        --config scripts/configs/npo.yaml --use_cpu

The method comes first on the command line or as ``method:`` in the YAML config.
"""

import sys

from hf_unlearn.cli.unlearn import main

if __name__ == "__main__":
    sys.exit(main())
