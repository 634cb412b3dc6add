"""Sample from a checkpoint: ``python generate.py ckpt_path=... num_samples=64`` (see README.md)."""

from genlab.generate import main

if __name__ == "__main__":
    main()
