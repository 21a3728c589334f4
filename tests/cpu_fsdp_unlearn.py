"""``scripts/unlearn.py`` with accelerate's FSDP plugin kept on CPU processes, for the 2-process gloo test.

accelerate (1.15) turns ``distributed_type: FSDP`` on for accelerator devices only: on CPU processes
(``--use_cpu``) ``AcceleratorState`` settles on ``MULTI_CPU`` and drops the FSDP plugin without a word, so the run
would be plain DDP. FSDP2's ``fully_shard`` itself runs on CPU over gloo, so this entry point keeps the plugin (and
the ``FSDP`` distributed type) on CPU processes and otherwise runs the unlearning CLI unchanged. After training,
each rank writes what the test checks from outside to ``$HF_UNLEARN_FSDP_RECORD/rank<i>.json``: the distributed
type, whether the trained parameters are sharded ``DTensor``s, the separate reference model's digest (none under
LoRA), the cached reference log-probs of the forget set, the digests of the trainable weights before and after
training, and the log history.
"""

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType
from torch.distributed.tensor import DTensor

from hf_unlearn.cli.unlearn import main, parameter_digest
from hf_unlearn.trainers.base_trainer import UnlearningTrainer

_accelerator_state_init = AcceleratorState.__init__
_train = UnlearningTrainer.train


def _keep_fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs):
    _accelerator_state_init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.FSDP
        if self.mixed_precision != "no":
            fsdp_plugin.set_mixed_precision(self.mixed_precision)
        self.fsdp_plugin = fsdp_plugin
        PartialState._shared_state["distributed_type"] = self.distributed_type  # as accelerate does on GPUs


def _trainable_digest(model) -> str:
    """:func:`parameter_digest` of the trainable parameters only (the adapters, under LoRA)."""
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    return parameter_digest(SimpleNamespace(named_parameters=lambda: trainable))


def _train_and_record(self, *args, **kwargs):
    start = _trainable_digest(self.model)  # before sharding: rank 0's weights are the ones that get broadcast
    result = _train(self, *args, **kwargs)
    record = {
        "distributed_type": str(self.accelerator.distributed_type),
        "sharded_parameters": all(isinstance(p, DTensor) for p in self.model.parameters()),
        "reference_digest": None if self.ref_model is None else parameter_digest(self.ref_model),
        "ref_logps": list(self.train_dataset["ref_logps"]),
        "trainable_digests": [start, _trainable_digest(self.model)],
        "log_history": self.state.log_history,
    }
    out = Path(os.environ["HF_UNLEARN_FSDP_RECORD"]) / f"rank{self.args.process_index}.json"
    out.write_text(json.dumps(record))
    return result


if __name__ == "__main__":
    AcceleratorState.__init__ = _keep_fsdp_on_cpu
    UnlearningTrainer.train = _train_and_record
    sys.exit(main())
