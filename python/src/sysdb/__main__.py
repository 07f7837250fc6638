"""``python -m sysdb``: the ``sysdb`` command installed with this package."""

import os
import sys

from . import Error, binary

if __name__ == "__main__":
    try:
        program = binary()
    except Error as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    os.execv(program, [program, *sys.argv[1:]])
