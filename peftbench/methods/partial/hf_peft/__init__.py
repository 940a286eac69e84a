"""Bridge to Hugging Face PEFT: its tuners (LoRA, DoRA, LoHa, LoKr, OFT, BOFT, VeRA, ...) on timm backbones."""
