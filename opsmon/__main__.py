"""``python -m opsmon``: the same as the ``opsmon`` command."""

from opsmon.cli import main

if __name__ == "__main__":
    main()
