"""Train a generative model: ``python train.py [overrides]`` (see README.md)."""

from genlab.train import main

if __name__ == "__main__":
    main()
