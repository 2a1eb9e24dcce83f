"""``python -m ci_swarm …`` — the same CLI as the ``ci-swarm`` console script."""

from ci_swarm.cli import main

if __name__ == "__main__":
    main()
