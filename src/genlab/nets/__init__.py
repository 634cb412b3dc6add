"""Plain ``nn.Module`` architectures, per modality, passed into the objectives by config."""
