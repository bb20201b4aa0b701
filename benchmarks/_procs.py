"""What the benchmarks share about processes: CPU seconds of a process tree."""

from __future__ import annotations


def tree_cpu(pids: list[int], *, descendants: bool = True) -> float:
    """CPU seconds used so far by the live processes under ``pids`` (included; ``descendants=False``: those alone)
    and the children they have waited for (the task processes, for the scheduler; the parse processes, for the DAG
    processor)."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)] if descendants else [root]
        except psutil.NoSuchProcess:
            continue
        for proc in procs:
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system + times.children_user + times.children_system
    return total
