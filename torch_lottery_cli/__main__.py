"""``python -m torch_lottery_cli``: the ``torch-lottery`` program, with Ctrl-C caught during imports too."""

import sys

from . import console_script

if __name__ == "__main__":
    sys.exit(console_script())
