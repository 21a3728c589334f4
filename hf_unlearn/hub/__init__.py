"""Release to the Hugging Face Hub: model cards (``card``), forget-text scans (``leaks``), staging and push (``release``)."""
