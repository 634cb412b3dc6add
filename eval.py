"""Evaluate a checkpoint: ``python eval.py ckpt_path=...`` (see README.md)."""

from genlab.eval import main

if __name__ == "__main__":
    main()
