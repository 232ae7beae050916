"""Run a command; write its peak RSS (KiB) and wall time (s) to a file.

    python -I -S rss.py OUT CMD [ARG…]

The benchmark starts this small process, which starts the measured command, so
that command is the benchmark's grandchild: Linux counts in a child's ru_maxrss
the memory it had before exec (a copy of its parent), and the parent must be
small for the figure to be the command's own. The floor is this process's RSS
(about 10 MiB). Standard library only; nothing imported from the project.
"""

import os
import sys
import time


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child becomes the command
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.monotonic() - started
    with open(out, "w") as f:
        f.write(f"{usage.ru_maxrss} {seconds:.6f}")
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
