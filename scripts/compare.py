"""Compare runs: ``python scripts/compare.py <sweep or runs folder> --metric val/elbo``.
The same as the ``genlab-compare`` console script; see ``genlab.compare``."""

from genlab.compare import main

if __name__ == "__main__":
    raise SystemExit(main())
