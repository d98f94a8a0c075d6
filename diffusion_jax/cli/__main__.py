"""``python -m diffusion_jax.cli``: the same as ``diffusion-jax``."""

import sys

from diffusion_jax.cli import PROG, main

if __name__ == "__main__":
    sys.argv[0] = PROG
    sys.exit(main())
