"""The latent cache: preprocessing a corpus through the frozen encoders into one shard per video (the
shard format), the training windows read back from them, and the loader that streams them."""
