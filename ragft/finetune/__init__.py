"""LoRA fine-tuning: SFT records, the training loop, adapter save and load."""
