"""What bench/run-bench and bench/ctr-bench share: the project's build scripts' output,
a process's proportional memory, waiting for a line of output, and the table's cells."""
import os
import statistics
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class BenchError(Exception):
    pass


def script_output(script):
    out = subprocess.run(["bash", os.path.join(ROOT, script)], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    return out.strip().splitlines()


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def read_until(proc, pattern, timeout):
    """Reads proc.stdout line by line until `pattern` matches; returns the time. When the
    output ends first, the error shows its last lines and, if piped, the stderr."""
    deadline = time.monotonic() + timeout
    seen = []
    os.set_blocking(proc.stdout.fileno(), True)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise BenchError("output ended before %r; last lines:\n%s%s"
                             % (pattern, "".join(seen[-20:]), "\nstderr: " + stderr if stderr else ""))
        seen.append(line.decode(errors="replace"))
        if pattern in seen[-1]:
            return time.monotonic()
    raise BenchError("no %r within %d s" % (pattern, timeout))


def stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    return "%.2f (%.2f-%.2f)" % (statistics.median(values), min(values), max(values))
