"""WHP ("Who's Harry Potter?", Eldan & Russinovich 2023): reinforced adapter, anchored terms, generic-label fine-tuning."""
